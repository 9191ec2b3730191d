"""`datadebit deploy` and `datadebit gateway serve`: put a committee's market on a chain
and run one key-release node of it."""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import signal
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from marketplace.chain.market import MarketClient, chain_time
from marketplace.chain.provider import connect
from marketplace.chain.types import Committee
from marketplace.cli.committee_commands import read_passphrase
from marketplace.cli.config import (
    COMMITTEE_ENV,
    RpcOption,
    StoreOption,
    open_chain,
    open_store,
    parse_address,
)
from marketplace.cli.wallet_commands import KeystoreOption, PassphraseFileOption, load_wallet
from marketplace.committee import (
    load_node_key,
    node_key_file_name,
    read_public_committee,
    read_roster,
)
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
    roster_file: Annotated[
        Path | None,
        typer.Option("--roster", help="roster.json: the first committee, keys from a DKG"),
    ] = None,
    committee_file: Annotated[
        Path | None,
        typer.Option(
            "--committee", envvar=COMMITTEE_ENV, dir_okay=False,
            help="DEVELOPMENT ONLY, with --trusted-dealer: a dealt committee.json (its node "
            "key files beside it sign the committee in)",
        ),
    ] = None,
    trusted_dealer: Annotated[bool, typer.Option("--trusted-dealer")] = False,
    governor: Annotated[
        str | None, typer.Option(help="who proposes later committees (default: deployer)")
    ] = None,
    phase: Annotated[str, typer.Option(help="how long each ceremony phase waits")] = "30s",
    deadline: Annotated[str, typer.Option(help="how long the first ceremony may take")] = "1h",
    reshare_delay: Annotated[
        str, typer.Option(help="notice before an approved reshare starts (e.g. 1d)")
    ] = "0s",
    rpc: RpcOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
    node_passphrase_file: Annotated[
        Path | None, typer.Option(help="passphrase of the dealt node key files")
    ] = None,
) -> None:
    """Deploy a DataMarket; prints its address. With --roster the gateways then generate
    the committee key by a DKG (`committee status` shows its progress). The deployer's
    wallet: --keystore, else $DATADEBIT_PRIVATE_KEY."""
    from marketplace.chain.types import Roster  # noqa: PLC0415
    from marketplace.cli.committee_commands import parse_duration  # noqa: PLC0415

    if (roster_file is None) == (not trusted_dealer or committee_file is None):
        raise _fail("give --roster roster.json (a DKG), or --trusted-dealer --committee FILE")
    try:
        w3 = open_chain(rpc)
        wallet = load_wallet(keystore, passphrase_file)
        governor_address = parse_address(governor, "--governor") if governor else None
        delay = parse_duration(reshare_delay, "--reshare-delay") if reshare_delay != "0s" else 0
        if roster_file is not None:
            roster = read_roster(roster_file)
            sent = MarketClient.deploy(
                w3, wallet,
                Roster(tuple(n.address for n in roster.nodes),
                       tuple(n.encryption_key for n in roster.nodes), roster.threshold),
                governor=governor_address,
                phase_seconds=parse_duration(phase, "--phase"),
                deadline=chain_time(w3) + parse_duration(deadline, "--deadline"),
                reshare_delay=delay,
            )
        else:
            assert committee_file is not None
            public = read_public_committee(committee_file)
            passphrase = read_passphrase(node_passphrase_file, confirm=False)
            accounts = [
                load_node_key(committee_file.parent / node_key_file_name(n.index),
                              passphrase).account
                for n in public.nodes
            ]
            committee = Committee(
                committee_key=public.committee_key.to_bytes(),
                threshold=public.threshold,
                nodes=tuple(n.address for n in public.nodes),
                share_keys=tuple(n.share_key.to_bytes() for n in public.nodes),
            )
            sent = MarketClient.deploy_dealt(
                w3, wallet, committee, accounts, governor=governor_address,
                reshare_delay=delay,
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
    roster_files: Annotated[
        list[Path] | None, typer.Option("--roster", help="roster.json file(s), for node URLs")
    ] = None,
    approve_rosters: Annotated[
        bool,
        typer.Option(
            help="approve every proposed reshare on chain (an operator policy; by default "
            "a node never approves by itself: use `committee approve`)"
        ),
    ] = False,
    poll_interval: Annotated[float, typer.Option(min=0.01)] = 1.0,
    anchor_interval: Annotated[float, typer.Option(min=0.1)] = 30.0,
    head_ttl: Annotated[float, typer.Option(min=0.0)] = 0.1,
    passphrase_file: Annotated[Path | None, typer.Option()] = None,
    aggregator: Annotated[
        str | None,
        typer.Option(help="AggregateMarket address: run aggregate-debit rounds and serve "
                     "POST /v1/partials (off when absent; needs --store)"),
    ] = None,
    store: StoreOption = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            help="a web origin (e.g. http://127.0.0.1:8000) whose pages may call this node "
            "from a browser; repeat or comma-separate; none by default",
        ),
    ] = None,
) -> None:
    """Serve POST /v1/keys, GET /v1/releases, /v1/health and /v1/committee, and take part
    in every committee ceremony whose roster names this node; with --aggregator, also
    aggregate that contract's debits and serve POST /v1/partials."""
    # only this command needs the server (FastAPI, uvicorn): other commands start faster
    import uvicorn  # noqa: PLC0415

    from marketplace.gateway.api import create_app  # noqa: PLC0415
    from marketplace.gateway.database import open_database  # noqa: PLC0415
    from marketplace.gateway.service import GatewayService, Timing  # noqa: PLC0415
    from marketplace.gateway.state import GatewayState  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # `kill -USR1 <pid>` writes every thread's stack to the log: how an operator (or a
    # test) sees where a node is stuck
    with contextlib.suppress(ValueError, OSError, AttributeError):  # stderr is not a file
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        cors_origins = parse_cors_origins(cors_origin or [])
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
        urls: dict[str, str] = {}
        if committee_file is not None:
            urls = {
                n.address.lower(): n.url or "" for n in read_public_committee(committee_file).nodes
            }
        for roster_file in roster_files or ():
            urls.update({n.address.lower(): n.url or "" for n in read_roster(roster_file).nodes})
        market_client = MarketClient(chain, market)
        database = open_database(state or f"gateway-{key.address.lower()}.db")
        gateway_state = GatewayState(database)
        aggregation = None
        if aggregator is not None:
            if store is None:
                raise _fail("--aggregator needs --store (bundles and round payloads live there)")
            from marketplace.chain.aggregate import AggregateClient  # noqa: PLC0415
            from marketplace.gateway.aggregate_state import AggregateState  # noqa: PLC0415
            from marketplace.gateway.aggregation import AggregationService  # noqa: PLC0415

            aggregation = AggregationService(
                AggregateClient(chain, aggregator), market_client, AggregateState(database),
                gateway_state, key.account, open_store(store), confirmations=confirmations,
            )
        service = GatewayService(
            market=market_client,
            state=gateway_state,
            node=key,
            confirmations=confirmations,
            timing=Timing(poll_interval, anchor_interval, 1, head_ttl),
            node_urls=urls,
            approve_rosters=approve_rosters,
            aggregation=aggregation,
        )
    except MarketplaceError as e:
        raise _fail(str(e)) from e
    uvicorn.run(
        create_app(service, cors_origins=cors_origins), host=host, port=port,
        log_level="warning",
    )


class BadCorsOrigin(MarketplaceError):
    """A --cors-origin that is not one exact `scheme://host[:port]` web origin."""

    def __init__(self, origin: str, reason: str) -> None:
        self.origin = origin
        self.reason = reason
        super().__init__(f"--cors-origin {origin!r}: {reason}")


def parse_cors_origins(values: list[str]) -> tuple[str, ...]:
    """The exact origins of repeated and/or comma-separated --cors-origin values. A
    wildcard or a URL with a path is refused: a browser compares origins byte for byte,
    and any page allowed here can ask this node for keys with the visitor's wallet."""
    origins: list[str] = []
    for value in values:
        for item in value.split(","):
            origin = item.strip()
            if not origin:
                continue
            parts = urlsplit(origin)
            if origin == "*" or "*" in origin:
                raise BadCorsOrigin(origin, "give exact origins, not a wildcard")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BadCorsOrigin(origin, "expected http(s)://host[:port]")
            if parts.path or parts.query or parts.fragment or parts.username:
                raise BadCorsOrigin(origin, "an origin has no path, query or user part")
            try:
                parts.port  # noqa: B018 - raises on a bad port
            except ValueError as e:
                raise BadCorsOrigin(origin, "bad port") from e
            if origin not in origins:
                origins.append(origin)
    return tuple(origins)
