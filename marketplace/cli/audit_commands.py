"""`datadebit audit`: replay a deployment's chain, store and gateway logs and check them.

Exit codes: 0 when the audit is clean, 1 on any violation, 2 when the audit could not run
(usage, a config file that does not fit the chain, a chain that does not answer).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from eth_utils.address import is_address
from rich.console import Console

from marketplace.audit.auditor import Auditor
from marketplace.audit.release_log import HttpReleaseLog, ReleaseLogSource
from marketplace.audit.releases import MAX_PENDING_AGE
from marketplace.audit.render import print_report
from marketplace.audit.report import AuditReport
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import connect
from marketplace.chain.types import Committee
from marketplace.committee import PublicCommittee, read_public_committee
from marketplace.errors import MarketplaceError
from storage.errors import StorageError
from storage.stores.base import ContentStore
from storage.stores.ipfs import IpfsStore
from storage.stores.local import LocalStore

#: Exit code when the audit cannot run at all (click uses it for usage errors too).
CANNOT_AUDIT = 2


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


class AuditConfigError(MarketplaceError):
    """The audit's inputs do not fit together (or do not exist)."""


def _cannot(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(CANNOT_AUDIT)


def open_store(spec: str) -> ContentStore:
    """`IpfsStore` for an http(s) Kubo RPC URL, else `LocalStore` over an existing folder."""
    if spec.startswith(("http://", "https://")):
        return IpfsStore(spec)
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise AuditConfigError(f"--store {path} is not a directory")
    return LocalStore(path)


def check_committee_file(public: PublicCommittee, on_chain: Committee) -> None:
    """The file must describe the market's own committee (the chain is the authority)."""
    same = (
        public.threshold == on_chain.threshold
        and public.committee_key.to_bytes() == on_chain.committee_key
        and [n.address.lower() for n in public.nodes] == [a.lower() for a in on_chain.nodes]
    )
    if not same:
        raise AuditConfigError("the committee file does not match the market's committee")


def node_sources(public: PublicCommittee, timeout: float) -> dict[int, ReleaseLogSource]:
    """One HTTP log source per node with a URL (a node without one is reported unreachable)."""
    return {
        node.index: HttpReleaseLog.connect(node.index, node.url, timeout=timeout)
        for node in public.nodes
        if node.url
    }


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
    rpc: Annotated[str, typer.Option(envvar="DATADEBIT_RPC", help="JSON-RPC URL of the chain")],
    market: Annotated[
        str, typer.Option(envvar="DATADEBIT_MARKET", help="Address of the DataMarket")
    ],
    store: Annotated[
        str,
        typer.Option(envvar="DATADEBIT_STORE",
                     help="Ciphertext store: a directory (LocalStore) or an http(s) Kubo RPC URL"),
    ],
    committee: Annotated[
        Path,
        typer.Option("--committee", envvar="DATADEBIT_COMMITTEE",
                     help="committee.json (node URLs; checked against the chain)"),
    ],
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the JSON report to FILE, or - for stdout")
    ] = None,
    from_block: Annotated[
        int, typer.Option(min=0, help="First block to read events from (the deployment's)")
    ] = 0,
    max_block_range: Annotated[
        int, typer.Option(min=1, help="Blocks per eth_getLogs request")
    ] = 500,
    max_pending_age: Annotated[
        int, typer.Option(min=0, help="Blocks after which an unanchored release is a violation")
    ] = MAX_PENDING_AGE,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per gateway request")] = 10.0,
) -> None:
    """Check a deployment end to end: balances, debit transitions, every CID, every release."""
    if not is_address(market):
        raise _cannot("--market is not an Ethereum address")
    try:
        public = read_public_committee(committee)
        client = MarketClient(connect(rpc), market)
        check_committee_file(public, client.committee())
        auditor = Auditor(
            client, open_store(store), node_sources(public, timeout),
            from_block=from_block, max_block_range=max_block_range,
            max_pending_age=max_pending_age,
        )
        report = auditor.run()
    except (MarketplaceError, StorageError, OSError) as e:
        raise _cannot(str(e)) from e
    raise typer.Exit(emit(report, json_out, Console()))
