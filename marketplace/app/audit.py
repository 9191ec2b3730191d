"""The auditor's operation: replay a market's chain, its store and its gateways' release
logs and check them (DESIGN §6). The report is returned, never printed: the CLI renders
it as a table and JSON, the demo tells it, the web app shows it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from marketplace.audit.auditor import MAX_TAIL, Auditor
from marketplace.audit.release_log import HttpReleaseLog, ReleaseLogSource
from marketplace.audit.releases import MAX_LAG, MAX_PENDING_AGE
from marketplace.audit.report import AuditReport
from marketplace.chain.aggregate import AggregateClient
from marketplace.chain.market import MarketClient
from marketplace.committee import PublicCommittee, RosterFile
from storage.stores.base import ContentStore


def run_audit(
    market: MarketClient,
    store: ContentStore,
    logs: Mapping[int, ReleaseLogSource] | Mapping[str, ReleaseLogSource],
    *,
    from_block: int = 0,
    max_block_range: int = 500,
    max_pending_age: int = MAX_PENDING_AGE,
    max_lag: int = MAX_LAG,
    max_tail: int = MAX_TAIL,
    head: int | None = None,
    aggregator: AggregateClient | None = None,
) -> AuditReport:
    """Audit everything up to block `head` (default: the latest); findings are in the
    report (`report.clean`), only a failure to run at all raises. With `aggregator` (the
    AggregateMarket the same committee serves) aggregate debits and partial releases are
    checked too."""
    auditor = Auditor(
        market, store, logs, from_block=from_block, max_block_range=max_block_range,
        max_pending_age=max_pending_age, max_lag=max_lag, max_tail=max_tail,
        aggregator=aggregator,
    )
    return auditor.run(head)


def node_sources(
    public: PublicCommittee, timeout: float, rosters: Sequence[RosterFile] = ()
) -> dict[str, ReleaseLogSource]:
    """One HTTP log source per node with a URL, by address: the current committee's from
    committee.json, and former nodes' from roster files (a node without a URL is reported
    unreachable, or, if it left and anchored nothing, warned about)."""
    urls: dict[str, tuple[int, str]] = {}
    for roster in rosters:
        for position, member in enumerate(roster.nodes, start=1):
            if member.url:
                urls[member.address.lower()] = (position, member.url)
    for node in public.nodes:
        if node.url:
            urls[node.address.lower()] = (node.index, node.url)
    return {
        address: HttpReleaseLog.connect(index, url, timeout=timeout)
        for address, (index, url) in urls.items()
    }
