"""The committed known-answer vectors: recomputed exactly, and consistent with the spec."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import nacl.bindings as sodium
import pytest
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak

from marketplace.eip712 import Eip712Domain, KeyRequest, ReleaseReceipt, recover_digest_signer
from marketplace.keyrelease import Capsule, CapsuleContext, CommitteeKeys, KeyShare, L, Point
from marketplace.keyrelease.capsule import open_capsule
from scripts.make_keyrelease_vectors import VECTORS, build_vectors, sealed_share_opens
from storage.keys import DataKey


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(VECTORS.read_text())
    return loaded


def b(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text[2:])


def test_vectors_are_recomputed_exactly(vectors: dict[str, Any]) -> None:
    committed = json.loads(json.dumps(vectors))
    del committed["buyer"]["sealedShare"]
    assert build_vectors() == committed


def test_the_committed_sealed_share_opens_to_share_one(vectors: dict[str, Any]) -> None:
    assert sealed_share_opens(vectors, vectors["buyer"]["sealedShare"])


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
    receipt_numbers = {k: int(v) if k != "sealedShareHash" else v for k, v in receipt.items()}
    assert ReleaseReceipt.from_message(receipt_numbers).to_message() == receipt_numbers
