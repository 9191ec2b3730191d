"""The web server's JSON API (protocol §19): config, a version's CID and capsule, content
by CID, purpose documents stored after the owner's reader would accept them, the ABI."""

from __future__ import annotations

import base64
import json

import pytest
from nacl.public import PrivateKey

from marketplace.app.browse import versions_of
from marketplace.documents import (
    MAX_DOCUMENT_BYTES,
    ListingDocument,
    PurposeDocument,
    encode_document,
    load_purpose,
    purpose_hash,
    seal_purpose,
)
from storage.cid import Cid, Codec
from tests.web.conftest import WebWorld


def test_config_names_chain_market_and_gateways(world: WebWorld) -> None:
    body = world.client().get("/api/config").json()
    assert body == {
        "chainId": world.net.market.chain_id, "market": world.net.market.address,
        "gateways": [{"index": i, "url": f"http://node-{i}"} for i in (1, 2, 3)],
    }


def test_version_gives_cid_and_capsule_from_the_chain(world: WebWorld) -> None:
    [published] = versions_of(world.net.market, world.air.listing_id)
    body = world.client().get(f"/api/listings/{world.air.listing_id}/versions/1").json()
    assert body["listingId"] == world.air.listing_id and body["version"] == 1
    assert body["cid"] == published.cid.text
    assert bytes.fromhex(body["cidBytes"][2:]) == published.cid.binary
    assert len(bytes.fromhex(body["capsule"][2:])) == 168
    assert body["capsule"] == "0x" + published.capsule.hex()
    record = world.net.market.version(world.air.listing_id, 1)
    assert body["publishedAt"] == record.published_at and body["block"] == published.block


@pytest.mark.parametrize("path", [
    "/api/listings/{air}/versions/2", "/api/listings/{hostile}/versions/1",
    "/api/listings/999/versions/1",
])
def test_unknown_version_is_a_404(world: WebWorld, path: str) -> None:
    response = world.client().get(path.format(air=world.air.listing_id,
                                              hostile=world.hostile.listing_id))
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_version"


@pytest.mark.parametrize("path", [
    "/api/listings/abc/versions/1", "/api/listings/0/versions/1", "/api/listings/-1/versions/1",
    f"/api/listings/{2**63}/versions/1", "/api/listings/1/versions/0",
    f"/api/listings/1/versions/{2**32}", "/api/listings/1/versions/1.5",
])
def test_malformed_version_ids_are_a_422(world: WebWorld, path: str) -> None:
    response = world.client().get(path)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_content_streams_the_stored_bytes(world: WebWorld) -> None:
    [published] = versions_of(world.net.market, world.air.listing_id)
    response = world.client().get(f"/content/{published.cid.text}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == b"".join(world.net.store.stream(published.cid))
    assert response.content.startswith(b"DDE1")  # the ciphertext, never a plaintext


def test_content_refusals(world: WebWorld) -> None:
    client = world.client()
    absent = Cid.of_block(Codec.RAW, b"never stored").text
    assert client.get(f"/content/{absent}").json()["code"] == "not_found"
    assert client.get(f"/content/{absent}").status_code == 404
    for bad in ("nonsense", "bafy" + "z" * 50, "Qm" + "1" * 44, "x" * 201):
        response = client.get(f"/content/{bad}")
        assert response.status_code == 422, bad
        assert response.json()["code"] in ("malformed", "invalid_request")


def purpose() -> PurposeDocument:
    return PurposeDocument(requester="A lab", purpose="asthma study", retention="1 year")


def test_plain_purpose_is_stored_under_its_hash(world: WebWorld) -> None:
    data = encode_document(purpose())
    response = world.client().post("/api/documents", content=data)
    assert response.status_code == 200
    body = response.json()
    assert body["purposeHash"] == "0x" + purpose_hash(data).hex()
    assert body["cid"] == Cid.of_block(Codec.RAW, data).text and body["sealed"] is False
    assert load_purpose(world.net.store, purpose_hash(data), None) == purpose()


def test_sealed_purpose_is_stored_and_opens_with_the_owner_key(world: WebWorld) -> None:
    data = seal_purpose(purpose(), bytes(world.owner.owner_secret().public_key()))
    body = world.client().post("/api/documents", content=data).json()
    assert body["sealed"] is True
    stored = load_purpose(world.net.store, bytes.fromhex(body["purposeHash"][2:]),
                          world.owner.owner_secret())
    assert stored == purpose()


def _sealed_wrapper(payload: object) -> bytes:
    return json.dumps({"schema": "datadebit/sealed-purpose/v1", "sealed": payload}).encode()


@pytest.mark.parametrize(("data", "code"), [
    (b"not json", "invalid_json"),
    (b'{"a": 1, "a": 2}', "invalid_json"),
    (b"[" * 300 + b"]" * 300, "invalid_json"),
    (b'{"schema": "datadebit/purpose/v1", "requester": "x"}', "invalid_schema"),
    (b'{"schema": "datadebit/purpose/v1", "requester": "x", "purpose": "y", "extra": 1}',
     "invalid_schema"),
    (encode_document(ListingDocument(title="a listing, not a purpose")), "invalid_schema"),
    (_sealed_wrapper("not base64!"), "invalid_schema"),
    (_sealed_wrapper(base64.b64encode(b"short").decode()), "invalid_schema"),
    (b"\xff\xfe", "invalid_json"),
])
def test_bad_documents_are_refused_with_their_reason(
    world: WebWorld, data: bytes, code: str
) -> None:
    response = world.client().post("/api/documents", content=data)
    assert response.status_code == 422
    assert response.json()["code"] == code
    assert not world.net.store.has(Cid.of_block(Codec.RAW, data))


def test_document_size_limits(world: WebWorld) -> None:
    client = world.client()
    big = b" " * (MAX_DOCUMENT_BYTES + 1)
    response = client.post("/api/documents", content=big)
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    chunked = client.post("/api/documents", content=iter([b" " * 200_000, b" " * 200_000]))
    assert chunked.status_code == 413
    empty = client.post("/api/documents", content=b"")
    assert empty.status_code == 422 and empty.json()["code"] == "empty"


def test_sealed_to_any_key_is_accepted_but_only_that_key_opens_it(world: WebWorld) -> None:
    """The server cannot tell whose key a purpose is sealed to: it stores a well-formed
    wrapper; the owner's reader then reports it as sealed to someone else."""
    stranger = PrivateKey.generate().public_key
    data = seal_purpose(purpose(), bytes(stranger))
    body = world.client().post("/api/documents", content=data).json()
    from marketplace.documents import PurposeSealed  # noqa: PLC0415

    with pytest.raises(PurposeSealed, match="does not open it"):
        load_purpose(world.net.store, bytes.fromhex(body["purposeHash"][2:]),
                     world.owner.owner_secret())


def test_abi_is_the_market_abi(world: WebWorld) -> None:
    abi = world.client().get("/api/abi").json()
    names = {e.get("name") for e in abi}
    assert {"requestDebit", "consent", "reject", "revoke", "getListing", "DebitRequested",
            "committeeAt", "isEntitled"} <= names


def test_unknown_api_path_is_json(world: WebWorld) -> None:
    response = world.client().get("/api/nothing")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "no such page"}
    assert world.client().post("/api/config").json()["code"] == "http_error"
