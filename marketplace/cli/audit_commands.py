"""`datadebit audit`: replay a deployment's chain, store and gateway logs and check them.

Exit codes: 0 when the audit is clean, 1 on any violation, 2 when the audit could not run
(usage, a config file that does not fit the chain, a chain that does not answer).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from eth_utils.address import is_address
from rich.console import Console

from marketplace.app.audit import node_sources, run_audit
from marketplace.audit.auditor import MAX_TAIL
from marketplace.audit.releases import MAX_LAG, MAX_PENDING_AGE
from marketplace.audit.render import print_report
from marketplace.audit.report import AuditReport
from marketplace.chain.errors import ChainError
from marketplace.chain.market import MarketClient
from marketplace.cli.config import (
    CommitteeOption,
    FromBlockOption,
    MarketOption,
    RpcOption,
    StoreOption,
    check_committee_matches,
    open_market,
    open_store,
    read_committee,
)
from marketplace.committee import read_roster
from marketplace.errors import MarketplaceError
from storage.errors import StorageError

if TYPE_CHECKING:
    from marketplace.chain.aggregate import AggregateClient

#: Exit code when the audit cannot run at all (click uses it for usage errors too).
CANNOT_AUDIT = 2


__all__ = ["audit", "emit", "node_sources", "register"]


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


def _cannot(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(CANNOT_AUDIT)


def emit(report: AuditReport, json_target: str | None, console: Console) -> int:
    """Print the table (stderr when JSON goes to stdout), write the JSON; the exit code."""
    document = json.dumps(report.to_json(), indent=2)
    if json_target == "-":
        print_report(report, Console(stderr=True))
        sys.stdout.write(document + "\n")
    else:
        print_report(report, console)
        if json_target is not None:
            Path(json_target).write_text(document + "\n")
    return 0 if report.clean else 1


def audit(
    rpc: RpcOption = None,
    market: MarketOption = None,
    store: StoreOption = None,
    committee: CommitteeOption = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the JSON report to FILE, or - for stdout")
    ] = None,
    from_block: FromBlockOption = 0,
    max_block_range: Annotated[
        int, typer.Option(min=1, help="Blocks per eth_getLogs request")
    ] = 500,
    max_pending_age: Annotated[
        int, typer.Option(min=0, help="Blocks after which an unanchored release is a violation")
    ] = MAX_PENDING_AGE,
    max_lag: Annotated[
        int, typer.Option(min=0, help="Seconds a gateway's confirmed head may trail its clock "
                          "when it releases (widens each request's window back in time)")
    ] = MAX_LAG,
    max_tail: Annotated[
        int, typer.Option(min=0, help="Log entries read per node beyond what it anchored; a "
                          "longer log is cut with a warning")
    ] = MAX_TAIL,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds per gateway request (the whole page)")
    ] = 10.0,
    roster_files: Annotated[
        list[Path] | None,
        typer.Option("--roster", help="roster.json of an earlier epoch, for former nodes' URLs"),
    ] = None,
    aggregator: Annotated[
        str | None,
        typer.Option(help="AggregateMarket address: also check its aggregate debits and the "
                     "nodes' partial releases"),
    ] = None,
) -> None:
    """Check a deployment end to end: balances, debit transitions, every CID, every release."""
    try:
        client = open_market(rpc, market)
        public = read_committee(committee)
        check_committee_matches(public, client.committee(), Path(str(committee)))
        aggregate_client = open_aggregator(client, aggregator) if aggregator else None
        report = run_audit(
            client, open_store(store, existing=True),
            node_sources(public, timeout, [read_roster(p) for p in roster_files or ()]),
            from_block=from_block, max_block_range=max_block_range,
            max_pending_age=max_pending_age, max_lag=max_lag, max_tail=max_tail,
            aggregator=aggregate_client,
        )
    except (MarketplaceError, StorageError, OSError) as e:
        raise _cannot(str(e)) from e
    raise typer.Exit(emit(report, json_out, Console()))


class AggregatorMismatch(MarketplaceError):
    """`--aggregator` is not an AggregateMarket of the audited market."""

    def __init__(self, aggregator: str, reason: str) -> None:
        self.aggregator = aggregator
        self.reason = reason
        super().__init__(f"--aggregator {aggregator}: {reason}")


def open_aggregator(market: MarketClient, address: str) -> AggregateClient:
    """The AggregateMarket at `address`, refused unless it serves the audited market (its
    committee is the market's, so its partial releases sit in the same nodes' logs)."""
    from marketplace.chain.aggregate import AggregateClient  # noqa: PLC0415

    if not is_address(address):
        raise AggregatorMismatch(address[:60], "not an Ethereum address")
    client = AggregateClient(market.w3, address)
    try:
        served = client.market_address()
    except (ChainError, ValueError) as e:  # no code there, or another contract
        raise AggregatorMismatch(address, "no AggregateMarket answers at this address") from e
    if served.lower() != market.address.lower():
        raise AggregatorMismatch(address, f"it serves the market {served}, not {market.address}")
    return client
