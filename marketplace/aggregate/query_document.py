"""The buyer's query document (schema `datadebit/query/v1`) and a cohort's schema document
(`datadebit/cohort/v1`): canonical JSON in the content store, like the listing documents.

A query document is one raw block (at most `MAX_DOCUMENT_BYTES`), so its CIDv1 digest is
the SHA-256 of its bytes: `requestAggregate` takes that digest as `queryHash` and
`ipfs://<cid>` as `queryURI`. Owners and nodes read it with `load_query_document`, which
checks the URI against the on-chain hash *before* reading and the bytes against the CID
after: a store, or a buyer, cannot show one query to the owners and another to the nodes.

    {"schema": "datadebit/query/v1", "query": {Query.to_json()}, "buyerKey": "0x<64 hex>",
     "roundSeconds": 5..3600, "requester": "...", "purpose": "..."}

`buyerKey` is the buyer's key-release X25519 key (marketplace.keyrelease.BuyerSecretKey,
derived in the DataMarket's domain): the nodes seal their partial sums to it. The query's
ε must equal the on-chain `epsilonMicros / 10^6` (`epsilon_matches`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from marketplace.aggregate.encoding import Query
from marketplace.aggregate.errors import InvalidQuery
from marketplace.documents import (
    Description,
    DocumentError,
    DocumentSchemaError,
    FieldSpec,
    OwnerKey,
    PurposeText,
    Title,
    _canonical_json,
    _describe,
    _parse_json,
    _put,
    _read,
    document_uri,
    parse_document_uri,
)
from storage.cid import Cid, Codec
from storage.stores.base import ContentStore

QUERY_SCHEMA = "datadebit/query/v1"
COHORT_SCHEMA = "datadebit/cohort/v1"
MIN_ROUND_SECONDS = 5
MAX_ROUND_SECONDS = 3600
_MICROS = 10**6


class QueryHashMismatch(DocumentError):
    """The query URI does not name the document whose hash is on chain."""

    reason = "hash_mismatch"

    def __init__(self, uri: str, expected: bytes) -> None:
        self.uri = uri
        self.expected = expected
        super().__init__(
            f"query URI {uri[:80]!r} does not name the document with the on-chain hash "
            f"0x{expected.hex()}: refusing it"
        )


def _canonical_query(value: dict[str, Any]) -> dict[str, Any]:
    """A query object exactly as `Query.to_json` writes it: no unknown or stray keys."""
    parsed = Query.from_json(value)  # InvalidQuery is a ValueError: pydantic reports it
    if parsed.to_json() != value:
        raise ValueError("has keys its statistic does not use, or is not canonical")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True
    )


class QueryDocument(_Model):
    """One aggregate query as the buyer states it; `parsed` is the checked `Query`."""

    schema_id: Literal["datadebit/query/v1"] = Field(
        default="datadebit/query/v1", validation_alias="schema", serialization_alias="schema")
    query: Annotated[dict[str, Any], AfterValidator(_canonical_query)]
    buyer_key: OwnerKey = Field(validation_alias="buyerKey", serialization_alias="buyerKey")
    round_seconds: Annotated[int, Field(strict=True, ge=MIN_ROUND_SECONDS, le=MAX_ROUND_SECONDS)] \
        = Field(validation_alias="roundSeconds", serialization_alias="roundSeconds")
    requester: Title
    purpose: PurposeText

    @classmethod
    def build(cls, query: Query, buyer_key: bytes, round_seconds: int, requester: str,
              purpose: str) -> QueryDocument:
        """A validated document (DocumentSchemaError on bad values)."""
        return _validate(QueryDocument, {
            "schema": QUERY_SCHEMA, "query": query.to_json(), "buyerKey": "0x" + buyer_key.hex(),
            "roundSeconds": round_seconds, "requester": requester, "purpose": purpose,
        }, None)

    @property
    def parsed(self) -> Query:
        return Query.from_json(self.query)

    @property
    def buyer_key_bytes(self) -> bytes:
        return bytes.fromhex(self.buyer_key[2:])


class CohortDocument(_Model):
    """What a cohort collects: its fields (names, types, units), stored by the admin; its
    SHA-256 is the cohort's on-chain `schemaHash`."""

    schema_id: Literal["datadebit/cohort/v1"] = Field(
        default="datadebit/cohort/v1", validation_alias="schema", serialization_alias="schema")
    title: Title
    description: Description = ""
    fields: Annotated[list[FieldSpec], Field(min_length=1, max_length=500)]


_M = TypeVar("_M", QueryDocument, CohortDocument)


def _validate(
    model: type[_M], value: dict[str, Any], cid: str | None
) -> _M:
    try:
        return model.model_validate(value, by_alias=True, by_name=False)
    except ValidationError as e:
        raise DocumentSchemaError(cid, tuple(_describe(err) for err in e.errors())) from e


def encode(doc: QueryDocument | CohortDocument) -> bytes:
    """Canonical bytes: keys sorted, no spaces, UTF-8."""
    return _canonical_json(doc.model_dump(mode="json", by_alias=True, exclude_none=True))


def put_query_document(store: ContentStore, doc: QueryDocument) -> tuple[bytes, str]:
    """Store the document; returns (`queryHash`, `queryURI`)."""
    cid = _put(store, encode(doc))
    return cid.digest, document_uri(cid)


def put_cohort_document(store: ContentStore, doc: CohortDocument) -> tuple[bytes, str]:
    """Store the cohort's schema document; returns (`schemaHash`, `schemaURI`)."""
    cid = _put(store, encode(doc))
    return cid.digest, document_uri(cid)


def _load(
    store: ContentStore, uri: str, expected_hash: bytes, model: type[_M], schema: str
) -> _M:
    cid = parse_document_uri(uri)
    if len(expected_hash) != len(cid.digest) or Cid.from_digest(Codec.RAW, expected_hash) != cid:
        raise QueryHashMismatch(uri, expected_hash)
    value = _parse_json(_read(store, cid), cid.text)
    if value.get("schema") != schema:
        found = str(value.get("schema"))[:40]
        raise DocumentSchemaError(cid.text, (f"schema: {found!r}, expected {schema!r}",))
    return _validate(model, value, cid.text)


def load_query_document(store: ContentStore, uri: str, expected_hash: bytes) -> QueryDocument:
    """The query document `uri` names, checked against the on-chain `expected_hash` (before
    reading) and its CID (after), and validated (DocumentError subclasses otherwise)."""
    return _load(store, uri, expected_hash, QueryDocument, QUERY_SCHEMA)


def load_cohort_document(store: ContentStore, uri: str, expected_hash: bytes) -> CohortDocument:
    """The cohort's schema document, checked like `load_query_document`."""
    return _load(store, uri, expected_hash, CohortDocument, COHORT_SCHEMA)


def parse_query_document(data: bytes) -> QueryDocument:
    """Validate a query document's bytes (e.g. a local file)."""
    value = _parse_json(data, None)
    return _validate(QueryDocument, value, None)


def parse_cohort_document(data: bytes) -> CohortDocument:
    """Validate a cohort schema document's bytes (e.g. the admin's `cohort.json`)."""
    return _validate(CohortDocument, _parse_json(data, None), None)


def epsilon_to_micros(epsilon: float) -> int:
    """The query's ε in the contract's micro-units, exactly (its shortest decimal form);
    InvalidQuery when it has more than six decimals."""
    try:
        micros = Decimal(repr(float(epsilon))) * _MICROS
    except (InvalidOperation, ValueError) as e:
        raise InvalidQuery("epsilon is not a number") from e
    if not micros.is_finite() or micros != micros.to_integral_value() or micros <= 0:
        raise InvalidQuery(f"epsilon {epsilon} must be positive with at most six decimals")
    return int(micros)


def epsilon_matches(query: Query, epsilon_micros: int) -> bool:
    """Whether the document's ε is exactly the on-chain `epsilonMicros` (nodes and owners
    refuse a query whose document and payment disagree)."""
    try:
        return epsilon_to_micros(query.epsilon) == epsilon_micros
    except InvalidQuery:
        return False
