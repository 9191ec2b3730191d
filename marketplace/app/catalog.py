"""The catalog's HTTP API as a client: search listings and read one (protocol §18).

`market search` / `market show` and the web app's catalog page call this; what a catalog
answers is untrusted (it is an index anyone may run), so each answer is parsed with
`jsonsafe` and checked against the shapes below before anyone reads a field.

httpx and pydantic are imported on first use: `market search` must start fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from marketplace.errors import MarketplaceError

if TYPE_CHECKING:
    import httpx

    from marketplace.chain.assets import AssetInfo

_ETHER = "0x" + "00" * 20
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

#: How long one catalog call may take.
DEFAULT_TIMEOUT = 10.0

_T = TypeVar("_T")


class CatalogError(MarketplaceError):
    """The catalog could not answer a query."""


class CatalogUnavailable(CatalogError, ConnectionError):
    """The catalog did not answer, or answered something that is not its API."""

    def __init__(self, url: str, detail: str) -> None:
        self.url, self.detail = url, detail
        super().__init__(f"catalog at {url} is unavailable ({detail})")


class CatalogRefused(CatalogError):
    """The catalog answered with an error (`code` from its JSON: `unknown_listing`, ...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.detail = status, code, message
        super().__init__(f"catalog: {message or code or status}")


@dataclass(frozen=True, slots=True)
class CatalogListing:
    """One search result: the listing's terms as the catalog indexed them."""

    id: int
    owner: str
    price_wei: int
    period_seconds: int
    auto_approve: bool
    open: bool
    document_status: str
    title: str | None
    description: str | None
    tags: tuple[str, ...] = ()
    #: what the price is in (issue 12); a catalog of an older layout sends none: ether
    asset: str = _ETHER
    asset_symbol: str | None = "ETH"
    asset_decimals: int | None = 18

    def shown_asset(self) -> AssetInfo:
        """How to write this price: the catalog's symbol checked like a token's own (a
        catalog is untrusted: no escapes, no token passing for ether); base units else."""
        return _shown(self.asset, self.asset_symbol, self.asset_decimals)


def _shown(asset: str, symbol: str | None, decimals: int | None) -> AssetInfo:
    from marketplace.chain.assets import ETHER_INFO, shown_asset  # noqa: PLC0415

    if int(asset, 16) == 0:
        return ETHER_INFO
    return shown_asset(asset, symbol, decimals)


@dataclass(frozen=True, slots=True)
class CatalogVersion:
    version: int
    cid: str
    block: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogDetail(CatalogListing):
    """One listing with its document (as the catalog read it), versions and debit counts."""

    metadata_uri: str
    document_error: str | None
    document: dict[str, Any] | None = None
    versions: tuple[CatalogVersion, ...] = ()
    debits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CatalogAsset:
    address: str
    symbol: str | None
    decimals: int


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What the catalog's search takes: `max_price` in base units of `asset` (without
    `asset`: wei, and only ether listings match; protocol §18)."""

    q: str = ""
    tag: str | None = None
    max_price: int | None = None
    limit: int = 20
    offset: int = 0
    asset: str | None = None

    def params(self) -> dict[str, str]:
        params = {"q": self.q, "limit": str(self.limit), "offset": str(self.offset)}
        if self.tag:
            params["tag"] = self.tag
        if self.max_price is not None:
            params["max_price"] = str(self.max_price)
        if self.asset is not None:
            params["asset"] = self.asset
        return params


class CatalogClient:
    """A catalog server at `url`. `client`: an httpx client to send through, with its own
    timeout (tests give a TestClient of an in-process catalog); by default one is made
    per call with `timeout`."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client = client

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """The JSON answer of a GET; a refusal raises `CatalogRefused`, no answer (or
        one that is not JSON) `CatalogUnavailable`."""
        import httpx  # noqa: PLC0415

        from marketplace import jsonsafe  # noqa: PLC0415

        try:
            if self.client is not None:
                response = self.client.get(self.url + path, params=params)
            else:
                response = httpx.get(self.url + path, params=params, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise CatalogUnavailable(self.url, f"unreachable: {type(e).__name__}") from e
        try:
            body = jsonsafe.loads(response.content)
        except ValueError as e:
            raise CatalogUnavailable(
                self.url, f"answered {response.status_code}, not JSON") from e
        if response.status_code != 200:
            code = body.get("code") if isinstance(body, dict) else None
            message = body.get("message") if isinstance(body, dict) else None
            raise CatalogRefused(response.status_code, str(code or ""), str(message or ""))
        return body

    def search(self, query: SearchQuery) -> list[CatalogListing]:
        """Open listings matching `query`, best match first."""
        body = self.get_json("/v1/listings", query.params())
        listings = body.get("listings") if isinstance(body, dict) else None
        return self._parse(list[CatalogListing], listings)

    def listing(self, listing_id: int) -> CatalogDetail:
        """One listing; `CatalogRefused` (404, `unknown_listing`) when it is not indexed."""
        return self._parse(CatalogDetail, self.get_json(f"/v1/listings/{listing_id}"))

    def assets(self) -> list[AssetInfo]:
        """The payment assets of indexed listings, each checked like a token's own
        metadata (what a `5tusd` price cap is resolved against)."""
        body = self.get_json("/v1/assets")
        found = self._parse(list[CatalogAsset], body.get("assets") if isinstance(body, dict)
                            else None)
        return [_shown(a.address, a.symbol, a.decimals) for a in found
                if _ADDRESS.fullmatch(a.address)]

    def _parse(self, shape: type[_T], value: Any) -> _T:
        from pydantic import TypeAdapter, ValidationError  # noqa: PLC0415

        try:
            return TypeAdapter(shape).validate_python(value)
        except ValidationError as e:
            raise CatalogUnavailable(
                self.url, f"its answer is not the catalog API ({e.error_count()} errors)"
            ) from e
