"""The web app: server-rendered pages (catalog, listing, owner inbox, buyer debits, audit)
and a small JSON API for the page's scripts (protocol §19).

Handlers parse, call the application layer (`marketplace.app`) and render; nothing here
holds a key. No input gives a 500: a malformed id, address, CID or query is a 4xx (a page
with a message, or `{"code", "message"}` under /api and /content), a chain, store or
catalog that does not answer is a readable 503, and the catalog page still renders (with
a message) when only the catalog is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from marketplace.app import browse
from marketplace.app.audit import run_audit
from marketplace.app.catalog import CatalogError, SearchQuery
from marketplace.app.reads import UnknownListing
from marketplace.app.units import UnitError, format_duration, price_cap
from marketplace.audit.report import AuditReport
from marketplace.chain.errors import ChainUnavailable
from marketplace.chain.errors import UnknownListing as ChainUnknownListing
from marketplace.committee import CommitteeFileError
from marketplace.documents import MAX_DOCUMENT_BYTES, DocumentError, DocumentUnavailable
from marketplace.errors import MarketplaceError
from marketplace.web.config import WebConfig
from marketplace.web.services import ServiceHolder, WebServices, open_services
from marketplace.web.vendor import IMPORT_MAP, VENDOR_DIRS
from storage.cid import Cid
from storage.errors import ContentNotFound, StorageError

log = logging.getLogger(__name__)

HERE = FilePath(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

MAX_QUERY_CHARS = 200
MAX_OFFSET = 10_000
PAGE_SIZE = 20
_INT64 = 2**63
_UINT32 = 2**32
_ADDRESS_CHARS = 42
_CID_CHARS = 200

#: The navigation of every page: (key, label, href).
NAV = (("catalog", "Catalog", "/"), ("buyer", "My debits", "/buyer"),
       ("owner", "Inbox", "/owner"), ("audit", "Audit", "/audit"))

ListingIdPath = Annotated[int, Path(ge=1, lt=_INT64, description="a listing id")]


class PageError(MarketplaceError):
    """A refusal shown to the user: an HTTP status, a stable code and a sentence."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(message)


def _is_api(request: Request) -> bool:
    path = request.url.path
    return path.startswith(("/api/", "/content/")) or path in ("/api", "/content")


def _templates() -> Jinja2Templates:
    env = Environment(loader=FileSystemLoader(TEMPLATES),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["duration"] = lambda s: format_duration(int(s)) if int(s) > 0 else "0s"
    env.filters["hex"] = lambda b: "0x" + bytes(b).hex()
    env.filters["isotime"] = _isotime
    return Jinja2Templates(env=env)


def _isotime(seconds: int) -> str:
    """Unix seconds as `2026-11-27T16:30:00Z` (chain time is UTC)."""
    from datetime import UTC, datetime  # noqa: PLC0415

    try:
        return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(seconds)


def parse_address(text: str) -> str:
    """A checksummed address, or a 400 `bad_address` refusal."""
    from eth_utils.address import is_address, to_checksum_address  # noqa: PLC0415

    if len(text) != _ADDRESS_CHARS or not is_address(text):
        raise PageError(400, "bad_address", "that is not an Ethereum address (0x and 40 hex "
                        "digits)")
    return str(to_checksum_address(text))


def create_web_app(config: WebConfig, *, services: WebServices | None = None) -> FastAPI:
    """The app for `config`; `services` (tests) replaces what `config` would open."""
    holder = (ServiceHolder.of(services) if services is not None
              else ServiceHolder(lambda: open_services(config)))
    templates = _templates()
    import_map = IMPORT_MAP
    app = FastAPI(title="datadebit web", docs_url=None, redoc_url=None, openapi_url=None)
    # the vendor mounts go first: "/static" would otherwise take their paths
    for prefix, folder in VENDOR_DIRS.items():
        app.mount(f"/static/vendor/{prefix.strip('/')}",
                  StaticFiles(directory=folder, check_dir=False), name=f"vendor-{prefix}")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def page(request: Request, name: str, active: str = "", status: int = 200,
             **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request, name, {"nav": NAV, "active": active, "import_map": import_map, **context},
            status_code=status,
        )

    def refuse(request: Request, status: int, code: str, message: str) -> Response:
        if _is_api(request):
            return JSONResponse({"code": code, "message": message}, status_code=status)
        return page(request, "error.html", status=status, code=code, message=message)

    _install_error_handlers(app, refuse)
    _add_pages(app, holder, page)
    _add_api(app, holder)
    return app


#: How long an audit report is shown again before the next visit reruns it: a full audit
#: reads every event, document and release log (about a second on the devstack), and a
#: page anyone can load must not let them make the server do that at will.
AUDIT_REUSE_SECONDS = 15.0


class RecentAudit:
    """The latest audit report, reused for `AUDIT_REUSE_SECONDS`; concurrent visits wait
    for one run instead of starting their own."""

    def __init__(self, reuse_seconds: float = AUDIT_REUSE_SECONDS) -> None:
        self.reuse_seconds = reuse_seconds
        self._lock = threading.Lock()
        self._report: AuditReport | None = None
        self._at = 0.0

    def get(self, run: Callable[[], AuditReport]) -> tuple[AuditReport, float]:
        """The report and its age in seconds (0 when it was just run)."""
        with self._lock:
            age = time.monotonic() - self._at
            if self._report is None or age >= self.reuse_seconds:
                self._report, self._at, age = run(), time.monotonic(), 0.0
            return self._report, age


#: Renders a template: (request, name, active nav key, status, **context).
Renderer = Callable[..., HTMLResponse]


def _add_pages(app: FastAPI, holder: ServiceHolder, page: Renderer) -> None:

    @app.get("/", response_class=HTMLResponse)
    def catalog(
        request: Request,
        q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)] = "",
        tag: Annotated[str, Query(max_length=40, pattern=r"^[^\x00-\x1f]*$")] = "",
        max_price: Annotated[str, Query(max_length=100)] = "",
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> HTMLResponse:
        form = {"q": q, "tag": tag, "max_price": max_price}
        services = holder.get()
        try:
            asset, limit = None, None
            if max_price.strip():  # `5tusd` names one of the catalog's tokens (protocol §18)
                asset, limit = price_cap(max_price, services.catalog.assets())
            query = SearchQuery(q.strip(), tag.strip() or None, limit, PAGE_SIZE, offset,
                                asset)
            results = services.catalog.search(query)
        except UnitError as e:
            raise PageError(400, "bad_query", f"maximum price: {e}") from e
        except CatalogError as e:
            log.warning("catalog search failed: %s", e)
            return page(request, "catalog.html", "catalog", status=503, form=form, results=None,
                        prices={}, unavailable="The catalog is unavailable right now, so "
                        "search does not work; try again shortly.", next_offset=None,
                        prev_offset=None)
        prices = {r.id: browse.amount_text(r.shown_asset(), r.price_wei) for r in results}
        next_offset = offset + PAGE_SIZE if len(results) == PAGE_SIZE else None
        prev_offset = max(0, offset - PAGE_SIZE) if offset else None
        return page(request, "catalog.html", "catalog", form=form, results=results,
                    prices=prices, unavailable=None, next_offset=next_offset,
                    prev_offset=prev_offset)

    @app.get("/listings/{listing_id}", response_class=HTMLResponse)
    def listing(request: Request, listing_id: ListingIdPath) -> HTMLResponse:
        services = holder.get()
        view = browse.listing_page(services.market, services.store, listing_id,
                                   services.from_block)
        return page(request, "listing.html", "catalog", view=view,
                    market=services.market.address)

    def connect_page(role: str, title: str) -> Callable[..., Response]:
        """`/owner` and `/buyer`: ask for an address (or a wallet, with JS), then go to
        that address's page."""
        def connect(
            request: Request, address: Annotated[str, Query(max_length=100)] = ""
        ) -> Response:
            if address:
                return RedirectResponse(f"/{role}/{parse_address(address.strip())}", 303)
            return page(request, "connect.html", role, role=role, title=title,
                        target=f"/{role}/")
        return connect

    app.get("/owner", response_model=None)(connect_page("owner", "Consent inbox"))
    app.get("/buyer", response_model=None)(connect_page("buyer", "My debits"))

    @app.get("/owner/{address}", response_class=HTMLResponse)
    def owner_inbox(request: Request, address: Annotated[str, Path(max_length=100)]
                    ) -> HTMLResponse:
        owner = parse_address(address)
        services = holder.get()
        debits = browse.owner_debits(services.market, services.store, owner,
                                     services.from_block)
        return page(request, "inbox.html", "owner", owner=owner, debits=debits)

    @app.get("/buyer/{address}", response_class=HTMLResponse)
    def buyer_debits(request: Request, address: Annotated[str, Path(max_length=100)]
                     ) -> HTMLResponse:
        buyer = parse_address(address)
        services = holder.get()
        debits = browse.buyer_debits(services.market, buyer, services.from_block)
        return page(request, "buyer.html", "buyer", buyer=buyer, debits=debits)

    audits = RecentAudit()

    @app.get("/audit", response_class=HTMLResponse)
    def audit(request: Request) -> HTMLResponse:
        services = holder.get()
        report, age = audits.get(lambda: run_audit(
            services.market, services.store, services.audit_logs(),
            from_block=services.from_block))
        return page(request, "audit.html", "audit", report=report, audit_age=age)



def _add_api(app: FastAPI, holder: ServiceHolder) -> None:

    @app.get("/api/config")
    def api_config() -> dict[str, Any]:
        services = holder.get()
        return {
            "chainId": services.market.chain_id,
            "market": services.market.address,
            "gateways": [{"index": g.index, "url": g.url} for g in services.gateways],
        }

    @app.get("/api/listings/{listing_id}/versions/{version}")
    def api_version(
        listing_id: ListingIdPath,
        version: Annotated[int, Path(ge=1, lt=_UINT32)],
    ) -> dict[str, Any]:
        services = holder.get()
        try:
            view = browse.version_of(services.market, listing_id, version,
                                     services.from_block)
        except (browse.VersionNotPublished, UnknownListing, ChainUnknownListing) as e:
            raise PageError(404, "unknown_version",
                            f"listing {listing_id} has no published version {version}") from e
        return {
            "listingId": view.listing_id, "version": view.version, "cid": view.cid.text,
            "cidBytes": "0x" + view.cid.binary.hex(), "capsule": "0x" + view.capsule.hex(),
            "publishedAt": view.published_at, "block": view.block,
        }

    @app.get("/content/{cid}", response_model=None)
    def content(cid: Annotated[str, Path(max_length=_CID_CHARS)]) -> Response:
        try:
            parsed = Cid.parse(cid)
        except StorageError as e:
            raise PageError(422, "malformed", "that is not a CID") from e
        store = holder.get().store
        try:
            pieces = iter(store.stream(parsed))
            first = next(pieces, b"")
        except ContentNotFound as e:
            raise PageError(404, "not_found", f"{parsed.text} is not in the store") from e

        def body() -> Iterator[bytes]:
            yield first
            yield from pieces

        return StreamingResponse(body(), media_type="application/octet-stream",
                                 headers={"Cache-Control": "public, max-age=31536000, "
                                          "immutable", "X-Content-Type-Options": "nosniff"})

    @app.post("/api/documents")
    async def api_documents(request: Request) -> dict[str, Any]:
        data = await _bounded_body(request, MAX_DOCUMENT_BYTES)
        services = holder.get()
        try:
            stored = await run_in_threadpool(browse.store_purpose_bytes, services.store, data)
        except DocumentUnavailable:
            raise
        except DocumentError as e:
            raise PageError(422, e.reason, str(e)) from e
        return {"cid": stored.cid.text, "purposeHash": "0x" + stored.purpose_hash.hex(),
                "sealed": stored.sealed}

    @app.get("/api/abi")
    def api_abi() -> list[dict[str, Any]]:
        from marketplace.chain.artifacts import load_artifact  # noqa: PLC0415

        return list(load_artifact().abi)


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past `limit` bytes without reading further."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise PageError(413, "too_large", f"a document is at most {limit} bytes")
    buffer = bytearray()
    async for piece in request.stream():
        buffer += piece
        if len(buffer) > limit:
            raise PageError(413, "too_large", f"a document is at most {limit} bytes")
    if not buffer:
        raise PageError(422, "empty", "the request has no document in its body")
    return bytes(buffer)


def _install_error_handlers(app: FastAPI, refuse: Any) -> None:
    """One table from failures to what the user sees (never a stack trace)."""

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> Response:
        return refuse(request, exc.status, exc.code, exc.message)  # type: ignore[no-any-return]

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        where = sorted({str(e.get("loc", ("", ""))[-1]) for e in exc.errors()})
        status = 422 if _is_api(request) else 400
        message = f"invalid {', '.join(where) or 'input'}: " + "; ".join(
            str(e.get("msg", "")) for e in exc.errors()[:3])
        return refuse(request, status, "invalid_request", message)  # type: ignore[no-any-return]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else "http_error"
        message = "no such page" if exc.status_code == 404 else str(exc.detail)
        return refuse(request, exc.status_code, code, message)  # type: ignore[no-any-return]

    @app.exception_handler(UnknownListing)
    @app.exception_handler(ChainUnknownListing)
    async def unknown_listing(request: Request, exc: Exception) -> Response:
        return refuse(request, 404, "unknown_listing",  # type: ignore[no-any-return]
                      "there is no listing with this id on the market")

    @app.exception_handler(ChainUnavailable)
    async def chain_down(request: Request, exc: ChainUnavailable) -> Response:
        log.warning("chain unavailable: %s", exc)
        return refuse(request, 503, "chain_unavailable",  # type: ignore[no-any-return]
                      "the chain node does not answer; try again shortly")

    @app.exception_handler(StorageError)
    @app.exception_handler(DocumentUnavailable)
    async def store_down(request: Request, exc: Exception) -> Response:
        log.warning("content store failed: %s", exc)
        return refuse(request, 503, "store_unavailable",  # type: ignore[no-any-return]
                      "the content store does not answer; try again shortly")

    @app.exception_handler(OSError)
    async def unreachable(request: Request, exc: OSError) -> Response:
        log.warning("a service did not answer: %s", type(exc).__name__)
        return refuse(request, 503, "unavailable",  # type: ignore[no-any-return]
                      "a service this page needs does not answer; try again shortly")

    @app.exception_handler(CommitteeFileError)
    @app.exception_handler(MarketplaceError)
    async def failed(request: Request, exc: Exception) -> Response:
        log.warning("request failed: %s", exc)  # the detail may name endpoints: log only
        return refuse(request, 503, "unavailable",  # type: ignore[no-any-return]
                      f"the server could not read what this page needs "
                      f"({type(exc).__name__}); try again shortly")
