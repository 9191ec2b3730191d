"""The gateway's HTTP API (FastAPI): `POST /v1/keys`, `GET /v1/releases`,
`GET /v1/health`, `GET /v1/committee`, and `GET /metrics` (Prometheus, `metrics`).
Wire format: DESIGN §5.

Every refusal is JSON `{"code", "message"}` with a stable code; `ERROR_STATUS` is the one
table that maps them to HTTP statuses.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool

from marketplace.chain.errors import ChainError, ChainUnavailable
from marketplace.eip712 import MalformedSignature, signature_from_hex
from marketplace.gateway.aggregate_state import PartialRelease
from marketplace.gateway.anchoring import LogEntry, MissingAggregation, log_after
from marketplace.gateway.database import StateStoreError
from marketplace.gateway.metrics import GatewayMetrics, KeysRequestMetrics
from marketplace.gateway.releaser import ReleaseRefused
from marketplace.gateway.service import GatewayService
from marketplace.gateway.wire import (
    MalformedBody,
    is_json_content_type,
    keys_answer,
    parse_keys_body,
    read_capped,
)

log = logging.getLogger(__name__)

ERROR_STATUS: dict[str, int] = {
    "malformed": 422,
    "bad_signature": 401,
    "wrong_signer": 403,
    "expired": 401,
    "expiry_too_far": 401,
    "nonce_reused": 409,
    "unknown_debit": 404,
    "unknown_version": 404,
    "not_entitled": 403,
    "invalid_capsule": 409,
    "invalid_buyer_key": 409,
    "chain_unavailable": 503,
    "not_in_committee": 503,
    "state_unavailable": 503,
    # aggregate debits (`POST /v1/partials`, docs/protocol.md §20)
    "not_ready": 409,
    "too_few_contributions": 409,
    "unknown_aggregate": 404,
    "aggregation_failed": 409,
}

_HEX32 = r"^0x[0-9a-fA-F]{64}$"


class KeyRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    debitId: StrictInt = Field(ge=0, lt=2**256)
    version: StrictInt = Field(ge=1, lt=2**32)
    expiry: StrictInt = Field(ge=0, lt=2**64)
    nonce: str = Field(pattern=_HEX32)


class KeysBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: KeyRequestBody
    # any string: one that is not 65 bytes of 0x-hex is a bad signature (401), not a
    # malformed body, so `signature_from_hex` decides (DESIGN §5)
    signature: StrictStr


class ReceiptBody(BaseModel):
    """`ReleaseReceipt` (EIP-712, docs/protocol.md) as JSON."""

    debitId: int
    version: int
    node: int
    epoch: int
    buyer: str
    buyerKeyHash: str
    requestDigest: str
    sealedShareHash: str
    block: int


class KeysResponse(BaseModel):
    node: int
    debitId: int
    version: int
    sealedShare: str = Field(description="base64 of SealedBox(buyerKey, share)")
    receipt: ReceiptBody
    receiptSignature: str


class ReleaseEntry(BaseModel):
    """One log entry: the signed receipt and the buyer's signed request behind it."""

    seq: int
    receipt: ReceiptBody
    receiptSignature: str
    request: KeyRequestBody
    requestSignature: str


class PartialReceiptBody(BaseModel):
    """`PartialReceipt` (EIP-712, docs/protocol.md §20) as JSON."""

    debitId: int
    node: int
    sealedPartialHash: str
    block: int
    epoch: int


class PartialRequestBody(BaseModel):
    debitId: int
    expiry: int
    nonce: str


class PartialEntry(BaseModel):
    """A partial release (aggregate debits) in the log: `kind` tells it from a key release,
    `aggregator` names the AggregateMarket whose domain the receipt is signed in."""

    seq: int
    kind: Literal["partial"] = "partial"
    aggregator: str
    receipt: PartialReceiptBody
    receiptSignature: str
    request: PartialRequestBody
    requestSignature: str


class AnchorEntry(BaseModel):
    anchorSeq: int
    firstSeq: int
    lastSeq: int
    root: str
    txHash: str


class ReleasesResponse(BaseModel):
    node: int
    address: str
    releases: list[ReleaseEntry | PartialEntry]
    anchors: list[AnchorEntry]


class ErrorBody(BaseModel):
    code: str
    message: str


def _inlined_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its nested models written out (no `$defs`), for
    `openapi_extra`, which takes a schema but does not register nested models."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


_KEYS_BODY_SCHEMA = _inlined_schema(KeysBody)


def error_response(code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=ERROR_STATUS[code])


async def _no_aggregation(_: Request, exc: MissingAggregation) -> JSONResponse:
    """A log with partial releases on a node started without its AggregateMarket."""
    log.error("%s", exc)
    return error_response("state_unavailable", str(exc))


def _service(request: Request) -> GatewayService:
    service: GatewayService = request.app.state.service
    return service


Service = Annotated[GatewayService, Depends(_service)]


def create_app(
    service: GatewayService,
    *,
    run_background: bool = True,
    cors_origins: tuple[str, ...] = (),
) -> FastAPI:
    """The node's app; with `run_background` its loop runs for the app's lifetime.
    `cors_origins`: the exact web origins (e.g. the web app's) whose pages may call the
    node from a browser; none by default (no CORS headers at all)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_background:
            service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title=f"datadebit gateway {service.node.address}",
        version="1",
        lifespan=lifespan,
        responses={code_status: {"model": ErrorBody} for code_status in (401, 403, 404, 409, 503)},
        exception_handlers={MissingAggregation: _no_aggregation},
    )
    app.state.service = service
    metrics = GatewayMetrics.for_service(service, codes=ERROR_STATUS)
    app.add_middleware(KeysRequestMetrics, metrics=metrics)  # counts and times /v1/keys
    app.add_route("/metrics", metrics.scrape, include_in_schema=False)
    _add_cors_and_partials(app, service, cors_origins)

    @app.exception_handler(RequestValidationError)
    async def _malformed(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response("malformed", f"{where or 'body'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(ReleaseRefused)
    async def _refused(_: Request, exc: ReleaseRefused) -> JSONResponse:
        return error_response(exc.code, exc.message)

    @app.exception_handler(ChainUnavailable)
    async def _chain_down(_: Request, exc: ChainUnavailable) -> JSONResponse:
        return error_response("chain_unavailable", "the chain node does not answer")

    @app.exception_handler(StateStoreError)
    async def _state_down(_: Request, exc: StateStoreError) -> JSONResponse:
        log.error("state database failed: %s", exc)
        metrics.state_store_errors.inc()
        return error_response("state_unavailable", "the node's state database does not answer")

    @app.exception_handler(ChainError)
    async def _chain_error(_: Request, exc: ChainError) -> JSONResponse:
        log.warning("chain node refused a read: %s", exc)  # endpoint redacted by ChainError
        return error_response("chain_unavailable", "the chain node refused a read")

    @app.post(
        "/v1/keys",
        response_model=KeysResponse,
        openapi_extra={"requestBody": {
            "required": True, "content": {"application/json": {"schema": _KEYS_BODY_SCHEMA}},
        }},
    )
    async def post_keys(request: Request) -> Response:
        """Release this node's sealed share of a version key to an entitled buyer."""
        # the body is parsed by hand (`wire`), not by a pydantic parameter: this is the
        # node's hot path; `KeysBody` documents the same shape in the OpenAPI schema
        if not is_json_content_type(request.headers.get("content-type")):
            return error_response("malformed", "body: must be application/json")
        try:
            raw = await read_capped(request.stream(), request.headers.get("content-length"))
            key_request, signature_hex = parse_keys_body(raw)
            signature = signature_from_hex(signature_hex)
        except MalformedBody as e:
            return error_response("malformed", str(e))
        except MalformedSignature as e:
            return error_response("bad_signature", str(e))
        # a re-served release with everything known answers here; what needs the chain
        # or a new (signed, durably written) release goes to a thread, off the loop
        signed = service.releaser.handle_from_memory(key_request, signature)
        if signed is None:
            signed = await run_in_threadpool(service.releaser.handle, key_request, signature)
        return Response(keys_answer(signed), media_type="application/json")

    @app.get("/v1/releases", response_model=ReleasesResponse)
    def get_releases(
        svc: Service, after: Annotated[int, Query(ge=0, lt=2**63)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    ) -> ReleasesResponse:
        """The node's signed release receipts after `after`, and the anchors covering
        them (a page stays bounded however long the node runs)."""
        return releases_page(svc, after, limit)

    @app.get("/v1/health")
    def health(svc: Service) -> JSONResponse:
        """Liveness and lag: 200 when the chain answers, 503 otherwise."""
        cursor = svc.state.cursor()
        body: dict[str, Any] = {
            "node": svc.node_index(),
            "epoch": svc.epoch_held(),
            "address": svc.node.account.address,
            "market": svc.market.address,
            "cursor": cursor.block_number if cursor else None,
        }
        try:
            head = svc.watcher.reader.confirmed_head()
        except ChainError:
            return JSONResponse({**body, "status": "degraded", "chain": "unavailable"}, 503)
        lag = head - cursor.block_number if cursor else head + 1
        return JSONResponse({**body, "status": "ok", "confirmedHead": head, "lag": lag})

    @app.get("/v1/committee")
    def committee(svc: Service) -> dict[str, Any]:
        """The public committee file: threshold, committee key, nodes with share keys."""
        return svc.committee_document()

    return app


def partials_route(service: GatewayService) -> Callable[[Request], Awaitable[Response]]:
    """The `POST /v1/partials` endpoint of `service`."""

    async def post_partials(request: Request) -> Response:
        """Release this node's sealed partial sum of an aggregate debit to its buyer
        (docs/protocol.md §20); `not_ready` answers carry `retryAfter` seconds."""
        return await partials(service, request)

    return post_partials


async def partials(service: GatewayService, request: Request) -> Response:
    """`POST /v1/partials`: parsed by hand like `/v1/keys`, answered by the aggregation."""
    aggregation = service.aggregation
    if aggregation is None:
        return error_response("unknown_aggregate", "this node serves no aggregate debits")
    from marketplace.gateway import aggregation as wire_aggregate  # noqa: PLC0415

    if not is_json_content_type(request.headers.get("content-type")):
        return error_response("malformed", "body: must be application/json")
    try:
        raw = await read_capped(request.stream(), request.headers.get("content-length"))
        partial_request, signature_hex = wire_aggregate.parse_partials_body(raw)
        signature = signature_from_hex(signature_hex)
    except MalformedBody as e:
        return error_response("malformed", str(e))
    except MalformedSignature as e:
        return error_response("bad_signature", str(e))
    try:
        signed = await run_in_threadpool(aggregation.handle, partial_request, signature)
    except wire_aggregate.NotReady as e:
        return JSONResponse(
            {"code": e.code, "message": e.message, "retryAfter": e.retry_after},
            status_code=ERROR_STATUS[e.code], headers={"Retry-After": str(e.retry_after)},
        )
    return Response(wire_aggregate.partials_answer(signed), media_type="application/json")


def _add_cors_and_partials(
    app: FastAPI, service: GatewayService, origins: tuple[str, ...]
) -> None:
    """The browser's access (CORS) and the aggregate debits' endpoint (protocol §20)."""
    _allow_origins(app, origins)
    app.post("/v1/partials")(partials_route(service))


def _allow_origins(app: FastAPI, origins: tuple[str, ...]) -> None:
    """CORS for exactly `origins` (none: no headers at all). Added after the other
    middleware, so it is outermost: error answers (422, 403...) carry the headers too,
    and the page can read their JSON `{"code","message"}`."""
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(origins), allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
        )


def releases_page(svc: GatewayService, after: int, limit: int) -> ReleasesResponse:
    """`GET /v1/releases`: entries after `after` with their requests, and their anchors."""
    releases = log_after(svc.state, svc.aggregation, after, limit)
    anchors = svc.state.anchors_covering(releases[0].seq, releases[-1].seq) if releases else []
    return ReleasesResponse(
        node=svc.node_index(),
        address=svc.node.account.address,
        releases=[_log_entry(svc, r) for r in releases],
        anchors=[
            AnchorEntry(
                anchorSeq=a.anchor_seq, firstSeq=a.first_seq, lastSeq=a.last_seq,
                root="0x" + a.root.hex(), txHash=a.tx_hash,
            )
            for a in anchors
        ],
    )


def _log_entry(svc: GatewayService, entry: LogEntry) -> ReleaseEntry | PartialEntry:
    """One log entry on the wire: a key release exactly as before partial releases existed
    (no `kind`), a partial release with `"kind": "partial"` (protocol §11.3, §20)."""
    if isinstance(entry, PartialRelease):
        aggregation = svc.aggregation
        if aggregation is None:
            raise MissingAggregation("a partial release in the log, and no aggregation")
        return PartialEntry(
            seq=entry.seq,
            aggregator=aggregation.client.address,
            receipt=PartialReceiptBody(**aggregation.receipt_of(entry).to_message()),
            receiptSignature="0x" + entry.signature.hex(),
            request=PartialRequestBody(**entry.request.to_message()),
            requestSignature="0x" + entry.request_signature.hex(),
        )
    return ReleaseEntry(
        seq=entry.seq,
        receipt=ReceiptBody(**svc.releaser.receipt_of(entry).to_message()),
        receiptSignature="0x" + entry.signature.hex(),
        request=KeyRequestBody(**entry.request.to_message()),
        requestSignature="0x" + entry.request_signature.hex(),
    )
