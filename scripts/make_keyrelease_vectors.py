"""Write the key-release known-answer vectors, tests/vectors/keyrelease.json.

Every input is derived from fixed labels, so the vectors are reproducible: another
implementation (a JS buyer client, a Rust gateway) can check itself against them. The
wallets are anvil's well-known dev accounts #0 and #1, so a wallet loaded with those
keys (MetaMask, ethers.js, `cast`) must produce the same EIP-712 signatures.

Two parts are random because libsodium draws them itself: the sealed box (a fresh
ephemeral key) and the envelope's secretstream header. Each is written once and kept
while it still opens to the vector's plaintext; everything that hashes them (the
receipt, the `POST /v1/keys` answer, the Merkle leaves) is recomputed from the kept bytes.
docs/protocol.md says how a third-party implementation checks itself against the file.

    python scripts/make_keyrelease_vectors.py           # (re)write the file
    python scripts/make_keyrelease_vectors.py --check   # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

from eth_account import Account

from marketplace.eip712 import (
    Eip712Domain,
    EncryptionKey,
    KeyRequest,
    ReleaseReceipt,
    TypedMessage,
    digest,
    sign,
    typed_data,
)
from marketplace.keyrelease import (
    BuyerSecretKey,
    CapsuleContext,
    KeyReleaseError,
    KeyShare,
    NodeIndex,
    Scalar,
    SecretScalar,
)
from marketplace.keyrelease.buyer_key import is_small_order
from marketplace.keyrelease.capsule import _make_capsule, kem_key
from marketplace.keyrelease.dealer import _deal
from marketplace.keyrelease.group import GENERATOR, L, hash_to_scalar, tag
from marketplace.keyrelease.shamir import interpolate, lagrange_coefficients
from marketplace.keyrelease.share import _make_key_share, open_sealed_share, seal_key_share
from marketplace.merkle import leaf_hash, merkle_proof, merkle_root
from storage import envelope
from storage.errors import StorageError
from storage.keys import DataKey
from storage.unixfs import compute_cid

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors" / "keyrelease.json"

# anvil / hardhat dev accounts #0 and #1 (public test keys, never for real funds).
BUYER_WALLET_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
NODE_WALLET_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337
DEBIT_ID = 42
SIZE, THRESHOLD = 5, 3
EPOCH = 1
RECEIPT_BLOCK = 123
REQUEST_EXPIRY = 1_700_000_600
#: A tiny chunk size, so the envelope vector has several frames (the default is 1 MiB).
ENVELOPE_CHUNK_SIZE = 16
ENVELOPE_PLAINTEXT = b"datadebit envelope: 61 bytes in plaintext frames 16+16+16+13\n"
_P25519 = 2**255 - 19
#: u-coordinates of the X25519 points of order 1, 2, 4 and 8 (what `is_small_order` knows).
_SMALL_ORDER_U = (
    0,
    1,
    _P25519 - 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
)


def _seed(label: str, size: int = 64) -> bytes:
    return hashlib.blake2b(b"datadebit vectors: " + label.encode(), digest_size=size).digest()


def _scalar(label: str) -> Scalar:
    return Scalar.from_int(int.from_bytes(_seed(label), "little"))


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _eip712(domain: Eip712Domain, message: TypedMessage, key: str) -> dict[str, Any]:
    account = Account.from_key(key)
    return {
        "typedData": typed_data(domain, message),
        "digest": _hex(digest(domain, message)),
        "signer": account.address,
        "signature": _hex(sign(account, domain, message)),
    }


def build_vectors(sealed_share: bytes, sealed_envelope: bytes) -> dict[str, Any]:
    """Everything, given the two random parts (node 1's sealed share to the vector buyer,
    and the envelope of ENVELOPE_PLAINTEXT): see `_random_parts`."""
    coefficients = [_scalar(f"coefficient {j}") for j in range(THRESHOLD)]
    dealt = _deal(SIZE, THRESHOLD, coefficients)
    ctx = CapsuleContext(CHAIN_ID, MARKET, 7, 1, bytes.fromhex("01551220") + _seed("cid", 32))
    dek = DataKey(_seed("dek", 32))
    r = SecretScalar(_scalar("r"))
    nonce = _seed("nonce", 24)
    proof_k = SecretScalar(_scalar("capsule proof k"))
    capsule = _make_capsule(dek, ctx, dealt.keys.committee_key, _r=r, _nonce=nonce, _k=proof_k)
    bound = capsule.bind(ctx)
    z_point = dealt.keys.committee_key * _scalar("r")
    shares = {
        s.index: _make_key_share(
            s, bound, DEBIT_ID, ctx.version, _k=SecretScalar(_scalar(f"k {s.index}"))
        )
        for s in dealt.shares
    }
    domain = Eip712Domain(CHAIN_ID, MARKET)  # type: ignore[arg-type]
    buyer_signature = sign(Account.from_key(BUYER_WALLET_KEY), domain, EncryptionKey())
    buyer = BuyerSecretKey.from_signature(buyer_signature)
    request = KeyRequest(DEBIT_ID, ctx.version, REQUEST_EXPIRY, _seed("request nonce", 32))
    buyer_wallet = Account.from_key(BUYER_WALLET_KEY)
    request_signature = sign(buyer_wallet, domain, request)
    receipt = ReleaseReceipt.for_sealed_share(
        DEBIT_ID, ctx.version, 1, sealed_share, RECEIPT_BLOCK,
        epoch=EPOCH, buyer=buyer_wallet.address, buyer_key=buyer.public_key().key,
        request_digest=digest(domain, request),
    )
    receipt_signature = sign(Account.from_key(NODE_WALLET_KEY), domain, receipt)

    def combination(indices: list[int]) -> dict[str, Any]:
        lambdas = lagrange_coefficients(indices)
        z = interpolate({i: shares[NodeIndex(i)].d_point for i in indices})
        return {
            "indices": indices,
            "lagrange": [_hex(lambdas[i].to_bytes()) for i in indices],
            "z": _hex(z.to_bytes()),
        }

    return {
        "about": "datadebit key-release known answers (DESIGN §4, §5); bytes are 0x-hex, "
        "scalars little-endian mod L",
        "generator": "scripts/make_keyrelease_vectors.py",
        "group": {
            "L": str(L),
            "basePoint": _hex(GENERATOR.to_bytes()),
            "hashToScalar": [
                {
                    "tag": t.decode(),
                    "parts": [_hex(p) for p in parts],
                    "scalar": _hex(hash_to_scalar(t, *parts).to_bytes()),
                }
                for t, parts in [
                    (tag("dleq"), [b""]),
                    (tag("dleq"), [GENERATOR.to_bytes(), _seed("part", 32)]),
                    (tag("test"), [_seed("long part", 64)]),
                ]
            ],
        },
        "dealer": {
            "n": SIZE,
            "t": THRESHOLD,
            "coefficients": [_hex(c.to_bytes()) for c in coefficients],
            "committeeKey": _hex(dealt.keys.committee_key.to_bytes()),
            "shares": [
                {
                    "index": s.index,
                    "secret": _hex(s.secret.to_secret_bytes()),
                    "shareKey": _hex(s.share_key.point.to_bytes()),
                }
                for s in dealt.shares
            ],
        },
        "capsule": {
            "context": {
                "chainId": ctx.chain_id,
                "market": ctx.market,
                "listingId": ctx.listing_id,
                "version": ctx.version,
                "cid": _hex(ctx.cid_bytes),
                "encoded": _hex(ctx.to_bytes()),
            },
            "dek": _hex(dek.to_secret_bytes()),
            "r": _hex(_scalar("r").to_bytes()),
            "nonce": _hex(nonce),
            "z": _hex(z_point.to_bytes()),
            "kemKey": _hex(kem_key(capsule.r_point, z_point)),
            "proofK": _hex(_scalar("capsule proof k").to_bytes()),
            "proofChallenge": _hex(capsule.proof.challenge.to_bytes()),
            "proofResponse": _hex(capsule.proof.response.to_bytes()),
            "capsule": _hex(capsule.to_bytes()),
        },
        "shares": [
            {
                "index": i,
                "debitId": DEBIT_ID,
                "version": ctx.version,
                "k": _hex(_scalar(f"k {i}").to_bytes()),
                "d": _hex(share.d_point.to_bytes()),
                "c": _hex(share.proof.challenge.to_bytes()),
                "z": _hex(share.proof.response.to_bytes()),
                "plaintext": _hex(share.to_bytes()),
            }
            for i, share in shares.items()
        ],
        "combine": [combination(ix) for ix in ([1, 2, 3], [2, 4, 5], [1, 3, 5])],
        "buyer": {
            "walletKey": BUYER_WALLET_KEY,
            "encryptionKeySignature": _hex(buyer_signature),
            "x25519Secret": _hex(buyer.to_secret_bytes()),
            "x25519Public": _hex(buyer.public_key().key),
            "sealedShare": _hex(sealed_share),
        },
        "eip712": {
            "domainSeparator": _hex(domain.separator),
            "encryptionKey": _eip712(domain, EncryptionKey(), BUYER_WALLET_KEY),
            "keyRequest": _eip712(domain, request, BUYER_WALLET_KEY),
            "releaseReceipt": _eip712(domain, receipt, NODE_WALLET_KEY),
        },
        "wire": _wire(request, request_signature, sealed_share, receipt, receipt_signature),
        "merkle": _merkle(digest(domain, receipt)),
        "smallOrderBuyerKeys": _small_order_keys(buyer.public_key().key),
        "envelope": _envelope(sealed_envelope),
    }


def _wire(
    request: KeyRequest,
    request_signature: bytes,
    sealed_share: bytes,
    receipt: ReleaseReceipt,
    receipt_signature: bytes,
) -> dict[str, Any]:
    """The JSON bodies of `POST /v1/keys` (to node 1) and of its `GET /v1/releases` entry."""
    return {
        "keysRequest": {"request": request.to_message(), "signature": _hex(request_signature)},
        "keysResponse": {
            "node": receipt.node,
            "debitId": receipt.debit_id,
            "version": receipt.version,
            "sealedShare": base64.b64encode(sealed_share).decode(),
            "receipt": receipt.to_message(),
            "receiptSignature": _hex(receipt_signature),
        },
        "releaseEntry": {
            "seq": 1,
            "receipt": receipt.to_message(),
            "receiptSignature": _hex(receipt_signature),
            "request": request.to_message(),
            "requestSignature": _hex(request_signature),
        },
    }


def _merkle(first_leaf: bytes) -> dict[str, Any]:
    """A batch of five leaves (the vector receipt's digest, then four labelled ones):
    every leaf hash, the root of each prefix and each leaf's proof in the full batch."""
    items = [first_leaf] + [_seed(f"leaf {i}", 32) for i in range(2, 6)]
    return {
        "items": [_hex(i) for i in items],
        "leafHashes": [_hex(leaf_hash(i)) for i in items],
        "prefixRoots": [_hex(merkle_root(items[:n])) for n in range(1, len(items) + 1)],
        "proofs": [
            {
                "index": proof.index,
                "count": proof.count,
                "siblings": [_hex(x) for x in proof.siblings],
            }
            for proof in (merkle_proof(items, i) for i in range(len(items)))
        ],
    }


def _small_order_keys(good_key: bytes) -> list[dict[str, Any]]:
    """X25519 keys a node and a buyer client refuse (every small-order u, also with bit
    255 set and as u + p where that fits 255 bits), and two they accept."""
    encodings = [u.to_bytes(32, "little") for u in _SMALL_ORDER_U]
    encodings += [(u | 1 << 255).to_bytes(32, "little") for u in _SMALL_ORDER_U]
    encodings += [(u + _P25519).to_bytes(32, "little") for u in _SMALL_ORDER_U if u < 19]
    accepted = [(9).to_bytes(32, "little"), good_key]
    labelled = [(k, True) for k in encodings] + [(k, False) for k in accepted]
    for key, small in labelled:
        if is_small_order(key) != small:
            raise AssertionError(f"is_small_order disagrees on {_hex(key)}")
    return [{"key": _hex(key), "smallOrder": small} for key, small in labelled]


def _envelope_key() -> DataKey:
    return DataKey(_seed("envelope dek", 32))


def _envelope(sealed: bytes) -> dict[str, Any]:
    return {
        "dataKey": _hex(_envelope_key().to_secret_bytes()),
        "chunkSize": ENVELOPE_CHUNK_SIZE,
        "plaintext": _hex(ENVELOPE_PLAINTEXT),
        "envelope": _hex(sealed),
        "header": _hex(sealed[: envelope.HEADER_SIZE]),
        "cid": compute_cid([sealed]).text,
        "cidBinary": _hex(compute_cid([sealed]).binary),
    }


def envelope_opens(sealed: bytes) -> bool:
    """Whether `sealed` is an envelope of ENVELOPE_PLAINTEXT under the vector key, cut in
    ENVELOPE_CHUNK_SIZE-byte chunks."""
    out = io.BytesIO()
    try:
        header = envelope.EnvelopeHeader.parse(sealed[: envelope.HEADER_SIZE])
        envelope.decrypt(io.BytesIO(sealed), out, _envelope_key())
    except StorageError:
        return False
    return header.chunk_size == ENVELOPE_CHUNK_SIZE and out.getvalue() == ENVELOPE_PLAINTEXT


def _buyer() -> BuyerSecretKey:
    domain = Eip712Domain(CHAIN_ID, MARKET)  # type: ignore[arg-type]
    return BuyerSecretKey.from_account(Account.from_key(BUYER_WALLET_KEY), domain)


def sealed_share_opens(sealed: bytes, share_plaintext: str) -> bool:
    """Whether `sealed` opens, with the vector buyer's key, to `share_plaintext` (0x-hex)."""
    expected = KeyShare.from_bytes(bytes.fromhex(share_plaintext[2:]))
    try:
        opened = open_sealed_share(sealed, _buyer(), expected.debit_id, expected.version)
    except KeyReleaseError:
        return False
    return opened.to_bytes() == expected.to_bytes()


def _random_parts(previous: dict[str, Any] | None) -> tuple[bytes, bytes]:
    """The kept sealed share and envelope if they still open, else fresh ones."""
    # the shares do not depend on the random parts: any placeholder gives them
    share_plaintext = build_vectors(b"", b"")["shares"][0]["plaintext"]
    kept_share = (previous or {}).get("buyer", {}).get("sealedShare")
    if kept_share is not None and sealed_share_opens(bytes.fromhex(kept_share[2:]),
                                                     share_plaintext):
        sealed_share = bytes.fromhex(kept_share[2:])
    else:
        share = KeyShare.from_bytes(bytes.fromhex(share_plaintext[2:]))
        sealed_share = seal_key_share(share, _buyer().public_key())
    kept_envelope = (previous or {}).get("envelope", {}).get("envelope")
    if kept_envelope is not None and envelope_opens(bytes.fromhex(kept_envelope[2:])):
        sealed_envelope = bytes.fromhex(kept_envelope[2:])
    else:
        out = io.BytesIO()
        envelope.encrypt(
            io.BytesIO(ENVELOPE_PLAINTEXT), out, _envelope_key(), chunk_size=ENVELOPE_CHUNK_SIZE
        )
        sealed_envelope = out.getvalue()
    return sealed_share, sealed_envelope


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    previous = json.loads(VECTORS.read_text()) if VECTORS.exists() else None
    vectors = build_vectors(*_random_parts(previous))
    if args.check:
        if vectors != previous:
            print(f"{VECTORS} is stale: run scripts/make_keyrelease_vectors.py", file=sys.stderr)
            return 1
        return 0
    VECTORS.parent.mkdir(parents=True, exist_ok=True)
    VECTORS.write_text(json.dumps(vectors, indent=2) + "\n")
    print(f"wrote {VECTORS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
