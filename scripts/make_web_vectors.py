"""Write the web app's known-answer vectors, tests/vectors/web.json.

What the browser's JavaScript (marketplace/web/static/js) must agree on with the Python,
end to end: the X25519 keys a wallet's `EncryptionKey` signature gives (buyer and owner);
a complete release by a 2-of-3 committee (capsule, the three gateways' `POST /v1/keys`
answers, a corrupted one, an answer of another committee epoch, the DEK); the envelope
that DEK opens, with its CID and tamper cases (each checked here to fail in Python too);
CIDs of multi-level DAGs (small chunk sizes and link counts, so a few hundred bytes reach
four levels; the real-daemon CIDs with 262144-byte chunks are tests/vectors/cid_vectors.json);
canonical JSON, a purpose document, its hash and a sealed purpose the owner key opens.

Inputs come from fixed labels; the wallets are anvil's public dev accounts (#0 buyer, #1-#3
committee nodes, #4 listing owner). Sealed boxes and the secretstream header are random
(libsodium draws them): the committed ones are kept while they still open to the same
plaintext, as scripts/make_keyrelease_vectors.py does.

    python scripts/make_web_vectors.py           # (re)write the file
    python scripts/make_web_vectors.py --check   # exit 1 if it is stale
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

import nacl.bindings as sodium
from eth_account import Account
from nacl.exceptions import CryptoError

from marketplace.documents import (
    OWNER_KEY_MESSAGE,
    DocumentError,
    OwnerSecretKey,
    PurposeDocument,
    _canonical_json,
    encode_document,
    parse_purpose_document,
    purpose_cid,
    purpose_hash,
    seal_purpose,
)
from marketplace.eip712 import (
    Eip712Domain,
    EncryptionKey,
    KeyRequest,
    ReleaseReceipt,
    digest,
    sign,
    typed_data,
)
from marketplace.keyrelease import BuyerSecretKey, CapsuleContext, KeyShare, Scalar, SecretScalar
from marketplace.keyrelease.capsule import _make_capsule
from marketplace.keyrelease.dealer import _deal
from marketplace.keyrelease.keys import CommitteeKeys, NodeShare
from marketplace.keyrelease.share import DleqProof, _make_key_share, seal_key_share
from storage import envelope
from storage.errors import StorageError
from storage.keys import DataKey
from storage.unixfs import DagBuilder, compute_cid

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors" / "web.json"

# anvil's dev accounts #0..#4 (public test keys, never for real funds)
BUYER_WALLET_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
NODE_WALLET_KEYS = (
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
)
OWNER_WALLET_KEY = "0x47e179ec197488593b187f80a17eb0da1e5f75c7cfab8b4d63c37a7e0b4aea40"
CHAIN_ID = 31337
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
LISTING_ID, VERSION, DEBIT_ID = 7, 2, 42
SIZE, THRESHOLD = 3, 2
RECEIPT_BLOCK = 321
REQUEST_EXPIRY = 1_700_000_300
ENVELOPE_CHUNK_SIZE = 1000
ENVELOPE_PLAINTEXT_SIZE = 4321  # five frames: 4 x 1000 + 321
GATEWAY_URLS = {i: f"http://gateway-{i}.test:800{i}" for i in range(1, SIZE + 1)}
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

#: (size, chunk size, max links): a raw leaf alone, one node, full nodes, and two, three
#: and four levels with partial last nodes; the last ones are the real layout's sizes.
CID_CASES = (
    (0, 4, 3), (1, 4, 3), (4, 4, 3), (5, 4, 3), (12, 4, 3), (13, 4, 3), (36, 4, 3),
    (37, 4, 3), (100, 4, 3), (108, 4, 3), (109, 4, 3), (333, 4, 3),
    (0, 262144, 174), (1, 262144, 174), (262144, 262144, 174), (262145, 262144, 174),
    (174 * 262144 + 1, 262144, 174),
)
PATTERN = "byte i = (i mod 251) xor (floor(i / 251) mod 256)"


_PERIOD = bytes((i % 251) ^ ((i // 251) % 256) for i in range(251 * 256))


def pattern(size: int) -> bytes:
    """The test content (PATTERN, period 251 x 256 bytes): cheap to regenerate in any
    language, and no two 262144-byte chunks of it are equal."""
    return (_PERIOD * (size // len(_PERIOD) + 1))[:size]


def _seed(label: str, size: int = 64) -> bytes:
    return hashlib.blake2b(b"datadebit web vectors: " + label.encode(), digest_size=size).digest()


def _scalar(label: str) -> Scalar:
    return Scalar.from_int(int.from_bytes(_seed(label), "little"))


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _unhex(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def _domain() -> Eip712Domain:
    return Eip712Domain(CHAIN_ID, MARKET)  # type: ignore[arg-type]


def _signature_variants(signature: bytes) -> list[str]:
    """The same signature as wallets may encode it: v as 0/1, and high s with v flipped."""
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64] - 27
    high = (_SECP256K1_N - s).to_bytes(32, "big")
    return [_hex(r + s.to_bytes(32, "big") + bytes([v])), _hex(r + high + bytes([28 - v]))]


def _keys() -> dict[str, Any]:
    domain = _domain()
    buyer_sig = sign(Account.from_key(BUYER_WALLET_KEY), domain, EncryptionKey())
    owner_sig = sign(Account.from_key(OWNER_WALLET_KEY), domain, OWNER_KEY_MESSAGE)
    buyer = BuyerSecretKey.from_signature(buyer_sig)
    owner = OwnerSecretKey.from_signature(owner_sig)
    return {
        "domain": domain.to_dict(),
        "buyer": {
            "wallet": Account.from_key(BUYER_WALLET_KEY).address,
            "walletKey": BUYER_WALLET_KEY,
            "typedData": typed_data(domain, EncryptionKey()),
            "signature": _hex(buyer_sig),
            "signatureVariants": _signature_variants(buyer_sig),
            "x25519Secret": _hex(buyer.to_secret_bytes()),
            "x25519Public": _hex(buyer.public_key().key),
        },
        "owner": {
            "wallet": Account.from_key(OWNER_WALLET_KEY).address,
            "walletKey": OWNER_WALLET_KEY,
            "typedData": typed_data(domain, OWNER_KEY_MESSAGE),
            "signature": _hex(owner_sig),
            "signatureVariants": _signature_variants(owner_sig),
            "x25519Secret": _hex(owner.to_secret_bytes()),
            "x25519Public": owner.public_key_hex(),
        },
    }


def _buyer() -> BuyerSecretKey:
    return BuyerSecretKey.from_account(Account.from_key(BUYER_WALLET_KEY), _domain())


def _owner() -> OwnerSecretKey:
    return OwnerSecretKey.from_account(Account.from_key(OWNER_WALLET_KEY), _domain())


# -- the envelope -----------------------------------------------------------------------------


def _dek() -> DataKey:
    return DataKey(_seed("dek", 32))


def _envelope_opens(sealed: bytes) -> bool:
    out = io.BytesIO()
    try:
        header = envelope.EnvelopeHeader.parse(sealed[: envelope.HEADER_SIZE])
        envelope.decrypt(io.BytesIO(sealed), out, _dek())
    except StorageError:
        return False
    plain = pattern(ENVELOPE_PLAINTEXT_SIZE)
    return header.chunk_size == ENVELOPE_CHUNK_SIZE and out.getvalue() == plain


def _fresh_envelope() -> bytes:
    out = io.BytesIO()
    envelope.encrypt(
        io.BytesIO(pattern(ENVELOPE_PLAINTEXT_SIZE)), out, _dek(), chunk_size=ENVELOPE_CHUNK_SIZE
    )
    return out.getvalue()


def _tamper_cases(sealed: bytes) -> list[dict[str, Any]]:
    """Envelope edits a reader must refuse, each with the error Python raises for it.

    `ops` are applied in order to the envelope bytes: flip (xor 0x01 at offset), cut
    (keep the first `length` bytes), append (bytes), swap (two equal-size ranges), and
    `key` (decrypt with another key).
    """
    frame = ENVELOPE_CHUNK_SIZE + envelope.FRAME_OVERHEAD
    h = envelope.HEADER_SIZE
    cases: list[dict[str, Any]] = [
        {"name": "bit flipped in frame 2", "ops": [{"op": "flip", "offset": h + 2 * frame + 5}],
         "code": "chunk_rejected"},
        {"name": "bit flipped in the last frame's tag",
         "ops": [{"op": "flip", "offset": len(sealed) - 1}], "code": "chunk_rejected"},
        {"name": "header chunk size changed", "ops": [{"op": "flip", "offset": 8}],
         "code": "wrong_key"},
        {"name": "stream header changed", "ops": [{"op": "flip", "offset": 12}],
         "code": "wrong_key"},
        {"name": "bad magic", "ops": [{"op": "flip", "offset": 0}], "code": "bad_magic"},
        {"name": "format 2", "ops": [{"op": "set", "offset": 4, "value": 2}],
         "code": "unsupported_format"},
        {"name": "frames 1 and 2 swapped",
         "ops": [{"op": "swap", "a": h + frame, "b": h + 2 * frame, "length": frame}],
         "code": "chunk_rejected"},
        {"name": "cut after frame 3 (no FINAL)", "ops": [{"op": "cut", "length": h + 4 * frame}],
         "code": "truncated"},
        {"name": "cut inside the last frame", "ops": [{"op": "cut", "length": len(sealed) - 5}],
         "code": "chunk_rejected"},
        {"name": "cut inside the header", "ops": [{"op": "cut", "length": 40}],
         "code": "truncated"},
        {"name": "stray bytes after frame 3", "ops": [{"op": "cut", "length": h + 4 * frame + 9}],
         "code": "truncated"},
        {"name": "a byte after the short FINAL frame (read as part of it)",
         "ops": [{"op": "append", "bytes": "0x00"}], "code": "chunk_rejected"},
        {"name": "another data key", "ops": [{"op": "key", "key": _hex(_seed("other dek", 32))}],
         "code": "wrong_key"},
    ]
    for case in cases:
        data, key = bytearray(sealed), _dek()
        for op in case["ops"]:
            data, key = _apply(op, data, key)
        try:
            envelope.decrypt(io.BytesIO(bytes(data)), io.BytesIO(), key)
        except StorageError as e:
            case["python"] = type(e).__name__
            continue
        raise AssertionError(f"Python accepts the tampered envelope {case['name']!r}")
    return cases


def _apply(op: dict[str, Any], data: bytearray, key: DataKey) -> tuple[bytearray, DataKey]:
    kind = op["op"]
    if kind == "flip":
        data[op["offset"]] ^= 1
    elif kind == "set":
        data[op["offset"]] = op["value"]
    elif kind == "cut":
        del data[op["length"]:]
    elif kind == "append":
        data += _unhex(op["bytes"])
    elif kind == "swap":
        a, b, n = op["a"], op["b"], op["length"]
        data[a : a + n], data[b : b + n] = data[b : b + n], data[a : a + n]
    elif kind == "key":
        key = DataKey(_unhex(op["key"]))
    return data, key


# -- the release ------------------------------------------------------------------------------


def _share_sealed(kept: str | None, key_share: KeyShare) -> bytes:
    """A sealed box of `key_share` to the buyer: the kept one if it still opens to it."""
    buyer = _buyer()
    if kept is not None:
        try:
            plain = sodium.crypto_box_seal_open(
                _unhex(kept), buyer.public_key().key, buyer.to_secret_bytes()
            )
        except CryptoError:
            plain = b""
        if plain == key_share.to_bytes():
            return _unhex(kept)
    return seal_key_share(key_share, buyer.public_key())


def _answer(node: int, epoch: int, sealed: bytes) -> dict[str, Any]:
    """The `POST /v1/keys` 200 body node `node` sends (§11.2), receipt signed by its wallet."""
    domain = _domain()
    buyer_wallet = Account.from_key(BUYER_WALLET_KEY)
    request = KeyRequest(DEBIT_ID, VERSION, REQUEST_EXPIRY, _seed("request nonce", 32))
    receipt = ReleaseReceipt.for_sealed_share(
        DEBIT_ID, VERSION, node, sealed, RECEIPT_BLOCK, epoch=epoch,
        buyer=buyer_wallet.address, buyer_key=_buyer().public_key().key,
        request_digest=digest(domain, request),
    )
    signature = sign(Account.from_key(NODE_WALLET_KEYS[node - 1]), domain, receipt)
    return {
        "node": node,
        "debitId": DEBIT_ID,
        "version": VERSION,
        "sealedShare": base64.b64encode(sealed).decode(),
        "receipt": receipt.to_message(),
        "receiptSignature": _hex(signature),
    }


def _kept(answer: dict[str, Any] | None) -> str | None:
    """The sealed share (0x-hex) of a previously written answer, if any."""
    if not answer:
        return None
    return _hex(base64.b64decode(answer["sealedShare"]))


def _committee(keys: CommitteeKeys) -> dict[str, Any]:
    return {
        "threshold": keys.threshold,
        "committeeKey": _hex(keys.committee_key.to_bytes()),
        "shareKeys": [_hex(k.point.to_bytes()) for k in keys.share_keys],
    }


def _release(sealed_envelope: bytes, previous: dict[str, Any]) -> dict[str, Any]:
    cid = compute_cid([sealed_envelope])
    ctx = CapsuleContext(CHAIN_ID, MARKET, LISTING_ID, VERSION, cid.binary)
    coefficients = [_scalar("secret"), _scalar("coefficient 1")]
    dealt = _deal(SIZE, THRESHOLD, coefficients)
    capsule = _make_capsule(
        _dek(), ctx, dealt.keys.committee_key, _r=SecretScalar(_scalar("r")),
        _nonce=_seed("capsule nonce", 24), _k=SecretScalar(_scalar("capsule proof k")),
    )
    bound = capsule.bind(ctx)
    kept = {a["node"]: _kept(a) for a in previous.get("answers", [])}
    answers = []
    for share in dealt.shares:
        key_share = _make_key_share(
            share, bound, DEBIT_ID, VERSION, _k=SecretScalar(_scalar(f"k {share.index}"))
        )
        sealed = _share_sealed(kept.get(share.index), key_share)
        answers.append(_answer(share.index, 1, sealed))
    # node 2's share with its proof response off by one: sealed and receipted properly,
    # so only the DLEQ check can catch it
    k2 = SecretScalar(_scalar("k 2"))
    good = _make_key_share(dealt.shares[1], bound, DEBIT_ID, VERSION, _k=k2)
    bad = KeyShare(good.index, good.d_point,
                   DleqProof(good.proof.challenge, good.proof.response + Scalar.from_int(1)),
                   DEBIT_ID, VERSION)
    corrupted = _answer(2, 1, _share_sealed(_kept(previous.get("corruptedAnswer")), bad))
    # epoch 2: the same secret on another polynomial (a reshare); node 3's share of it
    epoch2 = _deal(SIZE, THRESHOLD, [coefficients[0], _scalar("epoch 2 coefficient 1")])
    e2_node = NodeShare.from_secret(3, epoch2.shares[2].secret, epoch=2)
    k_e2 = SecretScalar(_scalar("k e2"))
    e2_key_share = _make_key_share(e2_node, bound, DEBIT_ID, VERSION, _k=k_e2)
    epoch2_answer = _answer(3, 2, _share_sealed(_kept(previous.get("epoch2Answer")), e2_key_share))
    return {
        "config": {
            "chainId": CHAIN_ID,
            "market": MARKET,
            "gateways": [{"index": i, "url": url} for i, url in GATEWAY_URLS.items()],
        },
        "listingId": LISTING_ID,
        "version": VERSION,
        "debitId": DEBIT_ID,
        "cid": cid.text,
        "cidBytes": _hex(cid.binary),
        "context": _hex(ctx.to_bytes()),
        "capsule": _hex(capsule.to_bytes()),
        "committees": {"1": _committee(dealt.keys), "2": _committee(epoch2.keys)},
        "answers": answers,
        "corruptedAnswer": corrupted,
        "epoch2Answer": epoch2_answer,
        "dek": _hex(_dek().to_secret_bytes()),
    }


# -- CIDs and documents ----------------------------------------------------------------------


def _cids() -> dict[str, Any]:
    cases = []
    for size, chunk, links in CID_CASES:
        builder = DagBuilder(chunk_size=chunk, max_links=links)
        builder.update(pattern(size))
        cases.append({"size": size, "chunkSize": chunk, "maxLinks": links,
                      "cid": builder.finish().text})
    return {"pattern": PATTERN, "cases": cases}


CANONICAL_VALUES: tuple[Any, ...] = (
    {"b": 1, "a": [True, False, None], "c": {"z": "", "y": -7}},
    {"quote\"back\\slash": "tab\tnl\ncr\rbs\bff\fnul\x00esc\x1bdel\x7fc1\x85"},
    {"\ue000": 1, "\U0001f600": 2, "\uffff": 3, "z": 4, "é": 5, "E": 6, "\u2028": 7},
    ["line\u2028sep\u2029", "emoji \U0001f6b2 ok", "日本語", "\u00e9\u0301"],
    {"": {"": []}, "n": 9007199254740991},
)


def _purpose_doc() -> PurposeDocument:
    return PurposeDocument(
        requester="Équipe Vélo — Nantes 🚲",
        purpose="Compter les passages\npar heure\tet par jour.",
        intended_use="Research only",
        retention="90 days",
        contact="velo@example.org",
    )


def _sealed_purpose(previous: dict[str, Any]) -> bytes:
    kept = previous.get("sealedPurpose")
    if kept is not None:
        wrapper = _unhex(kept)
        try:
            value = json.loads(wrapper)
            sealed = base64.b64decode(value["sealed"])
            owner = _owner()
            plain = sodium.crypto_box_seal_open(sealed, owner.public_key(), owner.to_secret_bytes())
        except (CryptoError, ValueError, KeyError, TypeError):  # not a kept wrapper that opens
            plain = b""
        if plain == encode_document(_purpose_doc()) and wrapper == _canonical_json(value):
            return wrapper
    return seal_purpose(_purpose_doc(), _owner().public_key())


INVALID_PURPOSES: tuple[dict[str, Any], ...] = (
    {"schema": "datadebit/purpose/v1", "purpose": "no requester"},
    {"schema": "datadebit/purpose/v1", "requester": "a\rb", "purpose": "p"},
    {"schema": "datadebit/purpose/v1", "requester": "a\nb", "purpose": "p"},
    {"schema": "datadebit/purpose/v1", "requester": "a", "purpose": " \n\t\u3000"},
    {"schema": "datadebit/purpose/v1", "requester": "a", "purpose": "p", "extra": "x"},
    {"schema": "datadebit/purpose/v1", "requester": "a" * 201, "purpose": "p"},
    {"schema": "datadebit/purpose/v1", "requester": "a", "purpose": "p", "retention": 90},
    {"schema": "datadebit/listing/v1", "requester": "a", "purpose": "p"},
    {"schema": "datadebit/purpose/v1", "requester": "a", "purpose": "p\x9b"},
)


def _documents(previous: dict[str, Any]) -> dict[str, Any]:
    doc = _purpose_doc()
    encoded = encode_document(doc)
    sealed = _sealed_purpose(previous)
    invalid = []
    for value in INVALID_PURPOSES:
        try:
            parse_purpose_document(_canonical_json(value))
        except DocumentError as e:
            invalid.append({"document": value, "reason": e.reason})
            continue
        raise AssertionError(f"Python accepts the invalid purpose {value!r}")
    return {
        "canonical": [{"value": v, "json": _canonical_json(v).decode()} for v in CANONICAL_VALUES],
        "purpose": {
            "fields": doc.model_dump(mode="json", by_alias=True, exclude_none=True),
            "canonical": encoded.decode(),
            "purposeHash": _hex(purpose_hash(encoded)),
            "cid": purpose_cid(purpose_hash(encoded)).text,
        },
        "sealedPurpose": _hex(sealed),
        "sealedPurposeHash": _hex(purpose_hash(sealed)),
        "invalidPurposes": invalid,
    }


def build_vectors(previous: dict[str, Any]) -> dict[str, Any]:
    kept = previous.get("envelope", {}).get("envelope")
    sealed_envelope = _unhex(kept) if kept and _envelope_opens(_unhex(kept)) else _fresh_envelope()
    cid = compute_cid([sealed_envelope])
    request = KeyRequest(DEBIT_ID, VERSION, REQUEST_EXPIRY, _seed("request nonce", 32))
    return {
        "about": "the web app's JavaScript against the Python (docs/protocol.md §19); bytes "
        "are 0x-hex, scalars little-endian",
        "generator": "scripts/make_web_vectors.py",
        "keys": _keys(),
        "keyRequest": {
            "request": request.to_message(),
            "typedData": typed_data(_domain(), request),
            "signature": _hex(sign(Account.from_key(BUYER_WALLET_KEY), _domain(), request)),
        },
        "release": _release(sealed_envelope, previous.get("release", {})),
        "envelope": {
            "dek": _hex(_dek().to_secret_bytes()),
            "chunkSize": ENVELOPE_CHUNK_SIZE,
            "plaintextSize": ENVELOPE_PLAINTEXT_SIZE,
            "plaintextSha256": _hex(hashlib.sha256(pattern(ENVELOPE_PLAINTEXT_SIZE)).digest()),
            "envelope": _hex(sealed_envelope),
            "cid": cid.text,
            "tamper": _tamper_cases(sealed_envelope),
        },
        "cids": _cids(),
        "documents": _documents(previous.get("documents", {})),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    previous = json.loads(VECTORS.read_text()) if VECTORS.exists() else {}
    vectors = build_vectors(previous)
    if args.check:
        if vectors != previous:
            print(f"{VECTORS} is stale: run scripts/make_web_vectors.py", file=sys.stderr)
            return 1
        return 0
    VECTORS.parent.mkdir(parents=True, exist_ok=True)
    VECTORS.write_text(json.dumps(vectors, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {VECTORS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
