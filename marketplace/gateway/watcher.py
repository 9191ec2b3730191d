"""The gateway's chain watcher: the generic one (`marketplace.chain.watcher`: cursor,
confirmations, reorg rewind, exactly-once logs) indexing debits and versions into
`GatewayState`, handing fresh events to `on_event` so shares can be prepared ahead of
requests, and reading a debit ahead of the cursor on demand.
"""

from __future__ import annotations

from collections.abc import Callable

from marketplace.chain.events import DebitRequested, MarketEvent, VersionPublished
from marketplace.chain.market import MarketClient
from marketplace.chain.watcher import ChainWatcher as _GenericWatcher
from marketplace.gateway.state import GatewayState, IndexedDebit, IndexedVersion

IndexRow = IndexedDebit | IndexedVersion


class ChainWatcher(_GenericWatcher[IndexRow]):
    """Polls the chain into the gateway's index; `poll_once` is thread-safe."""

    def __init__(
        self,
        market: MarketClient,
        state: GatewayState,
        *,
        confirmations: int,
        on_event: Callable[[MarketEvent], None] | None = None,
        start_block: int = 0,
        max_block_range: int = 500,
    ) -> None:
        super().__init__(
            market, state, index_rows,
            confirmations=confirmations, on_event=on_event,
            start_block=start_block, max_block_range=max_block_range,
        )
        self.state: GatewayState = state

    def find_debit(self, debit_id: int, to_block: int) -> IndexedDebit | None:
        """The debit's `DebitRequested` log after the cursor, up to `to_block`, as an index
        row (None if there is none yet): a request for a debit the watcher has not reached
        is served without waiting for it (it may be busy with a flood of other logs)."""
        cursor = self.state.cursor()
        first = cursor.block_number + 1 if cursor else self.start_block
        if first > to_block:
            return None
        for event in self.reader.read(
            first, to_block, kinds=[DebitRequested], indexed=[debit_id.to_bytes(32, "big")]
        ):
            for row in index_rows(event):
                if isinstance(row, IndexedDebit) and row.debit_id == debit_id:
                    return row
        return None


def index_rows(event: MarketEvent) -> list[IndexRow]:
    """The gateway's index rows of one event (debits and versions; nothing else)."""
    if isinstance(event, DebitRequested):
        ref = event.ref
        return [
            IndexedDebit(
                event.debit_id, event.listing_id, event.buyer, event.buyer_key,
                ref.block_number, ref.block_hash,
            )
        ]
    if isinstance(event, VersionPublished):
        return [IndexedVersion(event.listing_id, event.version, event.cid, event.capsule)]
    return []
