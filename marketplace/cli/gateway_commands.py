"""`datadebit deploy` and `datadebit gateway serve`: put a committee's market on a chain
and run one key-release node of it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from marketplace.chain.market import MarketClient
from marketplace.chain.provider import connect
from marketplace.chain.types import Committee
from marketplace.cli.committee_commands import read_passphrase
from marketplace.cli.config import COMMITTEE_ENV, RpcOption, open_chain
from marketplace.cli.wallet_commands import KeystoreOption, PassphraseFileOption, load_wallet
from marketplace.committee import load_node_key, read_public_committee
from marketplace.errors import MarketplaceError

gateway_app = typer.Typer(help="Run a key-release gateway node.", no_args_is_help=True)

#: Chains where acting on unconfirmed blocks is harmless: anvil/hardhat (31337), geth and
#: ganache dev mode (1337), eth-tester (131277322940537). Anywhere else a reorg can undo a
#: payment or give a debit id to another buyer after the node acted on it.
DEVELOPMENT_CHAIN_IDS = frozenset((31337, 1337, 131277322940537))


def register(app: typer.Typer) -> None:
    app.command("deploy", help="Deploy a DataMarket for a committee; prints its address.")(deploy)
    app.add_typer(gateway_app, name="gateway")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def deploy(
    committee_file: Annotated[
        Path,
        typer.Option("--committee", envvar=COMMITTEE_ENV, help="committee.json", dir_okay=False),
    ],
    rpc: RpcOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """The deployer's wallet: --keystore, else $DATADEBIT_PRIVATE_KEY."""
    try:
        public = read_public_committee(committee_file)
        committee = Committee(
            committee_key=public.committee_key.to_bytes(),
            threshold=public.threshold,
            nodes=tuple(n.address for n in public.nodes),
            share_keys=tuple(n.share_key.to_bytes() for n in public.nodes),
        )
        sent = MarketClient.deploy(
            open_chain(rpc), load_wallet(keystore, passphrase_file), committee
        )
    except MarketplaceError as e:
        raise _fail(str(e)) from e
    typer.echo(sent.value.address)


@gateway_app.command("serve")
def serve(
    node_key: Annotated[Path, typer.Option("--node-key", help="This node's key file")],
    rpc: Annotated[str, typer.Option(help="JSON-RPC URL of the chain")],
    market: Annotated[str, typer.Option(help="Address of the DataMarket")],
    state: Annotated[
        str | None, typer.Option(help="sqlite:///path or postgresql://... (default: a file)")
    ] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 9545,
    confirmations: Annotated[
        int, typer.Option(min=0, help="blocks a log must be under before the node acts on it")
    ] = 0,
    allow_zero_confirmations: Annotated[
        bool,
        typer.Option(help="accept --confirmations 0 on a chain that is not a development chain"),
    ] = False,
    committee_file: Annotated[
        Path | None, typer.Option("--committee", help="committee.json, for node URLs")
    ] = None,
    poll_interval: Annotated[float, typer.Option(min=0.01)] = 1.0,
    anchor_interval: Annotated[float, typer.Option(min=0.1)] = 30.0,
    head_ttl: Annotated[float, typer.Option(min=0.0)] = 0.1,
    passphrase_file: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Serve POST /v1/keys, GET /v1/releases, /v1/health and /v1/committee."""
    # only this command needs the server (FastAPI, uvicorn): other commands start faster
    import uvicorn  # noqa: PLC0415

    from marketplace.gateway.api import create_app  # noqa: PLC0415
    from marketplace.gateway.database import open_database  # noqa: PLC0415
    from marketplace.gateway.service import GatewayService, Timing  # noqa: PLC0415
    from marketplace.gateway.state import GatewayState  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        chain = connect(rpc)
        if confirmations == 0 and not allow_zero_confirmations:
            chain_id = chain.eth.chain_id
            if chain_id not in DEVELOPMENT_CHAIN_IDS:
                raise _fail(
                    f"chain {chain_id} is not a development chain: acting on unconfirmed "
                    "blocks lets a reorg undo payments the node released keys for; give "
                    "--confirmations N (e.g. 12 on mainnet) or --allow-zero-confirmations"
                )
        key = load_node_key(node_key, read_passphrase(passphrase_file, confirm=False))
        urls = {}
        if committee_file is not None:
            urls = {n.index: n.url or "" for n in read_public_committee(committee_file).nodes}
        service = GatewayService(
            market=MarketClient(chain, market),
            state=GatewayState(open_database(state or f"gateway-node-{key.index}.db")),
            node=key,
            confirmations=confirmations,
            timing=Timing(poll_interval, anchor_interval, 1, head_ttl),
            node_urls={int(i): u for i, u in urls.items()},
        )
    except MarketplaceError as e:
        raise _fail(str(e)) from e
    uvicorn.run(create_app(service), host=host, port=port, log_level="warning")
