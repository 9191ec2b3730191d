"""`datadebit catalog serve` (index the market, serve the catalog's API) and, for buyers,
`datadebit market search` / `market show` (read that API over HTTP).

`market search` and `market show` only parse, ask the catalog and render: httpx and the
units module, no web3 on their path, so a search starts fast.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, Any

import typer

from marketplace.app.units import UnitError, format_amount, format_eth, price_cap
from marketplace.cli.config import MarketOption, RpcOption, StoreOption

if TYPE_CHECKING:
    from marketplace.chain.assets import AssetInfo

CATALOG_ENV = "DATADEBIT_CATALOG"
DEFAULT_CATALOG = "http://127.0.0.1:8600"
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

catalog_app = typer.Typer(help="Run the catalog: a searchable index of the market's listings.",
                          no_args_is_help=True)
market_app = typer.Typer(help="Buyer: search the catalog and read a listing.",
                         no_args_is_help=True)

CatalogOption = Annotated[
    str,
    typer.Option("--catalog", envvar=CATALOG_ENV, help="URL of a catalog server."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON.")]


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
    app.add_typer(market_app, name="market")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(1)


def _get(catalog: str, path: str, params: dict[str, str] | None = None) -> Any:
    """GET a catalog path; a refusal or an unreachable server becomes `error: ...`."""
    from marketplace.app.catalog import CatalogClient, CatalogError  # noqa: PLC0415

    try:
        return CatalogClient(catalog).get_json(path, params)
    except CatalogError as e:
        raise _fail(str(e)) from e


def _price(listing: dict[str, Any]) -> str:
    """The price in the listing's asset. The catalog's symbol is checked again like a
    token's own (`shown_asset`): a catalog must not be able to print escapes or pass a
    token off as ether; without a symbol, or before the catalog read the token, base units."""
    from marketplace.chain.assets import shown_asset  # noqa: PLC0415

    units, period = int(listing["price_wei"]), listing["period_seconds"]
    if int(str(listing.get("asset") or "0x0"), 16) == 0:
        return f"{format_eth(units)} / {period} s"
    shown = shown_asset(str(listing["asset"]), listing.get("asset_symbol"),
                        listing.get("asset_decimals"))
    return f"{format_amount(units, shown.decimals, shown.symbol)} / {period} s"


def _assets(catalog: str) -> list[AssetInfo]:
    """The payment assets the catalog knows, each checked like a token's own metadata."""
    from marketplace.app.catalog import CatalogClient, CatalogError  # noqa: PLC0415

    try:
        return CatalogClient(catalog).assets()
    except CatalogError as e:
        raise _fail(str(e)) from e


@market_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="Words to find (all must match).")] = "",
    tag: Annotated[str | None, typer.Option(help="Only listings with this tag.")] = None,
    max_price: Annotated[
        str | None, typer.Option(help="At most this per period, in one asset: 0.01eth, "
                                 "1000000gwei, wei, or a listed token's symbol (5tusd).")
    ] = None,
    asset: Annotated[
        str | None, typer.Option(help="Only listings priced in this token (address; "
                                 "0x0...0 for ether); --max-price is then in its units.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Search the catalog's open listings, best match first."""
    params = {"q": query, "limit": str(limit)}
    if tag is not None:
        params["tag"] = tag
    if asset is not None and not _ADDRESS.fullmatch(asset):
        raise _fail(f"--asset {asset[:60]!r} is not an address (0x and 40 hex digits)")
    if max_price is not None:
        try:
            asset, units = price_cap(max_price, _assets(catalog), asset)
        except UnitError as e:
            raise _fail(f"--max-price: {e}") from e
        params["max_price"] = str(units)
    if asset is not None:
        params["asset"] = asset
    body = _get(catalog, "/v1/listings", params)
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    if not body["listings"]:
        typer.echo("no listings found")
    for item in body["listings"]:
        title = item["title"] or f"(document {item['document_status']})"
        tags = f"  [{', '.join(item['tags'])}]" if item["tags"] else ""
        typer.echo(f"#{item['id']}  {title}  {_price(item)}{tags}")


@market_app.command("show")
def show(
    listing_id: Annotated[int, typer.Argument(min=0, help="The listing's id.")],
    catalog: CatalogOption = DEFAULT_CATALOG,
    as_json: JsonOption = False,
) -> None:
    """Show one listing: its document, price, consent policy, versions and debits."""
    item = _get(catalog, f"/v1/listings/{listing_id}")
    if as_json:
        typer.echo(json.dumps(item, indent=2))
        return
    lines = [
        f"listing #{item['id']}: {item['title'] or '(no readable document)'}",
        f"owner:     {item['owner']}",
        f"price:     {_price(item)}",
        f"consent:   {'automatic' if item['auto_approve'] else 'by the owner'}"
        f"{'' if item['open'] else ' (closed)'}",
        f"document:  {item['document_status']}  {item['metadata_uri'] or '(none)'}",
    ]
    if item["document_error"]:
        lines.append(f"           {item['document_error']}")
    doc = item["document"] or {}
    for key in ("description", "license", "cadence", "contact"):
        if doc.get(key):
            lines.append(f"{key + ':':<11}{doc[key]}")
    if item["tags"]:
        lines.append(f"tags:      {', '.join(item['tags'])}")
    versions = ", ".join(f"v{v['version']} {v['cid']}" for v in item["versions"])
    lines.append(f"versions:  {versions or 'none yet'}")
    debits = ", ".join(f"{n} {s}" for s, n in sorted(item["debits"].items()))
    lines.append(f"debits:    {debits or 'none'}")
    typer.echo("\n".join(lines))


@catalog_app.command("serve")
def serve(
    rpc: RpcOption = None,
    market: MarketOption = None,
    store: StoreOption = None,
    state: Annotated[
        str, typer.Option(help="sqlite:///path or postgresql://... for the index")
    ] = "catalog.db",
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8600,
    confirmations: Annotated[
        int, typer.Option(min=0, help="blocks a log must be under before it is indexed")
    ] = 0,
    from_block: Annotated[int, typer.Option(min=0, help="first block to index")] = 0,
    poll_interval: Annotated[float, typer.Option(min=0.01)] = 1.0,
) -> None:
    """Index the market's listings and their documents, and serve GET /v1/listings,
    /v1/listings/{id} and /v1/health."""
    import logging  # noqa: PLC0415
    import threading  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415 - the server's imports, only for this command

    from marketplace.catalog.api import create_app  # noqa: PLC0415
    from marketplace.catalog.indexer import CatalogIndexer  # noqa: PLC0415
    from marketplace.catalog.store import CatalogStore  # noqa: PLC0415
    from marketplace.cli.config import open_market, open_store  # noqa: PLC0415
    from marketplace.db import open_database  # noqa: PLC0415
    from marketplace.documents import load_listing_document  # noqa: PLC0415
    from marketplace.errors import MarketplaceError  # noqa: PLC0415
    from storage.errors import StorageError  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        client = open_market(rpc, market)
        content = open_store(store)
        index = CatalogStore(open_database(state))
    except (MarketplaceError, StorageError, OSError) as e:
        raise _fail(str(e)) from e
    indexer = CatalogIndexer(
        client, index, lambda uri: load_listing_document(content, uri),
        confirmations=confirmations, start_block=from_block,
    )
    stop = threading.Event()
    worker = threading.Thread(target=indexer.run, args=(stop, poll_interval), daemon=True)
    worker.start()
    try:
        uvicorn.run(create_app(index), host=host, port=port, log_level="warning")
    finally:
        stop.set()
        worker.join(timeout=10)
        index.close()
