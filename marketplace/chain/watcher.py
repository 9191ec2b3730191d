"""Follows the market's events up to the confirmed head and feeds them to an index.

Each poll: detect a reorg by comparing the stored cursor's block hash with the chain's
(rewinding to the newest block both still agree on), read the next bounded range of
logs from the market's own address, and record each log exactly once by (chainId,
blockHash, txHash, logIndex) together with the rows it yields, in the index's own state
(`WatcherState`). The gateway and the catalog each keep such a state; this loop is
written once for both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeAlias, TypeVar

from web3.exceptions import BlockNotFound

from marketplace.chain.errors import ChainUnavailable
from marketplace.chain.events import MarketEvent
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import endpoint_name

if TYPE_CHECKING:
    from marketplace.db import Tx

log = logging.getLogger(__name__)

#: A log's identity and place: (block_hash, tx_hash, log_index, block_number).
LogKey: TypeAlias = tuple[str, str, int, int]

RowT = TypeVar("RowT")
RowT_contra = TypeVar("RowT_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class Cursor:
    block_number: int
    block_hash: str


class WatcherState(Protocol[RowT_contra]):
    """What the watcher needs from an index's state; each call is its own transaction."""

    def cursor(self) -> Cursor | None:
        """The last block fully processed, or None before the first poll."""
        ...

    def seen_blocks(self) -> list[Cursor]:
        """Recently processed blocks, newest first (for finding a reorg's ancestor)."""
        ...

    def rewind_to(self, ancestor: int) -> None:
        """Forget everything derived from blocks after `ancestor` (a reorg replaced them)."""
        ...

    def apply_logs(
        self,
        chain_id: int,
        logs: Sequence[tuple[LogKey, Sequence[RowT_contra]]],
        new_cursor: Cursor,
    ) -> list[LogKey]:
        """Record each log not processed before with its rows, advance the cursor and
        remember its block; return the logs that were new."""
        ...


#: Recent block hashes a watcher's state keeps, to find a reorg's common ancestor.
SEEN_BLOCKS_KEPT = 256


# The bookkeeping every `WatcherState` on the shared database layer keeps in the same
# tables (`<prefix>cursor`, `<prefix>seen_blocks`; `prefix` is a constant of the store).


def watcher_tables(prefix: str = "") -> tuple[str, ...]:
    """The tables every store a watcher feeds keeps, named with its `prefix`: its layout
    version, the cursor, the recent blocks' hashes (reorg detection) and the logs already
    applied (each once)."""
    return (
        f"""CREATE TABLE IF NOT EXISTS {prefix}schema_version (
        id INTEGER PRIMARY KEY, version BIGINT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {prefix}cursor (
        id INTEGER PRIMARY KEY, block_number BIGINT NOT NULL, block_hash TEXT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {prefix}seen_blocks (
        block_number BIGINT PRIMARY KEY, block_hash TEXT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS {prefix}processed_logs (
        chain_id BIGINT NOT NULL, block_hash TEXT NOT NULL, tx_hash TEXT NOT NULL,
        log_index BIGINT NOT NULL, block_number BIGINT NOT NULL,
        PRIMARY KEY (chain_id, block_hash, tx_hash, log_index))""",
    )


def read_cursor(tx: Tx, prefix: str = "") -> Cursor | None:
    row = tx.one(f"SELECT block_number, block_hash FROM {prefix}cursor WHERE id = 1")  # noqa: S608
    return Cursor(row[0], row[1]) if row else None


def read_seen_blocks(tx: Tx, prefix: str = "") -> list[Cursor]:
    """Recently processed blocks, newest first."""
    rows = tx.all(
        f"SELECT block_number, block_hash FROM {prefix}seen_blocks "  # noqa: S608
        "ORDER BY block_number DESC"
    )
    return [Cursor(n, h) for n, h in rows]


def set_cursor(tx: Tx, cursor: Cursor | None, prefix: str = "") -> None:
    tx.execute(f"DELETE FROM {prefix}cursor")  # noqa: S608
    if cursor is not None:
        tx.execute(
            f"INSERT INTO {prefix}cursor VALUES (1, ?, ?)",  # noqa: S608
            (cursor.block_number, cursor.block_hash),
        )


def advance_cursor(tx: Tx, cursor: Cursor, prefix: str = "") -> None:
    """Move the cursor to `cursor`, remember its block, forget blocks too old to matter."""
    set_cursor(tx, cursor, prefix)
    tx.execute(
        f"INSERT INTO {prefix}seen_blocks VALUES (?, ?) ON CONFLICT DO NOTHING",  # noqa: S608
        (cursor.block_number, cursor.block_hash),
    )
    tx.execute(
        f"DELETE FROM {prefix}seen_blocks WHERE block_number < ?",  # noqa: S608
        (cursor.block_number - SEEN_BLOCKS_KEPT,),
    )


def rewind_cursor(tx: Tx, ancestor: int, prefix: str = "") -> None:
    """Forget blocks after `ancestor` and put the cursor back on it (none if unknown)."""
    tx.execute(f"DELETE FROM {prefix}seen_blocks WHERE block_number > ?", (ancestor,))  # noqa: S608
    row = tx.one(
        f"SELECT block_hash FROM {prefix}seen_blocks WHERE block_number = ?",  # noqa: S608
        (ancestor,),
    )
    set_cursor(tx, None if row is None else Cursor(ancestor, row[0]), prefix)


def log_key(event: MarketEvent) -> LogKey:
    ref = event.ref
    return (ref.block_hash, ref.tx_hash, ref.log_index, ref.block_number)


class ChainWatcher(Generic[RowT]):
    """Polls the chain; `poll_once` is safe to call from any thread at any time.

    `rows(event)` turns an event into the rows the state records with it (none for the
    events the index ignores); `on_event` hears each new event once, after it is recorded.
    """

    def __init__(
        self,
        market: MarketClient,
        state: WatcherState[RowT],
        rows: Callable[[MarketEvent], Sequence[RowT]],
        *,
        confirmations: int,
        on_event: Callable[[MarketEvent], None] | None = None,
        start_block: int = 0,
        max_block_range: int = 500,
    ) -> None:
        self.market = market
        self.state = state
        self.rows = rows
        self.reader = market.events(confirmations=confirmations, max_block_range=max_block_range)
        self.on_event = on_event
        self.start_block = start_block
        self.max_block_range = max_block_range
        self._lock = threading.Lock()

    def poll_once(self) -> int:
        """Process the next batch of confirmed logs; returns how many were new."""
        with self._lock:
            return self._poll()

    def _poll(self) -> int:
        head = self.reader.confirmed_head()
        cursor = self._cursor_after_reorg_check()
        first = cursor.block_number + 1 if cursor else self.start_block
        if first > head:
            return 0
        last = min(head, first + self.max_block_range - 1)
        block_hash = self.block_hash(last)
        if block_hash is None:  # reorganised away just now; the next poll sees the new chain
            return 0
        events = self.reader.read(first, last)
        batch = [(log_key(e), self.rows(e)) for e in events]
        fresh = set(self.state.apply_logs(self.market.chain_id, batch, Cursor(last, block_hash)))
        new_events = [e for e in events if log_key(e) in fresh]
        for event in new_events:
            self._notify(event)
        if new_events:
            log.info("indexed %d new market events up to block %d", len(new_events), last)
        return len(new_events)

    def catch_up(self, max_rounds: int = 1000) -> int:
        """Poll until the confirmed head is reached; returns the number of new events."""
        total = 0
        for _ in range(max_rounds):
            # poll even when the cursor is at (or past) the head: the poll's reorg check
            # is what notices a chain replaced at the same height or a shorter one
            total += self.poll_once()
            cursor = self.state.cursor()
            if cursor is not None and cursor.block_number >= self.reader.confirmed_head():
                break
        return total

    def _cursor_after_reorg_check(self) -> Cursor | None:
        cursor = self.state.cursor()
        if cursor is None or self.block_hash(cursor.block_number) == cursor.block_hash:
            return cursor
        ancestor = self.start_block - 1
        for seen in self.state.seen_blocks():
            if self.block_hash(seen.block_number) == seen.block_hash:
                ancestor = seen.block_number
                break
        log.warning(
            "reorg: block %d changed; rewinding the index to block %d",
            cursor.block_number,
            ancestor,
        )
        self.state.rewind_to(ancestor)
        return self.state.cursor()

    def block_hash(self, block_number: int) -> str | None:
        """The hash of the chain's block at `block_number`; None if it has no such block
        (a reorg to a shorter chain removed it)."""
        try:
            block = self.market.w3.eth.get_block(block_number)
        except BlockNotFound:
            return None
        except OSError as e:
            raise ChainUnavailable(endpoint_name(self.market.w3), type(e).__name__) from e
        return "0x" + bytes(block["hash"]).hex()

    def _notify(self, event: MarketEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a failed hook must not stop indexing
            log.exception("handling %s failed", type(event).__name__)
