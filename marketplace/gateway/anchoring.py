"""Anchor Merkle roots of a node's release log on-chain, in batches, exactly once.

The log holds key releases and, on a node that aggregates, partial releases (aggregate
debits), numbered together. Items are the receipts' EIP-712 digests (they bind chain,
contract and every field); a partial release's item is prefixed with a kind byte
(protocol §13). Before anchoring, the node reconciles with the chain: an anchor sent just
before a crash is found in the `ReleasesAnchored` events and recorded, never sent twice.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, TypeAlias

from marketplace.chain.events import ReleasesAnchored
from marketplace.eip712 import ReleaseReceipt, digest
from marketplace.gateway.aggregate_state import PartialRelease
from marketplace.gateway.releaser import KeyReleaser
from marketplace.gateway.state import Anchor, GatewayState, Release
from marketplace.merkle import merkle_root, partial_item

if TYPE_CHECKING:
    from marketplace.gateway.aggregation import AggregationService

log = logging.getLogger(__name__)

#: One entry of a node's release log.
LogEntry: TypeAlias = Release | PartialRelease


class MissingAggregation(RuntimeError):
    """The log holds partial releases but this node runs without the AggregateMarket whose
    domain their receipts are signed in."""


def receipt_leaf(
    releaser: KeyReleaser, release: LogEntry, partials: AggregationService | None = None
) -> bytes:
    """The Merkle item of one log entry: its receipt's EIP-712 digest (a partial release's
    in the AggregateMarket's domain, after the kind byte 0x02)."""
    if isinstance(release, PartialRelease):
        if partials is None:
            raise MissingAggregation("a partial release in the log, and no aggregation")
        return partial_item(digest(partials.domain, partials.receipt_of(release)))
    receipt: ReleaseReceipt = releaser.receipt_of(release)
    return digest(releaser.domain, receipt)


def log_after(
    state: GatewayState, partials: AggregationService | None, after: int, limit: int
) -> list[LogEntry]:
    """The log's entries with seq > `after`, at most `limit`, in order: key and partial
    releases merged by their shared sequence numbers."""
    entries: list[LogEntry] = [*state.releases_after(after, limit)]
    if partials is not None:
        entries += partials.state.releases_after(after, limit)
    elif state.has_partials_after(after):
        # skipping them would leave gaps in the log and in the anchored batches
        raise MissingAggregation("this node's release log holds partial releases of "
                                 "aggregate debits: run it with its --aggregator")
    return sorted(entries, key=lambda e: e.seq)[:limit]


class Anchorer:
    """Batches unanchored releases into `anchorReleases(root, count)` transactions."""

    def __init__(self, releaser: KeyReleaser, *, min_batch: int = 1, max_batch: int = 1000) -> None:
        self.releaser = releaser
        self.state = releaser.state
        self.min_batch = min_batch
        self.max_batch = max_batch
        #: The node's aggregation, whose partial releases share the log (set by the service).
        self.partials: AggregationService | None = None
        self._lock = threading.Lock()

    def anchor_pending(self) -> Anchor | None:
        """Anchor the next batch if at least `min_batch` releases wait; else None."""
        with self._lock:
            self._reconcile()
            first = self.state.last_anchored_seq() + 1
            batch = log_after(self.state, self.partials, first - 1, self.max_batch)
            if len(batch) < self.min_batch or not batch:
                return None
            root = merkle_root([receipt_leaf(self.releaser, r, self.partials) for r in batch])
            node = self.releaser.account
            sent = self.releaser.market.anchor_releases(node, root, len(batch))
            anchor = Anchor(sent.value, first, first + len(batch) - 1, root, sent.tx_hash)
            self.state.record_anchor(anchor)
            log.info("anchored releases %d..%d as anchor %d", first, anchor.last_seq, sent.value)
            return anchor

    def _reconcile(self) -> None:
        """Record anchors that reached the chain but not our database (a crash between)."""
        market = self.releaser.market
        node = self.releaser.account.address
        on_chain = market.anchor_count(node)
        known = self.state.anchors()
        if on_chain <= len(known):
            return
        events = market.events().read(
            0, kinds=[ReleasesAnchored], indexed=[bytes(12) + bytes.fromhex(node[2:])],
            to_block=market.w3.eth.block_number,
        )
        for event in events:
            if not isinstance(event, ReleasesAnchored) or event.seq <= len(known):
                continue
            first = self.state.last_anchored_seq() + 1
            last = first + event.count - 1
            anchor = Anchor(event.seq, first, last, event.root, event.ref.tx_hash)
            self.state.record_anchor(anchor)
            log.warning("recovered anchor %d from the chain after a restart", event.seq)
