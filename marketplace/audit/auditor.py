"""The auditor: pin a block, rebuild the market from its events and its committee epochs,
fetch the release log of every node of every epoch, and run the checks. Independent of
the CLI and of HTTP: it takes a market client, a content store and one release-log source
per node (keyed by address, or by index in the current epoch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from marketplace.audit.aggregates import check_aggregates
from marketplace.audit.balances import check_balances
from marketplace.audit.ceremonies import check_ceremonies
from marketplace.audit.chain_view import PinnedAggregator, PinnedMarket
from marketplace.audit.content import check_content
from marketplace.audit.epochs import EpochHistory
from marketplace.audit.history import MarketHistory
from marketplace.audit.release_log import (
    PAGE_SIZE,
    LogEntry,
    LoggedPartial,
    ReleaseLogError,
    ReleaseLogSource,
    fetch_log,
)
from marketplace.audit.releases import MAX_LAG, MAX_PENDING_AGE, check_releases
from marketplace.audit.report import AuditReport, CheckRun
from marketplace.audit.transitions import check_transitions
from marketplace.chain.aggregate import AggregateClient
from marketplace.chain.events import ReleasesAnchored
from marketplace.chain.market import MarketClient
from marketplace.eip712 import Eip712Domain
from storage.stores.base import ContentStore

log = logging.getLogger(__name__)

NODES = "nodes reachable"

#: Default number of a node's log entries read beyond what it anchored on-chain (its
#: pending tail): a node that anchors in batches of a few hundred never comes near it, and a
#: node serving an endless log costs the audit this many entries, not for ever.
MAX_TAIL = 10_000


class Auditor:
    """Audits one market; `run()` returns what it found, never raises for a finding.

    `logs` maps each node to its release-log source: by Ethereum address (any epoch's
    node), or by index in the committee current at the audited block (as the committee
    file numbers them). With `aggregator` (an AggregateMarket served by the same
    committee) its aggregate debits and the nodes' partial releases are checked too.
    """

    def __init__(
        self,
        market: MarketClient,
        store: ContentStore,
        logs: Mapping[int, ReleaseLogSource] | Mapping[str, ReleaseLogSource],
        *,
        from_block: int = 0,
        max_block_range: int = 500,
        max_pending_age: int = MAX_PENDING_AGE,
        page_size: int = PAGE_SIZE,
        max_lag: int = MAX_LAG,
        max_tail: int = MAX_TAIL,
        aggregator: AggregateClient | None = None,
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
        self.aggregator = aggregator

    def run(self, head: int | None = None) -> AuditReport:
        """Audit everything up to block `head` (default: the latest block)."""
        started = time.perf_counter()
        head = self.market.events().confirmed_head() if head is None else head
        chain = PinnedMarket(self.market, head)
        events = self.market.events(max_block_range=self.max_block_range).read(
            self.from_block, head
        )
        history = MarketHistory.from_events(events, head)
        epochs = EpochHistory.of(chain.finalized_epochs())
        domain = Eip712Domain(self.market.chain_id, self.market.address)
        runs = [
            check_balances(history, chain),
            check_transitions(history, chain),
            check_content(history, chain, self.store, self.market.address, self.market.chain_id),
            check_ceremonies(epochs, chain),
        ]
        view = PinnedAggregator(self.aggregator, chain) if self.aggregator else None
        # a node logs at most one partial per aggregate debit
        partial_bound = view.aggregate_count() if view else 0
        nodes, logs = self._fetch_logs(epochs, history, partial_bound)
        # releases made while the logs were read are dated after `head`, not after this
        latest = self.market.events().confirmed_head()
        release_runs = check_releases(
            history, chain, epochs, domain, logs, max_pending_age=self.max_pending_age,
            max_lag=self.max_lag, latest=latest,
        )
        runs += [nodes, *release_runs.all()]
        if view is not None and self.aggregator is not None:
            aggregate_events = self.aggregator.read_events(
                self.from_block, head, max_block_range=self.max_block_range)
            runs += check_aggregates(view, aggregate_events, epochs, self.market.chain_id, logs,
                                     latest=latest, max_lag=self.max_lag).all()
        else:
            _unaudited_partials(logs, epochs, nodes)
        _check_foreign_anchors(history, epochs, nodes)
        seconds = time.perf_counter() - started
        return AuditReport.from_runs(head, self.market.chain_id, self.market.address, runs,
                                     seconds)

    def _sources(self, epochs: EpochHistory) -> dict[str, ReleaseLogSource]:
        """The log sources by lower-case address (an index names the current roster)."""
        current = epochs.current
        sources: dict[str, ReleaseLogSource] = {}
        for key, source in self.logs.items():
            if isinstance(key, str):
                sources[key.lower()] = source
            elif current is not None and 1 <= key <= len(current.nodes):
                sources[current.nodes[key - 1].lower()] = source
            else:
                log.warning("release-log source for node %s: no such node in the current "
                            "committee", key)
        return sources

    def _fetch_logs(
        self, epochs: EpochHistory, history: MarketHistory, partial_bound: int = 0
    ) -> tuple[CheckRun, dict[str, list[LogEntry]]]:
        """Each node's log (every epoch's nodes, each address once) up to what it anchored
        (at most one release per (debit, version) on chain, and one partial per aggregate
        debit of the audited AggregateMarket) plus `max_tail` pending entries; a longer log
        is cut, with a warning."""
        run = CheckRun(NODES)
        logs: dict[str, list[LogEntry]] = {}
        bound = history.release_bound() + partial_bound
        sources = self._sources(epochs)
        current = epochs.current
        for address in epochs.addresses():
            node = epochs.label(address)
            source = sources.get(address.lower())
            anchored = history.anchored_count(address)
            if source is None and anchored == 0 and (
                current is None or current.index_of(address) is None
            ):
                run.warning("former_node_unreachable", f"node {node} ({address}) left the "
                            "committee, anchored no release and has no release-log source: "
                            "nothing of it to check", node=node, address=address)
                continue
            if source is None:
                run.violation("node_unreachable", f"node {node} ({address}): no release-log "
                              "source (URL)", node=node, address=address)
                run.count(False)
                continue
            limit = min(anchored, bound) + self.max_tail
            try:
                fetched = fetch_log(source, page_size=self.page_size, max_entries=limit)
            except ReleaseLogError as e:
                _too_many(run, node, anchored, bound, partial_bound)
                run.violation(e.kind, str(e), node=node)
                run.count(False)
                continue
            allowed = bound
            if not partial_bound:
                # no AggregateMarket audited: the partial releases the node anchored are
                # bounded by no chain count (they are warned about as unaudited)
                allowed += sum(isinstance(e, LoggedPartial) for e in fetched.entries[:anchored])
            _too_many(run, node, anchored, allowed, partial_bound)
            if fetched.cut:
                run.warning("log_cut", f"node {node}: read {limit} entries ({min(anchored, bound)} "
                            f"anchored + a pending tail of {self.max_tail}); the log goes on and "
                            "the rest was not checked", node=node)
            logs[address] = fetched.entries
            run.count(anchored <= allowed)
        return run, logs


def _too_many(run: CheckRun, node: int, anchored: int, bound: int, partial_bound: int) -> None:
    if anchored > bound:
        partials = ("and aggregate debits " if partial_bound else "")
        run.violation("anchored_too_many", f"node {node} anchored {anchored} releases; the "
                      f"chain's debits {partials}and versions allow at most {bound}", node=node)


def _check_foreign_anchors(history: MarketHistory, epochs: EpochHistory, run: CheckRun) -> None:
    """The contract lets only committee nodes anchor; an anchor by anyone else is a breach.
    A node of any finalized epoch may have anchored (its releases of that epoch)."""
    for address, anchors in history.anchors.items():
        if not epochs.is_node(address):
            first: ReleasesAnchored = anchors[0]
            run.violation("foreign_anchor", f"{first.node} anchored {len(anchors)} roots but "
                          "is not a node of any committee epoch", node=0)


def _unaudited_partials(
    logs: dict[str, list[LogEntry]], epochs: EpochHistory, run: CheckRun
) -> None:
    """Partial releases in a log, with no AggregateMarket to check them against: their
    anchoring was checked, nothing else; say so rather than pass them silently."""
    for address, entries in logs.items():
        count = sum(isinstance(e, LoggedPartial) for e in entries)
        if count:
            node = epochs.label(address)
            run.warning("partials_unaudited", f"node {node} logged {count} partial releases "
                        "of aggregate debits; audit with the AggregateMarket (--aggregator) "
                        "to check them", node=node)
