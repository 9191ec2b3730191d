"""Anchor Merkle roots of a node's release log on-chain, in batches, exactly once.

Leaves are the receipts' EIP-712 digests (they bind chain, market and every field).
Before anchoring, the node reconciles with the chain: an anchor sent just before a crash
is found in the `ReleasesAnchored` events and recorded, never sent twice.
"""

from __future__ import annotations

import logging
import threading

from marketplace.chain.events import ReleasesAnchored
from marketplace.eip712 import ReleaseReceipt, digest
from marketplace.gateway.releaser import KeyReleaser
from marketplace.gateway.state import Anchor, Release
from marketplace.merkle import merkle_root

log = logging.getLogger(__name__)


def receipt_leaf(releaser: KeyReleaser, release: Release) -> bytes:
    """The Merkle leaf of one release: the EIP-712 digest of its receipt."""
    receipt: ReleaseReceipt = releaser.receipt_of(release)
    return digest(releaser.domain, receipt)


class Anchorer:
    """Batches unanchored releases into `anchorReleases(root, count)` transactions."""

    def __init__(self, releaser: KeyReleaser, *, min_batch: int = 1, max_batch: int = 1000) -> None:
        self.releaser = releaser
        self.state = releaser.state
        self.min_batch = min_batch
        self.max_batch = max_batch
        self._lock = threading.Lock()

    def anchor_pending(self) -> Anchor | None:
        """Anchor the next batch if at least `min_batch` releases wait; else None."""
        with self._lock:
            self._reconcile()
            first = self.state.last_anchored_seq() + 1
            batch = self.state.releases_after(first - 1, limit=self.max_batch)
            if len(batch) < self.min_batch or not batch:
                return None
            root = merkle_root([receipt_leaf(self.releaser, r) for r in batch])
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
