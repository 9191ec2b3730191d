"""The auditor: pin a block, rebuild the market from its events, fetch every committee
node's release log, and run the checks. Independent of the CLI and of HTTP: it takes a
market client, a content store and one release-log source per node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from marketplace.audit.balances import check_balances
from marketplace.audit.chain_view import PinnedMarket
from marketplace.audit.content import check_content
from marketplace.audit.history import MarketHistory
from marketplace.audit.release_log import (
    PAGE_SIZE,
    LoggedRelease,
    ReleaseLogError,
    ReleaseLogSource,
    fetch_log,
)
from marketplace.audit.releases import MAX_PENDING_AGE, check_releases
from marketplace.audit.report import AuditReport, CheckRun
from marketplace.audit.transitions import check_transitions
from marketplace.chain.events import ReleasesAnchored
from marketplace.chain.market import MarketClient
from marketplace.chain.types import Committee
from marketplace.eip712 import Eip712Domain
from storage.stores.base import ContentStore

log = logging.getLogger(__name__)

NODES = "nodes reachable"


class Auditor:
    """Audits one market; `run()` returns what it found, never raises for a finding."""

    def __init__(
        self,
        market: MarketClient,
        store: ContentStore,
        logs: Mapping[int, ReleaseLogSource],
        *,
        from_block: int = 0,
        max_block_range: int = 500,
        max_pending_age: int = MAX_PENDING_AGE,
        page_size: int = PAGE_SIZE,
    ) -> None:
        if from_block < 0 or max_block_range < 1 or max_pending_age < 0:
            raise ValueError("from_block and max_pending_age must be >= 0, max_block_range >= 1")
        self.market = market
        self.store = store
        self.logs = logs
        self.from_block = from_block
        self.max_block_range = max_block_range
        self.max_pending_age = max_pending_age
        self.page_size = page_size

    def run(self, head: int | None = None) -> AuditReport:
        """Audit everything up to block `head` (default: the latest block)."""
        started = time.perf_counter()
        head = self.market.events().confirmed_head() if head is None else head
        chain = PinnedMarket(self.market, head)
        events = self.market.events(max_block_range=self.max_block_range).read(
            self.from_block, head
        )
        history = MarketHistory.from_events(events, head)
        committee = chain.committee()
        domain = Eip712Domain(self.market.chain_id, self.market.address)
        runs = [
            check_balances(history, chain),
            check_transitions(history, chain),
            check_content(history, chain, self.store, self.market.address, self.market.chain_id),
        ]
        nodes, logs = self._fetch_logs(committee)
        release_runs = check_releases(
            history, chain, committee, domain, logs, max_pending_age=self.max_pending_age
        )
        runs += [nodes, *release_runs.all()]
        _check_foreign_anchors(history, committee, nodes)
        seconds = time.perf_counter() - started
        return AuditReport.from_runs(head, self.market.chain_id, self.market.address, runs,
                                     seconds)

    def _fetch_logs(self, committee: Committee) -> tuple[CheckRun, dict[int, list[LoggedRelease]]]:
        run = CheckRun(NODES)
        logs: dict[int, list[LoggedRelease]] = {}
        for node in range(1, committee.size + 1):
            source = self.logs.get(node)
            if source is None:
                run.violation("node_unreachable", f"node {node}: no release-log source (URL)",
                              node=node)
                run.count(False)
                continue
            try:
                logs[node] = fetch_log(source, page_size=self.page_size)
            except ReleaseLogError as e:
                kind = "log_malformed" if isinstance(e, ValueError) else "node_unreachable"
                run.violation(kind, str(e), node=node)
                run.count(False)
                continue
            run.count(True)
        return run, logs


def _check_foreign_anchors(history: MarketHistory, committee: Committee, run: CheckRun) -> None:
    """The contract lets only committee nodes anchor; an anchor by anyone else is a breach."""
    for address, anchors in history.anchors.items():
        if committee.index_of(address) is None:
            first: ReleasesAnchored = anchors[0]
            run.violation("foreign_anchor", f"{first.node} anchored {len(anchors)} roots but "
                          "is not a committee node", node=0)
