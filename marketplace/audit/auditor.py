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
from marketplace.audit.releases import MAX_LAG, MAX_PENDING_AGE, check_releases
from marketplace.audit.report import AuditReport, CheckRun
from marketplace.audit.transitions import check_transitions
from marketplace.chain.events import ReleasesAnchored
from marketplace.chain.market import MarketClient
from marketplace.chain.types import Committee
from marketplace.eip712 import Eip712Domain
from storage.stores.base import ContentStore

log = logging.getLogger(__name__)

NODES = "nodes reachable"

#: Default number of a node's log entries read beyond what it anchored on-chain (its
#: pending tail): a node that anchors in batches of a few hundred never comes near it, and a
#: node serving an endless log costs the audit this many entries, not for ever.
MAX_TAIL = 10_000


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
        max_lag: int = MAX_LAG,
        max_tail: int = MAX_TAIL,
    ) -> None:
        if min(from_block, max_pending_age, max_lag, max_tail) < 0 or max_block_range < 1:
            raise ValueError("from_block, max_pending_age, max_lag and max_tail must be >= 0, "
                             "max_block_range >= 1")
        self.market = market
        self.store = store
        self.logs = logs
        self.from_block = from_block
        self.max_block_range = max_block_range
        self.max_pending_age = max_pending_age
        self.page_size = page_size
        self.max_lag = max_lag
        self.max_tail = max_tail

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
        nodes, logs = self._fetch_logs(committee, history)
        # releases made while the logs were read are dated after `head`, not after this
        latest = self.market.events().confirmed_head()
        release_runs = check_releases(
            history, chain, committee, domain, logs, max_pending_age=self.max_pending_age,
            max_lag=self.max_lag, latest=latest,
        )
        runs += [nodes, *release_runs.all()]
        _check_foreign_anchors(history, committee, nodes)
        seconds = time.perf_counter() - started
        return AuditReport.from_runs(head, self.market.chain_id, self.market.address, runs,
                                     seconds)

    def _fetch_logs(
        self, committee: Committee, history: MarketHistory
    ) -> tuple[CheckRun, dict[int, list[LoggedRelease]]]:
        """Each node's log up to what it anchored (at most one release per (debit, version)
        on chain) plus `max_tail` pending entries; a longer log is cut, with a warning."""
        run = CheckRun(NODES)
        logs: dict[int, list[LoggedRelease]] = {}
        bound = history.release_bound()
        for node in range(1, committee.size + 1):
            source = self.logs.get(node)
            if source is None:
                run.violation("node_unreachable", f"node {node}: no release-log source (URL)",
                              node=node)
                run.count(False)
                continue
            anchored = history.anchored_count(committee.nodes[node - 1])
            if anchored > bound:
                run.violation("anchored_too_many", f"node {node} anchored {anchored} releases; "
                              f"the chain's debits and versions allow at most {bound}",
                              node=node)
            limit = min(anchored, bound) + self.max_tail
            try:
                fetched = fetch_log(source, page_size=self.page_size, max_entries=limit)
            except ReleaseLogError as e:
                run.violation(e.kind, str(e), node=node)
                run.count(False)
                continue
            if fetched.cut:
                run.warning("log_cut", f"node {node}: read {limit} entries ({min(anchored, bound)} "
                            f"anchored + a pending tail of {self.max_tail}); the log goes on and "
                            "the rest was not checked", node=node)
            logs[node] = fetched.entries
            run.count(anchored <= bound)
        return run, logs


def _check_foreign_anchors(history: MarketHistory, committee: Committee, run: CheckRun) -> None:
    """The contract lets only committee nodes anchor; an anchor by anyone else is a breach."""
    for address, anchors in history.anchors.items():
        if committee.index_of(address) is None:
            first: ReleasesAnchored = anchors[0]
            run.violation("foreign_anchor", f"{first.node} anchored {len(anchors)} roots but "
                          "is not a committee node", node=0)
