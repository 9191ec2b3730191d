"""A gateway node assembled: chain client, state, watcher, releaser, anchorer, and the
background loop that keeps the index current and anchors releases in batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from marketplace.chain.market import MarketClient
from marketplace.chain.types import Committee
from marketplace.committee import NodeKey
from marketplace.gateway.anchoring import Anchorer
from marketplace.gateway.ceremony_runner import CeremonyRunner
from marketplace.gateway.releaser import PREPARE_QUEUE_SIZE, KeyReleaser
from marketplace.gateway.shares import EpochShares, ShareBook
from marketplace.gateway.state import GatewayState
from marketplace.gateway.watcher import ChainWatcher

if TYPE_CHECKING:  # numpy and OpenDP are imported only by nodes that aggregate
    from marketplace.gateway.aggregation import AggregationService

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timing:
    """How often the background loop works, and how fresh the confirmed head must be."""

    poll_interval: float = 1.0
    anchor_interval: float = 30.0
    anchor_min_batch: int = 1
    head_ttl: float = 0.0


@dataclass
class GatewayService:
    """Everything one node runs; `tick()` does one round of background work."""

    market: MarketClient
    state: GatewayState
    node: NodeKey
    confirmations: int = 0
    start_block: int = 0
    timing: Timing = field(default_factory=Timing)
    #: Gateway URLs by node address (lower case), for `GET /v1/committee`.
    node_urls: dict[str, str] = field(default_factory=dict)
    #: The clock request expiries are judged by (a development chain that travels in time
    #: passes its own, see `LocalNetwork`).
    now: Callable[[], float] = time.time
    #: Approve every proposed reshare roster on chain (an operator's policy; off by
    #: default: a node never approves by itself unless its operator said so).
    approve_rosters: bool = False
    #: Aggregate debits (DESIGN §10): rounds and partials of an AggregateMarket; None when
    #: the node serves none (`gateway serve` without `--aggregator`).
    aggregation: AggregationService | None = None

    def __post_init__(self) -> None:
        self.watcher = ChainWatcher(
            self.market, self.state, confirmations=self.confirmations, start_block=self.start_block
        )
        self.share_book = ShareBook(self.state, self.node.account)
        if self.node.share is not None and not self.share_book.epochs():
            # the trusted dealer's development committee: its share is epoch 1's
            self.share_book.put(1, 1, self.node.share)
        self.shares = EpochShares(
            self.share_book, lambda block: self.market.current_epoch(block=block)
        )
        self.releaser = KeyReleaser(
            self.market, self.state, self.watcher, self.node.account, self.shares,
            head_ttl=self.timing.head_ttl, now=self.now,
        )
        self.ceremonies = CeremonyRunner(
            self.market, self.share_book, self.shares, self.node.account,
            confirmations=self.confirmations, now=self.now, approve_rosters=self.approve_rosters,
        )
        self.watcher.on_event = self.releaser.on_event
        self.anchorer = Anchorer(self.releaser, min_batch=self.timing.anchor_min_batch)
        self.anchorer.partials = self.aggregation  # partial releases share the log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def committee(self) -> Committee:
        return self.market.committee()

    def node_index(self) -> int:
        """This node's index in the newest epoch it holds a share of (0: none yet)."""
        latest = self.shares.latest()
        return 0 if latest is None else int(latest.index)

    def epoch_held(self) -> int:
        """The newest committee epoch this node holds a share of (0: none yet)."""
        latest = self.shares.latest()
        return 0 if latest is None else latest.epoch

    def committee_document(self) -> dict[str, Any]:
        """The public committee file (DESIGN §5), read from the contract."""
        committee = self.committee()
        return {
            "threshold": committee.threshold,
            "committeeKey": "0x" + committee.committee_key.hex(),
            "nodes": [
                {
                    "index": i,
                    "address": address,
                    "shareKey": "0x" + key.hex(),
                    "url": self.node_urls.get(address.lower(), ""),
                }
                for i, (address, key) in enumerate(
                    zip(committee.nodes, committee.share_keys, strict=True), start=1
                )
            ],
        }

    def tick(self, *, anchor: bool = True) -> None:
        """Catch up with the chain, prepare the shares that queued, then anchor pending
        releases."""
        self.watcher.catch_up()
        self.ceremonies.tick()
        if self.aggregation is not None:
            self.aggregation.tick()
        self.releaser.prepare_pending(limit=PREPARE_QUEUE_SIZE)  # all that queued
        if anchor:
            self.anchorer.anchor_pending()

    # ------------------------------------------------------------ background loop

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gateway-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        next_anchor = 0.0
        clock = 0.0
        while not self._stop.is_set():
            try:
                self.watcher.catch_up()
                self.ceremonies.tick()
                if self.aggregation is not None:
                    self.aggregation.tick()
                # outside the watcher's lock, paced: a request never waits for
                # ahead-of-time work
                self.releaser.prepare_pending()
                if clock >= next_anchor:
                    self.anchorer.anchor_pending()
                    next_anchor = clock + self.timing.anchor_interval
            except Exception as e:  # keep serving; the next round retries
                log.warning("background round failed: %s", e)
            self._stop.wait(self.timing.poll_interval)
            clock += self.timing.poll_interval
