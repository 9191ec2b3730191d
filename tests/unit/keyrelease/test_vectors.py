"""The committed known-answer vectors: recomputed exactly, and consistent with the spec.

The "from the file alone" tests redo each step the way docs/protocol.md describes it, with
plain integers, hashlib and raw libsodium calls, so neither the vectors nor the document can
drift from the code unnoticed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import nacl.bindings as sodium
import nacl.exceptions
import pytest
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak

from marketplace.eip712 import (
    Eip712Domain,
    KeyRequest,
    ReleaseReceipt,
    recover_digest_signer,
)
from marketplace.gateway.wire import parse_keys_body
from marketplace.keyrelease import (
    BuyerPublicKey,
    Capsule,
    CapsuleContext,
    CommitteeKeys,
    InvalidBuyerKey,
    KeyShare,
    L,
    Point,
)
from marketplace.keyrelease.buyer_key import is_small_order
from marketplace.keyrelease.capsule import open_capsule
from scripts.make_keyrelease_vectors import (
    VECTORS,
    build_vectors,
    envelope_opens,
    sealed_share_opens,
)
from storage.keys import DataKey
from storage.unixfs import compute_cid


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(VECTORS.read_text())
    return loaded


def b(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text[2:])


def test_vectors_are_recomputed_exactly(vectors: dict[str, Any]) -> None:
    """Everything but the two random parts is recomputed from fixed labels."""
    sealed_share = b(vectors["buyer"]["sealedShare"])
    sealed_envelope = b(vectors["envelope"]["envelope"])
    assert build_vectors(sealed_share, sealed_envelope) == vectors


def test_the_committed_random_parts_open(vectors: dict[str, Any]) -> None:
    assert sealed_share_opens(b(vectors["buyer"]["sealedShare"]), vectors["shares"][0]["plaintext"])
    assert envelope_opens(b(vectors["envelope"]["envelope"]))


def test_a_tampered_sealed_share_or_envelope_does_not_open(vectors: dict[str, Any]) -> None:
    """The generator keeps a random part only if it opens; a flipped byte must not."""
    sealed = bytearray(b(vectors["buyer"]["sealedShare"]))
    sealed[-1] ^= 1
    assert not sealed_share_opens(bytes(sealed), vectors["shares"][0]["plaintext"])
    env = bytearray(b(vectors["envelope"]["envelope"]))
    env[-1] ^= 1
    assert not envelope_opens(bytes(env))


def test_vectors_are_consistent_with_the_spec(vectors: dict[str, Any]) -> None:
    """Checks from the file alone, so the vectors cannot drift with the code."""
    dealer, cap = vectors["dealer"], vectors["capsule"]
    keys = CommitteeKeys.from_bytes(
        dealer["t"], b(dealer["committeeKey"]), [b(s["shareKey"]) for s in dealer["shares"]]
    )
    keys.check_consistent()
    c = cap["context"]
    ctx = CapsuleContext(c["chainId"], c["market"], c["listingId"], c["version"], b(c["cid"]))
    assert ctx.to_bytes() == b(c["encoded"])
    capsule = Capsule.from_bytes(b(cap["capsule"]))
    z = Point.from_bytes(b(cap["z"]))
    assert open_capsule(capsule, ctx, z) == DataKey(b(cap["dek"]))
    kem = hashlib.blake2b(
        b"datadebit/kem/v1" + b(cap["capsule"])[:32] + b(cap["z"]), digest_size=32
    )
    assert kem.digest() == b(cap["kemKey"])
    for share in vectors["shares"]:
        parsed = KeyShare.from_bytes(b(share["plaintext"]))
        parsed.verify(keys.share_key(share["index"]), capsule)
    for combination in vectors["combine"]:
        assert combination["z"] == cap["z"]


def test_capsule_proof_vector_follows_the_spec(vectors: dict[str, Any]) -> None:
    """c = Hs(`datadebit/capsule-proof/v1`, R || k·G || nonce || sealed key || ctx) and
    s = k + c·r, recomputed from the file with plain integers and libsodium."""
    cap = vectors["capsule"]
    raw = b(cap["capsule"])
    r_bytes, nonce, sealed, c_bytes, s_bytes = (
        raw[:32], raw[32:56], raw[56:104], raw[104:136], raw[136:168]
    )
    assert nonce == b(cap["nonce"]) and c_bytes == b(cap["proofChallenge"])
    assert s_bytes == b(cap["proofResponse"])
    commitment = sodium.crypto_scalarmult_ed25519_base_noclamp(b(cap["proofK"]))
    digest = hashlib.blake2b(
        b"datadebit/capsule-proof/v1" + r_bytes + commitment + nonce + sealed
        + b(cap["context"]["encoded"]),
        digest_size=64,
    ).digest()
    assert int.from_bytes(digest, "little") % L == int.from_bytes(c_bytes, "little")
    k, r = (int.from_bytes(b(x), "little") for x in (cap["proofK"], cap["r"]))
    c = int.from_bytes(c_bytes, "little")
    assert (k + c * r) % L == int.from_bytes(s_bytes, "little")
    ctx_fields = cap["context"]
    ctx = CapsuleContext(
        ctx_fields["chainId"], ctx_fields["market"], ctx_fields["listingId"],
        ctx_fields["version"], b(ctx_fields["cid"]),
    )
    assert Capsule.from_bytes(raw).bind(ctx).ctx == ctx


def test_buyer_key_vector(vectors: dict[str, Any]) -> None:
    buyer = vectors["buyer"]
    secret = hashlib.blake2b(
        b"datadebit/x25519/v1" + b(buyer["encryptionKeySignature"]), digest_size=32
    ).digest()
    assert secret == b(buyer["x25519Secret"])
    assert buyer["encryptionKeySignature"] == vectors["eip712"]["encryptionKey"]["signature"]


@pytest.mark.parametrize("name", ["encryptionKey", "keyRequest", "releaseReceipt"])
def test_eip712_vectors_match_eth_account(vectors: dict[str, Any], name: str) -> None:
    entry = vectors["eip712"][name]
    signable = encode_typed_data(full_message=entry["typedData"])
    expected = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert expected == b(entry["digest"])
    assert recover_digest_signer(expected, b(entry["signature"])) == entry["signer"]
    domain = entry["typedData"]["domain"]
    separator = Eip712Domain(domain["chainId"], domain["verifyingContract"]).separator
    assert separator == b(vectors["eip712"]["domainSeparator"])


def test_wire_messages_parse_from_the_vector_payloads(vectors: dict[str, Any]) -> None:
    request = vectors["eip712"]["keyRequest"]["typedData"]["message"]
    receipt = vectors["eip712"]["releaseReceipt"]["typedData"]["message"]
    as_numbers = {k: int(v) if k != "nonce" else v for k, v in request.items()}
    assert KeyRequest.from_message(as_numbers).to_message() == as_numbers
    integers = {name for name, kind in ReleaseReceipt.FIELDS if kind.startswith("uint")}
    receipt_numbers = {k: int(v) if k in integers else v for k, v in receipt.items()}
    assert ReleaseReceipt.from_message(receipt_numbers).to_message() == receipt_numbers
    assert receipt_numbers == vectors["wire"]["keysResponse"]["receipt"]


def test_keys_exchange_vector_is_consistent(vectors: dict[str, Any]) -> None:
    """`POST /v1/keys` body and answer: the receipt names the buyer, SHA-256 of its X25519
    key, the request's EIP-712 digest and SHA-256 of the sealed share, and is signed by
    the node; the body parses as the gateway parses it."""
    wire, eip = vectors["wire"], vectors["eip712"]
    body, answer = wire["keysRequest"], wire["keysResponse"]
    parsed, signature = parse_keys_body(json.dumps(body).encode())
    assert parsed.to_message() == body["request"]
    assert signature == eip["keyRequest"]["signature"]
    sealed = base64.b64decode(answer["sealedShare"], validate=True)
    assert sealed == b(vectors["buyer"]["sealedShare"])
    receipt = answer["receipt"]
    assert (receipt["debitId"], receipt["version"], receipt["node"], receipt["epoch"]) == (
        body["request"]["debitId"], body["request"]["version"], answer["node"], 1
    )
    assert receipt["buyer"] == eip["keyRequest"]["signer"]
    buyer_key = b(vectors["buyer"]["x25519Public"])
    assert b(receipt["buyerKeyHash"]) == hashlib.sha256(buyer_key).digest()
    assert receipt["requestDigest"] == eip["keyRequest"]["digest"]
    assert b(receipt["sealedShareHash"]) == hashlib.sha256(sealed).digest()
    assert answer["receiptSignature"] == eip["releaseReceipt"]["signature"]
    receipt_digest = b(eip["releaseReceipt"]["digest"])
    assert recover_digest_signer(receipt_digest, b(answer["receiptSignature"])) == (
        eip["releaseReceipt"]["signer"]
    )
    entry = wire["releaseEntry"]
    assert entry["receipt"] == receipt and entry["request"] == body["request"]
    assert entry["requestSignature"] == body["signature"]
    assert recover_digest_signer(b(receipt["requestDigest"]), b(entry["requestSignature"])) == (
        receipt["buyer"]
    )


def _merkle_root(leaves: list[bytes]) -> bytes:
    """keccak256(0x00 || item) leaves, keccak256(0x01 || left || right) parents, an odd
    last node promoted unchanged: docs/protocol.md, written out again."""
    level = [keccak(b"\x00" + item) for item in leaves]
    while len(level) > 1:
        level = [
            keccak(b"\x01" + level[i] + level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return level[0]


def _fold_proof(item: bytes, index: int, count: int, siblings: list[bytes]) -> bytes:
    node, position, size, used = keccak(b"\x00" + item), index, count, 0
    while size > 1:
        sibling = position ^ 1
        if sibling < size:
            other = siblings[used]
            used += 1
            node = keccak(b"\x01" + (node + other if sibling > position else other + node))
        position, size = position // 2, (size + 1) // 2
    assert used == len(siblings)
    return node


def test_merkle_vector_follows_the_spec(vectors: dict[str, Any]) -> None:
    tree = vectors["merkle"]
    items = [b(x) for x in tree["items"]]
    assert items[0] == b(vectors["eip712"]["releaseReceipt"]["digest"])
    assert [keccak(b"\x00" + i) for i in items] == [b(x) for x in tree["leafHashes"]]
    for n, root in enumerate(tree["prefixRoots"], start=1):
        assert _merkle_root(items[:n]) == b(root)
    for proof in tree["proofs"]:
        folded = _fold_proof(
            items[proof["index"]], proof["index"], proof["count"],
            [b(x) for x in proof["siblings"]],
        )
        assert folded == b(tree["prefixRoots"][-1])


def test_small_order_buyer_keys_are_refused(vectors: dict[str, Any]) -> None:
    """Every key marked small-order is refused by `BuyerPublicKey` and gives libsodium's
    all-zero X25519 output (which it refuses); the others are accepted."""
    secret = hashlib.blake2b(b"any secret", digest_size=32).digest()
    for entry in vectors["smallOrderBuyerKeys"]:
        key = b(entry["key"])
        assert is_small_order(key) is entry["smallOrder"]
        if entry["smallOrder"]:
            with pytest.raises(InvalidBuyerKey):
                BuyerPublicKey(key)
            with pytest.raises(nacl.exceptions.CryptoError):
                sodium.crypto_scalarmult(secret, key)
        else:
            assert BuyerPublicKey(key).key == key
            assert sodium.crypto_scalarmult(secret, key) != bytes(32)


def test_envelope_vector_follows_the_spec(vectors: dict[str, Any]) -> None:
    """Header = "DDE1" || format 1 || chunk size (u32 BE) || secretstream header (24) ||
    BLAKE2b-256 keyed by the DEK over `datadebit/envelope-commit/v1` || the 33 bytes
    before it; frames of chunk size + 17 bytes, the header the first frame's AD, the last
    tagged FINAL. Decrypted here with raw libsodium calls."""
    env = vectors["envelope"]
    raw, key, chunk = b(env["envelope"]), b(env["dataKey"]), env["chunkSize"]
    header = raw[:65]
    assert header == b(env["header"])
    assert header[:5] == b"DDE1\x01" and int.from_bytes(header[5:9], "big") == chunk
    commitment = hashlib.blake2b(
        b"datadebit/envelope-commit/v1" + header[:33], key=key, digest_size=32
    ).digest()
    assert header[33:] == commitment
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header[9:33], key)
    body, plain, tags = raw[65:], b"", []
    frames = [body[i:i + chunk + 17] for i in range(0, len(body), chunk + 17)]
    for index, frame in enumerate(frames):
        message, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(
            state, frame, header if index == 0 else None
        )
        plain += message
        tags.append(tag)
    assert plain == b(env["plaintext"])
    final = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
    assert tags == [0] * (len(frames) - 1) + [final] and len(frames) == 4
    cid = compute_cid([raw])
    assert (cid.text, "0x" + cid.binary.hex()) == (env["cid"], env["cidBinary"])
