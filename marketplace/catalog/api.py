"""The catalog's JSON API: search listings, read one with its document, versions and
debit counts, and a health check.

Every refusal is JSON with a stable `code`: bad query input is 422 `invalid_request`, an
unknown listing 404 `unknown_listing`, a state database that is down 503
`state_unavailable`. Prices travel as decimal strings of the listing asset's base units
(wei for ether; uint256 does not fit a JSON number that JavaScript reads exactly), with the
asset's address, symbol and decimals beside them.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from marketplace.catalog.store import CatalogStore, ListingDetail, ListingSummary
from marketplace.db import StateStoreError

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 200
MAX_PAGE = 100
MAX_OFFSET = 10_000
_UINT256 = 2**256
_INT64 = 2**63


class ListingOut(BaseModel):
    id: int
    owner: str
    price_wei: str
    period_seconds: int
    auto_approve: bool
    open: bool
    document_status: str
    title: str | None
    description: str | None
    tags: list[str]
    asset: str
    asset_symbol: str | None
    asset_decimals: int | None


class VersionOut(BaseModel):
    version: int
    cid: str
    block: int


class ListingDetailOut(ListingOut):
    metadata_uri: str
    terms_hash: str
    block: int
    document_error: str | None
    document: dict[str, Any] | None
    versions: list[VersionOut]
    debits: dict[str, int]


class SearchOut(BaseModel):
    listings: list[ListingOut]
    limit: int
    offset: int


class AssetOut(BaseModel):
    address: str
    symbol: str | None
    decimals: int


class AssetsOut(BaseModel):
    assets: list[AssetOut]


class HealthOut(BaseModel):
    status: str
    block: int | None
    listings: int


def _listing(s: ListingSummary) -> dict[str, Any]:
    return {
        "id": s.listing_id, "owner": s.owner, "price_wei": str(s.price_wei),
        "period_seconds": s.period_seconds, "auto_approve": s.auto_approve, "open": s.open,
        "document_status": s.document_status, "title": s.title,
        "description": s.description, "tags": list(s.tags), "asset": s.asset,
        "asset_symbol": s.asset_symbol, "asset_decimals": s.asset_decimals,
    }


def _detail(d: ListingDetail) -> ListingDetailOut:
    return ListingDetailOut(
        **_listing(d.summary), metadata_uri=d.metadata_uri, terms_hash=d.terms_hash,
        block=d.block_number, document_error=d.document_error, document=d.document,
        versions=[VersionOut(version=v.version, cid=v.cid, block=v.block_number)
                  for v in d.versions],
        debits=d.debits,
    )


def get_store(request: Request) -> CatalogStore:
    store: CatalogStore = request.app.state.catalog
    return store


StoreDep = Annotated[CatalogStore, Depends(get_store)]


def create_app(store: CatalogStore) -> FastAPI:
    """The API over `store` (the indexer runs beside it, see `catalog serve`)."""
    app = FastAPI(title="datadebit catalog", version="1")

    app.state.catalog = store

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return JSONResponse(
            {"code": "invalid_request", "message": "invalid query", "errors": errors},
            status_code=422,
        )

    @app.exception_handler(StateStoreError)
    async def unavailable(_: Request, exc: StateStoreError) -> JSONResponse:
        log.warning("catalog state unavailable: %s", exc)
        return JSONResponse(
            {"code": "state_unavailable", "message": "the catalog's database is unavailable"},
            status_code=503,
        )

    @app.get("/v1/listings", response_model=SearchOut)
    def search(
        store: StoreDep,
        q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS)] = None,
        tag: Annotated[
            str | None, Query(min_length=1, max_length=40, pattern=r"^[^\x00-\x1f]+$")
        ] = None,
        max_price: Annotated[int | None, Query(ge=0, lt=_UINT256)] = None,
        asset: Annotated[str | None, Query(pattern=r"^0x[0-9a-fA-F]{40}$")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> SearchOut:
        found = store.search(q, tag=tag, max_price=max_price, asset=asset, limit=limit,
                             offset=offset)
        return SearchOut(
            listings=[ListingOut(**_listing(s)) for s in found], limit=limit, offset=offset
        )

    @app.get("/v1/listings/{listing_id}", response_model=ListingDetailOut)
    def listing(
        store: StoreDep, listing_id: Annotated[int, Path(ge=0, lt=_INT64)]
    ) -> ListingDetailOut | JSONResponse:
        found = store.listing(listing_id)
        if found is None:
            return JSONResponse(
                {"code": "unknown_listing", "message": f"no listing {listing_id} in the catalog"},
                status_code=404,
            )
        return _detail(found)

    @app.get("/v1/assets", response_model=AssetsOut)
    def assets(store: StoreDep) -> AssetsOut:
        return AssetsOut(assets=[
            AssetOut(address=a.address, symbol=a.symbol, decimals=a.decimals)
            for a in store.assets()
        ])

    @app.get("/v1/health", response_model=HealthOut)
    def health(store: StoreDep) -> HealthOut:
        cursor = store.cursor()
        return HealthOut(
            status="ok", block=cursor.block_number if cursor else None, listings=store.count()
        )

    return app
