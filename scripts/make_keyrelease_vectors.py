"""Write the key-release known-answer vectors, tests/vectors/keyrelease.json.

Every input is derived from fixed labels, so the vectors are reproducible: another
implementation (a JS buyer client, a Rust gateway) can check itself against them. The
wallets are anvil's well-known dev accounts #0 and #1, so a wallet loaded with those
keys (MetaMask, ethers.js, `cast`) must produce the same EIP-712 signatures.

The one random part is the sealed box (libsodium seals with a fresh ephemeral key): it
is written once and kept while it still opens to the vector's share.

    python scripts/make_keyrelease_vectors.py           # (re)write the file
    python scripts/make_keyrelease_vectors.py --check   # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import hashlib
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
    KeyShare,
    Scalar,
    SecretScalar,
)
from marketplace.keyrelease.capsule import _make_capsule, kem_key
from marketplace.keyrelease.dealer import _deal
from marketplace.keyrelease.group import GENERATOR, L, hash_to_scalar, tag
from marketplace.keyrelease.shamir import interpolate, lagrange_coefficients
from marketplace.keyrelease.share import _make_key_share, open_sealed_share, seal_key_share
from storage.keys import DataKey

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors" / "keyrelease.json"

# anvil / hardhat dev accounts #0 and #1 (public test keys, never for real funds).
BUYER_WALLET_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
NODE_WALLET_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337
DEBIT_ID = 42
SIZE, THRESHOLD = 5, 3


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


def build_vectors() -> dict[str, Any]:
    """Everything deterministic; `sealedShare` is added by `main`."""
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
    request = KeyRequest(DEBIT_ID, ctx.version, 1_700_000_600, _seed("request nonce", 32))
    receipt = ReleaseReceipt.for_sealed_share(DEBIT_ID, ctx.version, 1, b"a sealed share", 123)

    def combination(indices: list[int]) -> dict[str, Any]:
        lambdas = lagrange_coefficients(indices)
        z = interpolate({i: shares[i].d_point for i in indices})
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
        },
        "eip712": {
            "domainSeparator": _hex(domain.separator),
            "encryptionKey": _eip712(domain, EncryptionKey(), BUYER_WALLET_KEY),
            "keyRequest": _eip712(domain, request, BUYER_WALLET_KEY),
            "releaseReceipt": _eip712(domain, receipt, NODE_WALLET_KEY),
        },
    }


def sealed_share_opens(vectors: dict[str, Any], sealed_hex: str) -> bool:
    """Whether `sealed_hex` opens, with the vector buyer's key, to share 1's plaintext."""
    buyer = BuyerSecretKey(bytes.fromhex(vectors["buyer"]["x25519Secret"][2:]))
    share = vectors["shares"][0]
    opened = open_sealed_share(
        bytes.fromhex(sealed_hex[2:]), buyer, share["debitId"], share["version"]
    )
    return _hex(opened.to_bytes()) == share["plaintext"]


def _with_sealed_share(vectors: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    kept = (previous or {}).get("buyer", {}).get("sealedShare")
    if kept is None or not sealed_share_opens(vectors, kept):
        share = KeyShare.from_bytes(bytes.fromhex(vectors["shares"][0]["plaintext"][2:]))
        buyer = BuyerSecretKey(bytes.fromhex(vectors["buyer"]["x25519Secret"][2:]))
        kept = _hex(seal_key_share(share, buyer.public_key()))
    vectors["buyer"]["sealedShare"] = kept
    return vectors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    previous = json.loads(VECTORS.read_text()) if VECTORS.exists() else None
    vectors = _with_sealed_share(build_vectors(), previous)
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
