"""Listing and purpose documents: schema, canonical bytes, every read checked against its CID,
sealed purposes that only the listing owner opens."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.public import PublicKey, SealedBox

from marketplace import documents
from marketplace.documents import (
    FIELD_TYPES,
    LISTING_SCHEMA,
    MAX_DOCUMENT_BYTES,
    OWNER_ENCRYPTION_KEY_PURPOSE,
    PURPOSE_SCHEMA,
    SEALED_PURPOSE_SCHEMA,
    DocumentCidMismatch,
    DocumentError,
    DocumentSchemaError,
    DocumentTooLarge,
    DocumentUnavailable,
    FieldSpec,
    InvalidDocumentJson,
    InvalidOwnerKey,
    ListingDocument,
    NotADocumentUri,
    OwnerSecretKey,
    PurposeDocument,
    PurposeSealed,
    document_uri,
    encode_document,
    load_listing_document,
    load_purpose,
    parse_document_uri,
    parse_listing_document,
    parse_purpose_document,
    purpose_cid,
    purpose_hash,
    put_document,
    put_purpose,
    terms_hash,
)
from marketplace.eip712 import Eip712Domain, EncryptionKey, sign, typed_data
from marketplace.errors import MarketplaceError
from marketplace.keyrelease import BuyerSecretKey
from storage.cid import Cid, Codec
from storage.errors import StoreUnavailable
from storage.stores import LocalStore
from storage.unixfs import compute_cid

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DOMAIN = Eip712Domain(31337, MARKET)  # type: ignore[arg-type]
OWNER = Account.from_key(b"\x11" * 32)
OTHER = Account.from_key(b"\x22" * 32)
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store", fsync=False)


@pytest.fixture(scope="module")
def owner_secret() -> OwnerSecretKey:
    return OwnerSecretKey.from_account(OWNER, DOMAIN)


def listing(**changes: Any) -> ListingDocument:
    base: dict[str, Any] = {
        "title": "Air quality, Lyon, hourly",
        "description": "PM2.5 and NO2 from 40 sensors.\nCalibrated weekly.",
        "tags": ["air", "pm2.5"],
        "license": "CC-BY-4.0",
        "terms": "No resale. Delete after 90 days.",
        "fields": [FieldSpec(name="pm25", type="number", unit="µg/m³", description="mean")],
        "cadence": "hourly",
        "contact": "data@example.org",
        "sample": "time,pm25\n2024-01-01T00:00Z,12.5\n",
    }
    base.update(changes)
    return ListingDocument(**base)


def purpose(**changes: Any) -> PurposeDocument:
    base: dict[str, Any] = {
        "requester": "Université de Lyon — équipe santé",
        "purpose": "Correlate PM2.5 with asthma admissions.\nNo re-identification.",
        "intended_use": "peer-reviewed study",
        "retention": "12 months",
        "contact": "pi@example.edu",
    }
    base.update(changes)
    return PurposeDocument(**base)


def listing_json(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(encode_document(listing()))
    value.update(changes)
    return value


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def reject(value: dict[str, Any], schema: str = LISTING_SCHEMA) -> DocumentSchemaError:
    data = dumps(value)
    parse = parse_listing_document if schema == LISTING_SCHEMA else parse_purpose_document
    with pytest.raises(DocumentSchemaError) as caught:
        parse(data)
    return caught.value


def put_raw(store: LocalStore, data: bytes) -> Cid:
    return store.put(io.BytesIO(data))


def block_path(store: LocalStore, cid: Cid) -> Path:
    return store.root / "blocks" / cid.text[-2:] / cid.text


# ---------------------------------------------------------------- round trips and encoding


def test_listing_round_trip_through_the_store(store: LocalStore) -> None:
    doc = listing(owner_key=OwnerSecretKey.from_account(OWNER, DOMAIN).public_key_hex())
    cid = put_document(store, doc)
    data = encode_document(doc)
    assert cid.codec is Codec.RAW and cid.digest == hashlib.sha256(data).digest()
    assert document_uri(cid) == "ipfs://" + cid.text
    assert parse_document_uri(document_uri(cid)) == cid
    assert load_listing_document(store, document_uri(cid)) == doc


def test_the_encoding_is_canonical() -> None:
    doc = ListingDocument(title="Été", tags=["B", "a"], fields=[FieldSpec(name="x", type="date")])
    assert encode_document(doc) == (
        '{"cadence":"","contact":"","description":"","fields":[{"name":"x","type":"date"}],'
        '"license":"","schema":"datadebit/listing/v1","tags":["b","a"],"terms":"",'
        '"title":"Été"}'
    ).encode()
    assert encode_document(purpose(retention="")) == json.dumps(
        json.loads(encode_document(purpose(retention=""))),
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    ).encode()


_line = st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=30)
_word = _line.filter(lambda s: s.strip() != "")
_multi = st.text(
    st.characters(blacklist_categories=["Cc", "Cs"]) | st.sampled_from("\n\t"), max_size=60
)
_listings = st.builds(
    ListingDocument,
    title=_word, description=_multi, license=_line, terms=_multi, cadence=_line, contact=_line,
    tags=st.lists(_word.map(lambda s: s.strip()[:40]).filter(bool), max_size=5),
    fields=st.lists(st.builds(FieldSpec, name=_word, type=st.sampled_from(FIELD_TYPES),
                              unit=st.none() | _line, description=st.none() | _multi),
                    max_size=3),
    sample=st.none() | _multi,
)


@settings(max_examples=60, deadline=None)
@given(_listings)
def test_any_listing_reads_back_equal_and_reencodes_identically(doc: ListingDocument) -> None:
    data = encode_document(doc)
    again = parse_listing_document(data)
    assert again == doc and encode_document(again) == data


@settings(max_examples=40, deadline=None)
@given(st.builds(PurposeDocument, requester=_word, purpose=_multi.filter(lambda s: s.strip() != ""),
                 intended_use=_multi, retention=_line, contact=_line))
def test_any_purpose_reads_back_equal(doc: PurposeDocument) -> None:
    assert parse_purpose_document(encode_document(doc)) == doc


def test_terms_hash_is_sha256_of_the_terms_text() -> None:
    doc = listing(terms="Pas de revente.")
    assert terms_hash(doc) == hashlib.sha256(b"Pas de revente.").digest()
    assert terms_hash(listing(terms="")) == hashlib.sha256(b"").digest()


# ---------------------------------------------------------------- schema


LISTING_LIMITS = [
    ("title", 200), ("description", 20_000), ("license", 200), ("terms", 50_000),
    ("cadence", 40), ("contact", 200), ("sample", 65_536),
]
PURPOSE_LIMITS = [
    ("requester", 200), ("purpose", 10_000), ("intendedUse", 2_000), ("retention", 200),
    ("contact", 200),
]


@pytest.mark.parametrize(("key", "limit"), LISTING_LIMITS)
def test_listing_text_limits(key: str, limit: int) -> None:
    assert parse_listing_document(dumps(listing_json(**{key: "é" * limit})))
    error = reject(listing_json(**{key: "é" * (limit + 1)}))
    assert error.errors[0].startswith(f"{key}:") and error.reason == "invalid_schema"


@pytest.mark.parametrize(("key", "limit"), PURPOSE_LIMITS)
def test_purpose_text_limits(key: str, limit: int) -> None:
    value = json.loads(encode_document(purpose()))
    assert parse_purpose_document(dumps({**value, key: "x" * limit}))
    error = reject({**value, key: "x" * (limit + 1)}, PURPOSE_SCHEMA)
    assert error.errors[0].startswith(f"{key}:")


@pytest.mark.parametrize(("key", "value", "where"), [
    ("tags", [f"t{i}" for i in range(21)], "tags"),
    ("tags", ["x" * 41], "tags.0"),
    ("tags", ["   "], "tags.0"),
    ("fields", [{"name": f"c{i}", "type": "string"} for i in range(501)], "fields"),
    ("fields", [{"name": "x" * 101, "type": "string"}], "fields.0.name"),
    ("fields", [{"name": "x", "type": "string", "unit": "u" * 41}], "fields.0.unit"),
    ("fields", [{"name": "x", "type": "string", "description": "d" * 1001}],
     "fields.0.description"),
    ("fields", [{"name": "x", "type": "float"}], "fields.0.type"),
    ("fields", [{"name": "", "type": "string"}], "fields.0.name"),
    ("title", "", "title"),
    ("title", "   ", "title"),
    ("title", None, "title"),
    ("title", 7, "title"),
])
def test_listing_limits_and_types(key: str, value: Any, where: str) -> None:
    error = reject(listing_json(**{key: value}))
    assert any(line.startswith(f"{where}:") for line in error.errors), error.errors


def test_list_limits_at_the_edge_are_accepted() -> None:
    edge = listing_json(tags=[f"t{i}" for i in range(19)] + ["x" * 40],
                        fields=[{"name": f"c{i}", "type": "string"} for i in range(500)])
    parsed = parse_listing_document(dumps(edge))
    assert len(parsed.tags) == 20 and len(parsed.fields) == 500


@pytest.mark.parametrize("value", [
    listing_json(extra="x"),
    listing_json(owner_key="0x" + "ab" * 32),  # the Python name is not the JSON key
    listing_json(fields=[{"name": "x", "type": "string", "scale": 2}]),
])
def test_unknown_keys_are_refused(value: dict[str, Any]) -> None:
    assert any("Extra inputs" in line for line in reject(value).errors)


@pytest.mark.parametrize(("schema", "shown"), [
    ("datadebit/listing/v2", "'datadebit/listing/v2'"),
    (PURPOSE_SCHEMA, repr(PURPOSE_SCHEMA)),
    (None, "missing"),
    (1, "'1'"),
])
def test_a_wrong_or_missing_schema_is_refused(schema: Any, shown: str) -> None:
    value = listing_json()
    if schema is None:
        del value["schema"]
    else:
        value["schema"] = schema
    assert reject(value).errors == (f"schema: {shown}, expected {LISTING_SCHEMA!r}",)


def test_a_listing_is_not_a_purpose() -> None:
    with pytest.raises(DocumentSchemaError):
        parse_purpose_document(encode_document(listing()))


def test_tags_are_normalised_to_unique_lower_case() -> None:
    assert listing(tags=["Air", " air ", "PM2.5", "pm2.5", "Lyon"]).tags == ["air", "pm2.5", "lyon"]
    parsed = parse_listing_document(dumps(listing_json(tags=["NO2", "no2"])))
    assert parsed.tags == ["no2"]


def test_owner_key_format() -> None:
    key = "0x" + "AB" * 32
    assert listing(owner_key=key).owner_key == key.lower()
    assert listing(owner_key=key).owner_key_bytes == bytes.fromhex("ab" * 32)
    assert listing().owner_key is None and listing().owner_key_bytes is None
    bad = ["ab" * 32, "0x" + "ab" * 31, "0x" + "ab" * 33, "0x" + "zz" * 32, "0x" + "00" * 32,
           "0x" + "01" + "00" * 31]  # the last two are small-order points
    for value in bad:
        errors = reject(listing_json(ownerKey=value)).errors
        assert any(line.startswith("ownerKey:") for line in errors), value


@pytest.mark.parametrize(("key", "value"), [
    ("title", "pay \x1b[32mnothing\x1b[0m"),
    ("title", "two\nlines"),
    ("contact", "a\rb"),
    ("description", "overwrite\rme"),
    ("terms", "bell\x07"),
    ("sample", "c1\x9b"),
])
def test_control_characters_are_refused(key: str, value: str) -> None:
    """A catalog prints titles and terms to terminals and pages: no escape sequences."""
    assert any(line.startswith(f"{key}:") for line in reject(listing_json(**{key: value})).errors)


def test_line_feeds_and_tabs_are_allowed_in_texts() -> None:
    doc = listing(description="a\n\tb", terms="1.\n2.", sample="x\ty\n")
    assert parse_listing_document(encode_document(doc)) == doc


def test_schema_messages_escape_hostile_keys() -> None:
    error = reject({**listing_json(), "\x1b[2J" + "k" * 100: 1})
    assert "\x1b" not in str(error) and "\\x1b[2J" in str(error) and "k" * 50 not in str(error)


def test_many_schema_errors_are_summarised() -> None:
    error = reject(listing_json(tags=[""] * 8))
    assert len(error.errors) == 8 and str(error).endswith("and 3 more")


# ---------------------------------------------------------------- size


def test_a_document_over_256_kib_is_refused_at_put(store: LocalStore) -> None:
    big = listing(sample="\U0001f600" * 65_536)  # 4 bytes each: 262,144 bytes of sample alone
    assert len(encode_document(big)) > MAX_DOCUMENT_BYTES
    with pytest.raises(DocumentTooLarge) as caught:
        put_document(store, big)
    assert caught.value.reason == "too_large" and caught.value.limit == MAX_DOCUMENT_BYTES
    assert not (store.root / "blocks").exists()


def test_a_multi_block_file_named_by_a_uri_is_too_large_and_read_no_further(
    store: LocalStore,
) -> None:
    cid = put_raw(store, b"{" + b" " * (3 * MAX_DOCUMENT_BYTES))
    assert cid.codec is Codec.DAG_PB
    counting = CountingStore(store)
    with pytest.raises(DocumentTooLarge):
        load_listing_document(counting, document_uri(cid))
    assert counting.read <= 2 * MAX_DOCUMENT_BYTES and counting.closed


def test_an_endless_stream_is_cut_at_the_limit() -> None:
    cid = Cid.of_block(Codec.RAW, b"{}")
    endless = FakeStore(lambda: (b"x" * 4096 for _ in iter(int, 1)))
    with pytest.raises(DocumentTooLarge) as caught:
        load_listing_document(endless, document_uri(cid))
    assert caught.value.size <= MAX_DOCUMENT_BYTES + 4096


# ---------------------------------------------------------------- reading: every bad path


@pytest.mark.parametrize("uri", [
    "", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
    "https://ipfs.io/ipfs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
    "ipfs://", "ipfs://not-a-cid", "ipfs://QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
    "ipfs://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy" + "a" * 200,
])
def test_a_bad_uri_is_refused(store: LocalStore, uri: str) -> None:
    with pytest.raises(NotADocumentUri) as caught:
        load_listing_document(store, uri)
    assert caught.value.reason == "bad_uri" and len(str(caught.value)) < 400


def test_a_document_swapped_in_the_store_is_refused(store: LocalStore) -> None:
    """The local store checks the block against its CID (BlockCorrupted): mapped."""
    cid = put_document(store, listing())
    block_path(store, cid).write_bytes(encode_document(listing(title="Something else")))
    with pytest.raises(DocumentCidMismatch) as caught:
        load_listing_document(store, document_uri(cid))
    assert caught.value.reason == "cid_mismatch" and caught.value.expected == cid.text


def test_a_store_that_returns_other_bytes_unchecked_is_refused(store: LocalStore) -> None:
    """The module checks the bytes itself, whatever the store does."""
    cid = put_document(store, listing())
    other = encode_document(listing(title="Something else"))
    liar = FakeStore(lambda: iter([other]))
    with pytest.raises(DocumentCidMismatch) as caught:
        load_listing_document(liar, document_uri(cid))
    assert caught.value.actual == Cid.of_block(Codec.RAW, other).text


def test_a_missing_block_is_unavailable(store: LocalStore) -> None:
    cid = Cid.of_block(Codec.RAW, encode_document(listing()))
    with pytest.raises(DocumentUnavailable) as caught:
        load_listing_document(store, document_uri(cid))
    assert caught.value.reason == "unavailable" and caught.value.cid == cid.text


@pytest.mark.parametrize("error", [
    OSError("disk"), ConnectionRefusedError("refused"), TimeoutError("slow"),
    StoreUnavailable("http://127.0.0.1:5001", "connection refused"),
])
@pytest.mark.parametrize("when", ["call", "iteration"])
def test_a_failing_store_is_unavailable(error: Exception, when: str) -> None:
    cid = Cid.of_block(Codec.RAW, b"{}")

    def pieces() -> Iterator[bytes]:
        if when == "call":
            raise error
        yield b"{"
        raise error

    store = FakeStore(pieces, eager=when == "call")
    with pytest.raises(DocumentUnavailable):
        load_listing_document(store, document_uri(cid))


@pytest.mark.parametrize(("data", "detail"), [
    (b"{not json", ""),
    (b"\xff\xfe{}", ""),
    (b'{"schema": "datadebit/listing/v1", "title": "a", "title": "b"}', "duplicate key"),
    (b'{"schema": "datadebit/listing/v1", "title": NaN}', ""),
    (b'{"schema": "datadebit/listing/v1", "title": "\\ud800"}', ""),
    (b"[" * 100_000, "recursion"),
])
def test_invalid_json_is_refused(store: LocalStore, data: bytes, detail: str) -> None:
    """The deeply nested one crashed the process (SIGSEGV in the standard json parser, the
    recursion limit being 100,000 once eth_account is imported) on the code before the fix."""
    cid = put_raw(store, data)
    with pytest.raises(InvalidDocumentJson) as caught:
        load_listing_document(store, document_uri(cid))
    assert caught.value.reason == "invalid_json" and detail in caught.value.detail


@pytest.mark.parametrize("value", [
    [], "a string", {"schema": PURPOSE_SCHEMA, "requester": "x", "purpose": "y"},
    {**json.loads(encode_document(ListingDocument(title="t"))), "title": ""},
])
def test_a_stored_document_of_the_wrong_schema_is_refused(store: LocalStore, value: Any) -> None:
    cid = put_raw(store, dumps(value))
    with pytest.raises(DocumentSchemaError) as caught:
        load_listing_document(store, document_uri(cid))
    assert caught.value.cid == cid.text


def test_every_error_has_its_reason_code() -> None:
    codes: dict[type[DocumentError], str] = {
        documents.NotADocumentUri: "bad_uri", DocumentUnavailable: "unavailable",
        DocumentCidMismatch: "cid_mismatch", DocumentTooLarge: "too_large",
        InvalidDocumentJson: "invalid_json", DocumentSchemaError: "invalid_schema",
        PurposeSealed: "sealed", InvalidOwnerKey: "invalid_owner_key",
    }
    for cls, code in codes.items():
        assert cls.reason == code and issubclass(cls, DocumentError)
    assert issubclass(DocumentError, MarketplaceError)


# ---------------------------------------------------------------- purposes


def test_purpose_text_read_back_equals_what_was_written(store: LocalStore) -> None:
    doc = purpose()
    digest, cid = put_purpose(store, doc, None)
    assert digest == purpose_hash(encode_document(doc)) == cid.digest
    assert purpose_cid(digest) == cid
    loaded = load_purpose(store, digest, None)
    assert loaded == doc and loaded.purpose == doc.purpose and loaded.requester == doc.requester


def test_a_purpose_document_swapped_in_the_store_is_refused(store: LocalStore) -> None:
    digest, cid = put_purpose(store, purpose(), None)
    block_path(store, cid).write_bytes(encode_document(purpose(purpose="Resell it all.")))
    with pytest.raises(DocumentCidMismatch):
        load_purpose(store, digest, None)
    liar = FakeStore(lambda: iter([encode_document(purpose(purpose="Resell it all."))]))
    with pytest.raises(DocumentCidMismatch):
        load_purpose(liar, digest, None)


def test_a_missing_purpose_is_unavailable(store: LocalStore) -> None:
    with pytest.raises(DocumentUnavailable):
        load_purpose(store, hashlib.sha256(b"never stored").digest(), None)


def test_a_sealed_purpose_opens_only_with_the_owner_s_key(
    store: LocalStore, owner_secret: OwnerSecretKey
) -> None:
    doc = purpose()
    digest, cid = put_purpose(store, doc, owner_secret.public_key())
    stored = block_path(store, cid).read_bytes()
    assert digest == hashlib.sha256(stored).digest()
    envelope = json.loads(stored)
    assert set(envelope) == {"schema", "sealed"} and envelope["schema"] == SEALED_PURPOSE_SCHEMA
    assert b"asthma" not in stored and b"Lyon" not in stored
    assert load_purpose(store, digest, owner_secret) == doc
    assert load_purpose(store, digest, OwnerSecretKey.from_account(OWNER, DOMAIN)) == doc
    with pytest.raises(PurposeSealed, match="no owner key"):
        load_purpose(store, digest, None)
    with pytest.raises(PurposeSealed, match="does not open") as caught:
        load_purpose(store, digest, OwnerSecretKey.from_account(OTHER, DOMAIN))
    assert caught.value.reason == "sealed" and caught.value.purpose_hash == digest
    buyer_key_of_owner = OwnerSecretKey(
        BuyerSecretKey.from_account(OWNER, DOMAIN).to_secret_bytes()
    )
    with pytest.raises(PurposeSealed):
        load_purpose(store, digest, buyer_key_of_owner)


def test_a_plain_purpose_loads_with_an_owner_key_too(
    store: LocalStore, owner_secret: OwnerSecretKey
) -> None:
    digest, _ = put_purpose(store, purpose(), None)
    assert load_purpose(store, digest, owner_secret) == purpose()


def _sealed_envelope(owner_secret: OwnerSecretKey, inner: bytes) -> dict[str, Any]:
    sealed = SealedBox(PublicKey(owner_secret.public_key())).encrypt(inner)
    return {"schema": SEALED_PURPOSE_SCHEMA, "sealed": base64.b64encode(sealed).decode()}


@pytest.mark.parametrize("case", ["extra", "not-base64", "short", "number", "nested", "listing"])
def test_a_malformed_sealed_envelope_is_a_schema_error(
    store: LocalStore, owner_secret: OwnerSecretKey, case: str
) -> None:
    envelope = _sealed_envelope(owner_secret, encode_document(purpose()))
    if case == "extra":
        envelope["note"] = "x"
    elif case == "not-base64":
        envelope["sealed"] = "!!!!"
    elif case == "short":
        envelope["sealed"] = "AAAA"
    elif case == "number":
        envelope["sealed"] = 5
    elif case == "nested":
        inner = dumps(_sealed_envelope(owner_secret, encode_document(purpose())))
        envelope = _sealed_envelope(owner_secret, inner)
    else:
        envelope = _sealed_envelope(owner_secret, encode_document(listing()))
    data = json.dumps(envelope).encode()
    store.put(io.BytesIO(data))
    with pytest.raises(DocumentSchemaError):
        load_purpose(store, purpose_hash(data), owner_secret)


@pytest.mark.parametrize("key", [b"\x01" * 31, b"\x00" * 32, (1).to_bytes(32, "little")])
def test_sealing_to_a_bad_owner_key_is_refused(store: LocalStore, key: bytes) -> None:
    with pytest.raises(InvalidOwnerKey):
        put_purpose(store, purpose(), key)


# ---------------------------------------------------------------- the owner's key


def test_owner_key_is_deterministic_per_wallet_and_not_the_buyer_key() -> None:
    first = OwnerSecretKey.from_account(OWNER, DOMAIN)
    assert first == OwnerSecretKey.from_account(OWNER, DOMAIN)
    assert first.public_key() == OwnerSecretKey.from_account(OWNER, DOMAIN).public_key()
    assert first != OwnerSecretKey.from_account(OTHER, DOMAIN)
    buyer = BuyerSecretKey.from_account(OWNER, DOMAIN)
    assert first.to_secret_bytes() != buyer.to_secret_bytes()
    assert first.public_key() != buyer.public_key().key
    assert BuyerSecretKey.from_account(OWNER, DOMAIN) == buyer  # the buyer's is unchanged


def test_owner_key_is_derived_like_the_buyer_s_from_its_own_message() -> None:
    signature = bytes(OWNER.sign_typed_data(full_message=documents_typed_data()).signature)
    assert signature == sign(OWNER, DOMAIN, EncryptionKey(purpose=OWNER_ENCRYPTION_KEY_PURPOSE))
    key = OwnerSecretKey.from_signature(signature)
    assert key == OwnerSecretKey.from_account(OWNER, DOMAIN)
    expected = hashlib.blake2b(b"datadebit/x25519/v1" + signature, digest_size=32).digest()
    assert key.to_secret_bytes() == expected
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    high_s = r + (N - s).to_bytes(32, "big") + bytes([(v - 27) ^ 1])  # another wallet's form
    assert OwnerSecretKey.from_signature(high_s) == key


def documents_typed_data() -> dict[str, Any]:
    return typed_data(DOMAIN, documents.OWNER_KEY_MESSAGE)


def test_owner_key_fits_a_listing_and_hides_its_secret(owner_secret: OwnerSecretKey) -> None:
    doc = listing(owner_key=owner_secret.public_key_hex())
    assert doc.owner_key_bytes == owner_secret.public_key()
    assert re.fullmatch(r"0x[0-9a-f]{64}", owner_secret.public_key_hex())
    assert repr(owner_secret) == "OwnerSecretKey(<secret>)"
    assert owner_secret.to_secret_bytes().hex() not in repr(owner_secret)
    with pytest.raises(TypeError):
        hash(owner_secret)
    with pytest.raises(ValueError, match="32 bytes"):
        OwnerSecretKey(b"\x01" * 31)


# ---------------------------------------------------------------- docs/protocol.md


def test_the_protocol_doc_states_the_code_s_constants() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    match = re.search(r"^## \d+\. Listing and purpose documents$", text, re.MULTILINE)
    assert match, "no 'Listing and purpose documents' section in docs/protocol.md"
    rest = text[match.end():]
    end = re.search(r"^## ", rest, re.MULTILINE)
    section = rest[: end.start()] if end else rest
    for fact in (f"{MAX_DOCUMENT_BYTES:,}", LISTING_SCHEMA, PURPOSE_SCHEMA,
                 SEALED_PURPOSE_SCHEMA, OWNER_ENCRYPTION_KEY_PURPOSE, *FIELD_TYPES):
        assert fact in section, fact
    for key, limit in LISTING_LIMITS + PURPOSE_LIMITS:
        assert re.search(rf"`{key}`[^\n]*\b{limit:,}\b", section), key
    for cls in (NotADocumentUri, DocumentUnavailable, DocumentCidMismatch, DocumentTooLarge,
                InvalidDocumentJson, DocumentSchemaError, PurposeSealed, InvalidOwnerKey):
        assert f"`{cls.reason}`" in section, cls.reason


# ---------------------------------------------------------------- test stores


class FakeStore:
    """A store whose `stream` gives whatever `pieces()` gives, checking nothing."""

    def __init__(self, pieces: Any, *, eager: bool = False) -> None:
        self._pieces = pieces
        self._eager = eager

    def put(self, source: BinaryIO) -> Cid:
        return compute_cid(source)

    def stream(self, cid: Cid) -> Iterator[bytes]:
        if self._eager:
            next(self._pieces())
        return iter(self._pieces())

    def get(self, cid: Cid, dest: Path) -> int:
        raise NotImplementedError

    def pin(self, cid: Cid) -> None:
        raise NotImplementedError

    def has(self, cid: Cid) -> bool:
        return True


class CountingStore(FakeStore):
    """Counts the bytes a reader pulls from a real store, and whether it closed the stream."""

    def __init__(self, inner: LocalStore) -> None:
        super().__init__(None)
        self.inner = inner
        self.read = 0
        self.closed = False

    def stream(self, cid: Cid) -> Iterator[bytes]:
        def counted() -> Iterator[bytes]:
            try:
                for piece in self.inner.stream(cid):
                    self.read += len(piece)
                    yield piece
            finally:
                self.closed = True

        return counted()
