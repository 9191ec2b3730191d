"""Listing and purpose documents: what an owner publishes and what a buyer asks for, in words.

Both are JSON with a versioned `schema` key, validated with pydantic, written in one canonical
encoding (sorted keys, no spaces, UTF-8, null fields left out) and kept in the content store.
A document is at most `MAX_DOCUMENT_BYTES` (one UnixFS chunk), so it is a single `raw` block
whose CIDv1 digest is the SHA-256 of its bytes: a listing's `metadataURI` is `ipfs://<cid>`,
and a request's on-chain `purposeHash` is that digest, from which the CID follows.

The store is untrusted and public. Every read is checked against the CID it was asked for
(the store checks it, and so does this module, on the bytes it parses), and a buyer may seal
a purpose document to the listing owner's X25519 key (`ownerKey`, derived from the owner's
wallet like the buyer's key), so only the owner reads who asks and why.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args

import nacl.bindings as sodium
from eth_account.signers.local import LocalAccount
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic_core import from_json

from marketplace.eip712 import Eip712Domain, EncryptionKey, sign
from marketplace.errors import MarketplaceError
from marketplace.keyrelease.buyer_key import BuyerSecretKey, is_small_order
from storage.cid import Cid, Codec
from storage.errors import (
    BlockCorrupted,
    ContentMismatch,
    ContentNotFound,
    InvalidCid,
    MalformedDag,
    StorageError,
)
from storage.stores.base import ContentStore
from storage.unixfs import CHUNK_SIZE

#: The largest stored document: one chunk, hence one raw block (its CID digest is its SHA-256).
MAX_DOCUMENT_BYTES = CHUNK_SIZE
LISTING_SCHEMA = "datadebit/listing/v1"
PURPOSE_SCHEMA = "datadebit/purpose/v1"
SEALED_PURPOSE_SCHEMA = "datadebit/sealed-purpose/v1"
#: The `EncryptionKey.purpose` an owner's wallet signs to derive its X25519 key.
OWNER_ENCRYPTION_KEY_PURPOSE = "datadebit owner encryption key v1"
OWNER_KEY_MESSAGE = EncryptionKey(purpose=OWNER_ENCRYPTION_KEY_PURPOSE)
URI_PREFIX = "ipfs://"
FieldType = Literal["string", "integer", "number", "boolean", "timestamp", "date", "category"]
FIELD_TYPES: tuple[str, ...] = get_args(FieldType)

_MAX_URI_CHARS = 200
_MAX_ERRORS_SHOWN = 5
# A terminal or a web page must not be steered by a document: no C0/C1 control characters
# (ESC, carriage return, ...) and no lone surrogates (not encodable as UTF-8). Multi-line
# texts may hold line feeds and tabs.
_FORBIDDEN_SINGLE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_FORBIDDEN_MULTI_LINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_OWNER_KEY = re.compile(r"0x[0-9a-fA-F]{64}")


# -- errors -----------------------------------------------------------------------------------


class DocumentError(MarketplaceError):
    """A document that cannot be used; `reason` is a stable code for APIs and the catalog."""

    reason: ClassVar[str] = "document_error"


class NotADocumentUri(DocumentError, ValueError):
    """A metadata URI that is not `ipfs://` followed by a CIDv1 this project makes."""

    reason = "bad_uri"

    def __init__(self, uri: str, detail: str) -> None:
        self.uri = uri
        self.detail = detail
        super().__init__(f"not a document URI {_shown(uri, _MAX_URI_CHARS)}: {detail}")


class DocumentUnavailable(DocumentError):
    """The store could not give (or take) the document: not found, down, or failing."""

    reason = "unavailable"

    def __init__(self, cid: str, detail: str) -> None:
        self.cid = cid
        self.detail = detail
        super().__init__(f"document {cid} is unavailable: {detail}")


class DocumentCidMismatch(DocumentError):
    """The bytes the store returned are not the content of the CID asked for."""

    reason = "cid_mismatch"

    def __init__(self, expected: str, actual: str | None = None) -> None:
        self.expected = expected
        self.actual = actual
        found = f" (they are {actual})" if actual else ""
        super().__init__(
            f"the content returned for document {expected} is not that document{found}: refusing it"
        )


class DocumentTooLarge(DocumentError, ValueError):
    """Over `MAX_DOCUMENT_BYTES`: refused before storing, and when reading (stops there)."""

    reason = "too_large"

    def __init__(self, size: int, limit: int = MAX_DOCUMENT_BYTES) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"document of {size}+ bytes is over the {limit}-byte limit")


class InvalidDocumentJson(DocumentError, ValueError):
    """Not one JSON object in UTF-8 (or duplicate keys, NaN, or nesting too deep)."""

    reason = "invalid_json"

    def __init__(self, cid: str | None, detail: str) -> None:
        self.cid = cid
        self.detail = detail
        super().__init__(f"document{_at(cid)} is not valid JSON: {detail}")


class DocumentSchemaError(DocumentError, ValueError):
    """Valid JSON that does not follow the schema; `errors` lists `location: problem` lines."""

    reason = "invalid_schema"

    def __init__(self, cid: str | None, errors: tuple[str, ...]) -> None:
        self.cid = cid
        self.errors = errors
        shown = "; ".join(errors[:_MAX_ERRORS_SHOWN])
        more = len(errors) - _MAX_ERRORS_SHOWN
        tail = f"; and {more} more" if more > 0 else ""
        super().__init__(f"document{_at(cid)} does not follow its schema: {shown}{tail}")


class PurposeSealed(DocumentError):
    """A sealed purpose document and no owner key, or a key it was not sealed to."""

    reason = "sealed"

    def __init__(self, purpose_hash: bytes, detail: str) -> None:
        self.purpose_hash = purpose_hash
        self.detail = detail
        super().__init__(f"purpose document 0x{purpose_hash.hex()} is sealed: {detail}")


class InvalidOwnerKey(DocumentError, ValueError):
    """An owner key nothing can be sealed to (wrong size, or a small-order X25519 point)."""

    reason = "invalid_owner_key"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"invalid owner key: {detail}")


def _at(cid: str | None) -> str:
    return f" {cid}" if cid else ""


def _shown(text: str, limit: int = 40) -> str:
    """`text` quoted with control characters escaped, cut to `limit` characters: safe to print."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return repr(cut)


# -- schema -----------------------------------------------------------------------------------


def _single_line(value: str) -> str:
    if _FORBIDDEN_SINGLE_LINE.search(value):
        raise ValueError("control characters and line breaks are not allowed here")
    return value


def _multi_line(value: str) -> str:
    if _FORBIDDEN_MULTI_LINE.search(value):
        raise ValueError("control characters other than line feed and tab are not allowed")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _tag(value: str) -> str:
    tag = value.strip().lower()
    if not 1 <= len(tag) <= 40:
        raise ValueError("a tag is 1 to 40 characters")
    return tag


def _unique_tags(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


def _owner_key(value: str) -> str:
    if not _OWNER_KEY.fullmatch(value):
        raise ValueError("must be 0x followed by 64 hex digits (an X25519 public key)")
    if is_small_order(bytes.fromhex(value[2:])):
        raise ValueError("a small-order X25519 point: nothing can be sealed to it")
    return value.lower()


_SingleLine = AfterValidator(_single_line)
_MultiLine = AfterValidator(_multi_line)
_NotBlank = AfterValidator(_not_blank)


def _length(low: int, high: int) -> StringConstraints:
    return StringConstraints(min_length=low, max_length=high)


Title = Annotated[str, _length(1, 200), _SingleLine, _NotBlank]
ShortLine = Annotated[str, _length(0, 200), _SingleLine]
Cadence = Annotated[str, _length(0, 40), _SingleLine]
FieldName = Annotated[str, _length(1, 100), _SingleLine, _NotBlank]
Unit = Annotated[str, _length(0, 40), _SingleLine]
Description = Annotated[str, _length(0, 20_000), _MultiLine]
Terms = Annotated[str, _length(0, 50_000), _MultiLine]
Sample = Annotated[str, _length(0, 65_536), _MultiLine]
FieldDescription = Annotated[str, _length(0, 1_000), _MultiLine]
PurposeText = Annotated[str, _length(1, 10_000), _MultiLine, _NotBlank]
IntendedUse = Annotated[str, _length(0, 2_000), _MultiLine]
Tag = Annotated[str, AfterValidator(_single_line), AfterValidator(_tag)]
OwnerKey = Annotated[str, AfterValidator(_owner_key)]


def _alias(name: str, **kwargs: Any) -> Any:
    """A field whose JSON key is `name` (Python code may use either)."""
    return Field(validation_alias=name, serialization_alias=name, **kwargs)


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True
    )


class FieldSpec(_Model):
    """One column of the data: its name, type, unit and meaning."""

    name: FieldName
    type: FieldType
    unit: Unit | None = None
    description: FieldDescription | None = None


class ListingDocument(_Model):
    """What a listing offers (`metadataURI` = `ipfs://<cid>` of its canonical encoding)."""

    schema_id: Literal["datadebit/listing/v1"] = _alias("schema", default=LISTING_SCHEMA)
    title: Title
    description: Description = ""
    tags: Annotated[list[Tag], Field(max_length=20), AfterValidator(_unique_tags)] = []
    license: ShortLine = ""
    terms: Terms = ""
    fields: Annotated[list[FieldSpec], Field(max_length=500)] = []
    cadence: Cadence = ""
    contact: ShortLine = ""
    sample: Sample | None = None
    owner_key: OwnerKey | None = _alias("ownerKey", default=None)

    @property
    def owner_key_bytes(self) -> bytes | None:
        """The owner's X25519 public key to seal purposes to, if the listing names one."""
        return None if self.owner_key is None else bytes.fromhex(self.owner_key[2:])


class PurposeDocument(_Model):
    """Who asks for a debit, for what, and how long they keep the data."""

    schema_id: Literal["datadebit/purpose/v1"] = _alias("schema", default=PURPOSE_SCHEMA)
    requester: Title
    purpose: PurposeText
    intended_use: IntendedUse = _alias("intendedUse", default="")
    retention: ShortLine = ""
    contact: ShortLine = ""


Document = ListingDocument | PurposeDocument
_D = TypeVar("_D", ListingDocument, PurposeDocument)


# -- encoding ---------------------------------------------------------------------------------


def _canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def encode_document(doc: Document) -> bytes:
    """The canonical bytes: JSON keys sorted, no spaces, UTF-8, null fields left out."""
    return _canonical_json(doc.model_dump(mode="json", by_alias=True, exclude_none=True))


def document_uri(cid: Cid) -> str:
    return URI_PREFIX + cid.text


def parse_document_uri(uri: str) -> Cid:
    """The CID of an `ipfs://<cid>` URI, or NotADocumentUri."""
    if not isinstance(uri, str) or not uri.startswith(URI_PREFIX):
        raise NotADocumentUri(str(uri), f"it must start with {URI_PREFIX}")
    if len(uri) > _MAX_URI_CHARS:
        raise NotADocumentUri(uri, f"longer than {_MAX_URI_CHARS} characters")
    try:
        return Cid.parse(uri[len(URI_PREFIX):])
    except InvalidCid as e:
        raise NotADocumentUri(uri, e.reason) from e


def terms_hash(doc: ListingDocument) -> bytes:
    """SHA-256 of the terms text in UTF-8: the listing's on-chain `termsHash`."""
    return hashlib.sha256(doc.terms.encode("utf-8")).digest()


def put_document(store: ContentStore, doc: Document) -> Cid:
    """Store `doc` canonically encoded; DocumentTooLarge over `MAX_DOCUMENT_BYTES`."""
    return _put(store, encode_document(doc))


def _put(store: ContentStore, data: bytes) -> Cid:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(len(data))
    expected = Cid.of_block(Codec.RAW, data)
    try:
        cid = store.put(io.BytesIO(data))
    except (StorageError, OSError) as e:
        raise DocumentUnavailable(expected.text, f"the store refused it: {e}") from e
    if cid != expected:
        raise DocumentCidMismatch(expected.text, cid.text)
    return cid


# -- reading ----------------------------------------------------------------------------------


def _read(store: ContentStore, cid: Cid) -> bytes:
    """The verified bytes of a document block, read no further than the size limit."""
    try:
        data = _bounded(store.stream(cid))
    except ContentNotFound as e:
        raise DocumentUnavailable(cid.text, "not found in the store") from e
    except (ContentMismatch, BlockCorrupted, MalformedDag) as e:
        raise DocumentCidMismatch(cid.text) from e
    except (StorageError, OSError) as e:
        raise DocumentUnavailable(cid.text, type(e).__name__) from e
    actual = Cid.of_block(Codec.RAW, data)
    if actual != cid:  # whatever the store checked: a document is one raw block
        raise DocumentCidMismatch(cid.text, actual.text)
    return data


def _bounded(pieces: Iterator[bytes]) -> bytes:
    buffer = bytearray()
    try:
        for piece in pieces:
            buffer += piece
            if len(buffer) > MAX_DOCUMENT_BYTES:
                raise DocumentTooLarge(len(buffer))
    finally:
        close = getattr(pieces, "close", None)
        if callable(close):
            close()
    return bytes(buffer)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in an object")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(data: bytes, cid: str | None) -> dict[str, Any]:
    """One JSON object. pydantic-core's parser goes first: it caps nesting at 200 levels,
    where the standard library's recursive parser runs out of C stack and kills the process
    (py_ecc, imported with eth_account, raises the recursion limit to 100,000). The second,
    standard parse refuses duplicate keys, which parsers resolve differently."""
    try:
        from_json(data, allow_inf_nan=False)
    except ValueError as e:
        raise InvalidDocumentJson(cid, str(e)[:200]) from e
    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant
        )
    except (ValueError, RecursionError) as e:
        raise InvalidDocumentJson(cid, str(e).splitlines()[0][:200]) from e
    if not isinstance(value, dict):
        raise DocumentSchemaError(cid, ("a document is a JSON object",))
    return value


def _check_schema(value: dict[str, Any], expected: str, cid: str | None) -> None:
    found = value.get("schema")
    if found != expected:
        shown = "missing" if found is None else _shown(str(found))
        raise DocumentSchemaError(cid, (f"schema: {shown}, expected {expected!r}",))


def _validate(model: type[_D], value: dict[str, Any], cid: str | None) -> _D:
    try:
        return model.model_validate(value, by_alias=True, by_name=False)
    except ValidationError as e:
        raise DocumentSchemaError(cid, tuple(_describe(err) for err in e.errors())) from e


def _describe(error: Any) -> str:
    """`location: message`, with the location's (untrusted) keys escaped and cut short."""
    where = ".".join(str(p) if isinstance(p, int) else _shown(p)[1:-1] for p in error["loc"])
    return f"{where or 'document'}: {error['msg']}"


def _decode(data: bytes, model: type[_D], schema: str, cid: str | None) -> _D:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(len(data))
    value = _parse_json(data, cid)
    _check_schema(value, schema, cid)
    return _validate(model, value, cid)


def parse_listing_document(data: bytes) -> ListingDocument:
    """Validate a listing document's bytes (e.g. a local `listing.json`)."""
    return _decode(data, ListingDocument, LISTING_SCHEMA, None)


def parse_purpose_document(data: bytes) -> PurposeDocument:
    """Validate a plain purpose document's bytes."""
    return _decode(data, PurposeDocument, PURPOSE_SCHEMA, None)


def load_listing_document(store: ContentStore, uri: str) -> ListingDocument:
    """The listing document `uri` names, verified against its CID and validated."""
    cid = parse_document_uri(uri)
    return _decode(_read(store, cid), ListingDocument, LISTING_SCHEMA, cid.text)


# -- purposes ---------------------------------------------------------------------------------


def purpose_hash(data: bytes) -> bytes:
    """SHA-256 of the stored purpose bytes: the debit's on-chain `purposeHash`."""
    return hashlib.sha256(data).digest()


def purpose_cid(purpose_hash: bytes) -> Cid:
    """Where a purpose document is stored: the raw CIDv1 whose digest is `purpose_hash`."""
    return Cid.from_digest(Codec.RAW, purpose_hash)


def _seal_key(owner_key: bytes) -> PublicKey:
    if not isinstance(owner_key, bytes) or len(owner_key) != PublicKey.SIZE:
        raise InvalidOwnerKey(f"must be exactly {PublicKey.SIZE} bytes")
    if is_small_order(owner_key):
        raise InvalidOwnerKey("a small-order X25519 point: nothing can be sealed to it")
    return PublicKey(owner_key)


def seal_purpose(doc: PurposeDocument, owner_key: bytes) -> bytes:
    """The sealed envelope's bytes: only the holder of `owner_key`'s secret opens it."""
    sealed = SealedBox(_seal_key(owner_key)).encrypt(encode_document(doc))
    return _canonical_json({
        "schema": SEALED_PURPOSE_SCHEMA,
        "sealed": base64.b64encode(sealed).decode("ascii"),
    })


def put_purpose(
    store: ContentStore, doc: PurposeDocument, owner_key: bytes | None
) -> tuple[bytes, Cid]:
    """Store `doc` (sealed to `owner_key` when given); returns (purposeHash, CID)."""
    data = encode_document(doc) if owner_key is None else seal_purpose(doc, owner_key)
    return purpose_hash(data), _put(store, data)


def load_purpose(
    store: ContentStore, purpose_hash: bytes, owner_secret: OwnerSecretKey | None
) -> PurposeDocument:
    """The purpose document whose SHA-256 is `purpose_hash`, verified, opened if sealed."""
    cid = purpose_cid(purpose_hash)
    data = _read(store, cid)
    value = _parse_json(data, cid.text)
    if value.get("schema") != SEALED_PURPOSE_SCHEMA:
        _check_schema(value, PURPOSE_SCHEMA, cid.text)
        return _validate(PurposeDocument, value, cid.text)
    sealed = _sealed_bytes(value, cid.text)
    if owner_secret is None:
        raise PurposeSealed(purpose_hash, "sealed to the listing owner; no owner key was given")
    box = SealedBox(PrivateKey(owner_secret.to_secret_bytes()))
    try:
        plain = box.decrypt(sealed)
    except CryptoError as e:
        raise PurposeSealed(purpose_hash, "this owner key does not open it") from e
    return _decode(plain, PurposeDocument, PURPOSE_SCHEMA, cid.text)


def _sealed_bytes(value: dict[str, Any], cid: str) -> bytes:
    extra = sorted(set(value) - {"schema", "sealed"})
    if extra:
        raise DocumentSchemaError(cid, tuple(f"{_shown(k)[1:-1]}: unknown key" for k in extra))
    text = value.get("sealed")
    if not isinstance(text, str):
        raise DocumentSchemaError(cid, ("sealed: must be a base64 string",))
    try:
        sealed = base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise DocumentSchemaError(cid, ("sealed: not standard base64",)) from e
    if len(sealed) < sodium.crypto_box_SEALBYTES:
        raise DocumentSchemaError(cid, ("sealed: shorter than a sealed box",))
    return sealed


# -- the owner's key --------------------------------------------------------------------------


class OwnerSecretKey:
    """The owner's X25519 secret for sealed purposes, derived exactly as the buyer's key
    (protocol §8) but from `EncryptionKey(purpose="datadebit owner encryption key v1")`.

    Prints as `OwnerSecretKey(<secret>)`, no hash, bytes only through `to_secret_bytes()`.
    """

    SIZE = 32
    __slots__ = ("_key", "_public")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != self.SIZE:
            raise ValueError(f"an X25519 secret key is exactly {self.SIZE} bytes")
        self._key = key
        self._public: bytes = sodium.crypto_scalarmult_base(key)

    @classmethod
    def from_signature(cls, signature: bytes) -> OwnerSecretKey:
        """From a wallet's signature of `OWNER_KEY_MESSAGE` (e.g. made by MetaMask)."""
        return cls(BuyerSecretKey.from_signature(signature).to_secret_bytes())

    @classmethod
    def from_account(cls, account: LocalAccount, domain: Eip712Domain) -> OwnerSecretKey:
        """Sign `OWNER_KEY_MESSAGE` with a local account and derive from that."""
        return cls.from_signature(sign(account, domain, OWNER_KEY_MESSAGE))

    def public_key(self) -> bytes:
        """The 32-byte X25519 public key (a listing's `ownerKey`)."""
        return self._public

    def public_key_hex(self) -> str:
        """`ownerKey` as a listing document writes it: 0x + 64 lowercase hex digits."""
        return "0x" + self._public.hex()

    def to_secret_bytes(self) -> bytes:
        """The raw X25519 secret. Callers must not log, print or store it unencrypted."""
        return self._key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OwnerSecretKey):
            return NotImplemented
        return sodium.sodium_memcmp(self._key, other._key)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "OwnerSecretKey(<secret>)"
