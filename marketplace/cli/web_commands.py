"""`datadebit web serve`: the web app (browse, request, consent, download in the browser)
over a market, its content store, a catalog and the committee's gateways."""

from __future__ import annotations

from typing import Annotated

import typer

from marketplace.cli.config import (
    CommitteeOption,
    FromBlockOption,
    MarketOption,
    RpcOption,
    StoreOption,
)
from marketplace.cli.market_commands import DEFAULT_CATALOG, CatalogOption

web_app = typer.Typer(help="Run the web app: catalog, requests, consent inbox, downloads.",
                      no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(web_app, name="web")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@web_app.command("serve")
def serve(
    rpc: RpcOption = None,
    market: MarketOption = None,
    store: StoreOption = None,
    catalog: CatalogOption = DEFAULT_CATALOG,
    committee: CommitteeOption = None,
    from_block: FromBlockOption = 0,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Serve the pages (/, /listings/N, /owner, /buyer, /audit) and their JSON API; keys
    and plaintext stay in the browser."""
    import logging  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415 - the server's imports, only for this command

    from marketplace.cli.config import require  # noqa: PLC0415
    from marketplace.errors import MarketplaceError  # noqa: PLC0415
    from marketplace.web.app import create_web_app  # noqa: PLC0415
    from marketplace.web.config import WebConfig  # noqa: PLC0415
    from marketplace.web.services import open_services  # noqa: PLC0415
    from marketplace.web.vendor import vendor_missing  # noqa: PLC0415
    from storage.errors import StorageError  # noqa: PLC0415

    missing = vendor_missing()
    if missing is not None:
        raise _fail(missing)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        config = WebConfig(
            rpc_url=require(rpc, "--rpc", "DATADEBIT_RPC"),
            market=require(market, "--market", "DATADEBIT_MARKET"),
            store=require(store, "--store", "DATADEBIT_STORE"),
            catalog_url=catalog, committee_file=committee, from_block=from_block,
        )
        services = open_services(config)  # a wrong --market or committee file fails here
    except (MarketplaceError, StorageError, OSError) as e:
        raise _fail(str(e)) from e
    typer.echo(f"web app on http://{host}:{port}/ (market {services.market.address})",
               err=True)
    uvicorn.run(create_web_app(config, services=services), host=host, port=port,
                log_level="warning")
