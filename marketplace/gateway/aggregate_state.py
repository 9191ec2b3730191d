"""What a gateway remembers about aggregate debits (DESIGN §10), beside `GatewayState` in
the same database (SQLite or Postgres): its own cursor over the AggregateMarket's logs, the
debits, contributions and round posts indexed from them, the rounds this node posted, the
outcome it computed per debit (the sealed partial, never its plaintext), and its
append-only log of partial releases.

Everything derived from chain logs carries its block so a reorg rewinds it; released
partials are never rewound (they are served only at the confirmed head).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from marketplace.chain.watcher import (
    Cursor,
    LogKey,
    advance_cursor,
    read_cursor,
    read_seen_blocks,
    rewind_cursor,
    watcher_tables,
)
from marketplace.db import PostgresDatabase, SqliteDatabase, StateStoreError, Tx, first_time
from marketplace.eip712 import PartialRequest
from marketplace.gateway.state import next_log_seq

PREFIX = "agg_"
SCHEMA_VERSION = 1

SCHEMA = (
    *watcher_tables(PREFIX),
    """CREATE TABLE IF NOT EXISTS agg_debits (
        debit_id BIGINT PRIMARY KEY, cohort_id BIGINT NOT NULL, buyer TEXT NOT NULL,
        epsilon BIGINT NOT NULL, deadline BIGINT NOT NULL, epoch BIGINT NOT NULL,
        query_hash TEXT NOT NULL, query_uri TEXT NOT NULL, block_number BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS agg_contributions (
        debit_id BIGINT NOT NULL, owner TEXT NOT NULL, bundle_cid TEXT NOT NULL,
        block_number BIGINT NOT NULL, log_index BIGINT NOT NULL,
        PRIMARY KEY (debit_id, owner))""",
    """CREATE TABLE IF NOT EXISTS agg_rounds (
        debit_id BIGINT NOT NULL, round BIGINT NOT NULL, node TEXT NOT NULL,
        cid TEXT NOT NULL, block_number BIGINT NOT NULL, log_index BIGINT NOT NULL,
        PRIMARY KEY (debit_id, round, node, block_number, log_index))""",
    """CREATE TABLE IF NOT EXISTS agg_posted (
        debit_id BIGINT NOT NULL, round BIGINT NOT NULL, cid TEXT NOT NULL,
        block_number BIGINT NOT NULL, PRIMARY KEY (debit_id, round))""",
    """CREATE TABLE IF NOT EXISTS agg_outcomes (
        debit_id BIGINT PRIMARY KEY, status TEXT NOT NULL, reason TEXT NOT NULL,
        node BIGINT NOT NULL, epoch BIGINT NOT NULL, counted BIGINT NOT NULL,
        dealers TEXT NOT NULL, excluded TEXT NOT NULL, sealed_partial TEXT NOT NULL,
        block_number BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS agg_releases (
        seq BIGINT PRIMARY KEY, debit_id BIGINT NOT NULL UNIQUE, node BIGINT NOT NULL,
        epoch BIGINT NOT NULL, buyer TEXT NOT NULL, request TEXT NOT NULL,
        request_signature TEXT NOT NULL, request_digest TEXT NOT NULL,
        sealed_partial_hash TEXT NOT NULL, block BIGINT NOT NULL, signature TEXT NOT NULL)""",
)

#: Outcome states: the node's partial is sealed and waiting; fewer than k contributed; the
#: aggregation cannot finish (a bad query document, too few dealers or openings).
READY, TOO_FEW, FAILED = "ready", "too_few", "failed"


@dataclass(frozen=True, slots=True)
class DebitRow:
    """An `AggregateRequested` log."""

    debit_id: int
    cohort_id: int
    buyer: str
    epsilon: int
    deadline: int
    epoch: int
    query_hash: bytes
    query_uri: str


@dataclass(frozen=True, slots=True)
class ContributionRow:
    """A `ContributionRecorded` log (position in chain order by block and log index)."""

    debit_id: int
    owner: str
    bundle_cid: bytes
    log_index: int


@dataclass(frozen=True, slots=True)
class RoundRow:
    """An `AggregateRoundPosted` log."""

    debit_id: int
    round: int
    node: str
    cid: bytes
    log_index: int


IndexRow = DebitRow | ContributionRow | RoundRow


@dataclass(frozen=True, slots=True)
class IndexedDebit:
    row: DebitRow
    block_number: int


@dataclass(frozen=True, slots=True)
class Contribution:
    owner: str
    bundle_cid: bytes
    block_number: int


@dataclass(frozen=True, slots=True)
class RoundPost:
    round: int
    node: str
    cid: bytes
    block_number: int


@dataclass(frozen=True, slots=True)
class Excluded:
    owner: str
    reason: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What this node decided for a debit. `sealed_partial` is empty unless READY."""

    debit_id: int
    status: str
    reason: str
    node: int
    epoch: int
    counted: int
    dealers: tuple[int, ...]
    excluded: tuple[Excluded, ...]
    sealed_partial: bytes
    block_number: int


@dataclass(frozen=True, slots=True)
class PartialRelease:
    """One entry of the partial-release log (the signed receipt's fields and the request)."""

    seq: int
    debit_id: int
    node: int
    epoch: int
    buyer: str
    request: PartialRequest
    request_signature: bytes
    request_digest: bytes
    sealed_partial_hash: bytes
    block: int
    signature: bytes


class AggregateState:
    """Typed access to the `agg_` tables; each method is one transaction. Implements
    `marketplace.chain.watcher.WatcherState` for the AggregateMarket's logs."""

    def __init__(self, db: SqliteDatabase | PostgresDatabase) -> None:
        self.db = db
        with db.transaction() as tx:
            if "agg_schema_version" in tx.tables():
                row = tx.one("SELECT version FROM agg_schema_version WHERE id = 1")
                if row is not None and int(row[0]) != SCHEMA_VERSION:
                    raise StateStoreError(
                        f"the aggregate state was written with schema {row[0]}; this "
                        f"datadebit needs {SCHEMA_VERSION}: start with a new state database"
                    )
            for statement in SCHEMA:
                tx.execute(statement)
            tx.execute(
                "INSERT INTO agg_schema_version VALUES (1, ?) ON CONFLICT DO NOTHING",
                (SCHEMA_VERSION,),
            )

    # ---------------------------------------------------------------- watcher state

    def cursor(self) -> Cursor | None:
        with self.db.read() as tx:
            return read_cursor(tx, PREFIX)

    def seen_blocks(self) -> list[Cursor]:
        with self.db.read() as tx:
            return read_seen_blocks(tx, PREFIX)

    def rewind_to(self, ancestor: int) -> None:
        """Forget what blocks after `ancestor` gave (the release log stays)."""
        with self.db.transaction() as tx:
            for table in ("agg_processed_logs", "agg_debits", "agg_contributions", "agg_rounds",
                          "agg_posted", "agg_outcomes"):
                tx.execute(f"DELETE FROM {table} WHERE block_number > ?", (ancestor,))  # noqa: S608
            rewind_cursor(tx, ancestor, PREFIX)

    def apply_logs(
        self,
        chain_id: int,
        logs: Sequence[tuple[LogKey, Sequence[IndexRow]]],
        new_cursor: Cursor,
    ) -> list[LogKey]:
        fresh: list[LogKey] = []
        with self.db.transaction() as tx:
            for key, rows in logs:
                if not first_time(tx, "agg_processed_logs", chain_id, key):
                    continue
                for row in rows:
                    _insert(tx, row, key[3])
                fresh.append(key)
            advance_cursor(tx, new_cursor, PREFIX)
        return fresh

    # ---------------------------------------------------------------- index

    def debit(self, debit_id: int) -> IndexedDebit | None:
        with self.db.read() as tx:
            row = tx.one(f"SELECT {_DEBIT} FROM agg_debits WHERE debit_id = ?", (debit_id,))  # noqa: S608
        return _debit(row) if row else None

    def pending_debits(self) -> list[IndexedDebit]:
        """Debits this node has no outcome for yet, oldest first."""
        with self.db.read() as tx:
            rows = tx.all(
                f"SELECT {_DEBIT} FROM agg_debits WHERE debit_id NOT IN "  # noqa: S608
                "(SELECT debit_id FROM agg_outcomes) ORDER BY debit_id"
            )
        return [_debit(r) for r in rows]

    def contributions(self, debit_id: int) -> list[Contribution]:
        """The debit's contributions in chain order (the candidates)."""
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT owner, bundle_cid, block_number FROM agg_contributions "
                "WHERE debit_id = ? ORDER BY block_number, log_index",
                (debit_id,),
            )
        return [Contribution(str(o), bytes.fromhex(str(c)), int(b)) for o, c, b in rows]

    def rounds(self, debit_id: int, round_number: int) -> list[RoundPost]:
        """The debit's posts of one round in chain order (every post, not only the first)."""
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT round, node, cid, block_number FROM agg_rounds "
                "WHERE debit_id = ? AND round = ? ORDER BY block_number, log_index",
                (debit_id, round_number),
            )
        return [RoundPost(int(r), str(n), bytes.fromhex(str(c)), int(b)) for r, n, c, b in rows]

    # ---------------------------------------------------------------- this node's work

    def posted(self, debit_id: int, round_number: int) -> bytes | None:
        """The CID this node posted for the round (None if it did not)."""
        with self.db.read() as tx:
            row = tx.one(
                "SELECT cid FROM agg_posted WHERE debit_id = ? AND round = ?",
                (debit_id, round_number),
            )
        return bytes.fromhex(str(row[0])) if row else None

    def record_posted(self, debit_id: int, round_number: int, cid: bytes, block: int) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO agg_posted VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (debit_id, round_number, cid.hex(), block),
            )

    def outcome(self, debit_id: int) -> Outcome | None:
        with self.db.read() as tx:
            row = tx.one(f"SELECT {_OUTCOME} FROM agg_outcomes WHERE debit_id = ?", (debit_id,))  # noqa: S608
        return _outcome(row) if row else None

    def record_outcome(self, outcome: Outcome) -> None:
        """Keep the first outcome (a restarted node recomputing keeps what it may have
        served)."""
        with self.db.transaction(durable=True) as tx:
            tx.execute(
                "INSERT INTO agg_outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (outcome.debit_id, outcome.status, outcome.reason, outcome.node, outcome.epoch,
                 outcome.counted, json.dumps(list(outcome.dealers)),
                 json.dumps([[e.owner, e.reason] for e in outcome.excluded]),
                 outcome.sealed_partial.hex(), outcome.block_number),
            )

    # ---------------------------------------------------------------- release log

    def release_for(self, debit_id: int) -> PartialRelease | None:
        with self.db.read() as tx:
            row = tx.one(f"SELECT {_RELEASE} FROM agg_releases WHERE debit_id = ?", (debit_id,))  # noqa: S608
        return _release(row) if row else None

    def append_release(
        self, debit_id: int, build: Callable[[int], PartialRelease]
    ) -> PartialRelease:
        """Append the debit's release (signed by `build(seq)` inside the transaction), or
        return the one logged before. Durable before it is answered."""
        with self.db.transaction(durable=True) as tx:
            existing = tx.one(
                f"SELECT {_RELEASE} FROM agg_releases WHERE debit_id = ?", (debit_id,)  # noqa: S608
            )
            if existing:
                return _release(existing)
            # one numbering with the key releases: the node's one log (protocol §13)
            release = build(next_log_seq(tx))
            tx.execute(
                "INSERT INTO agg_releases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (release.seq, release.debit_id, release.node, release.epoch, release.buyer,
                 json.dumps(release.request.to_message(), separators=(",", ":")),
                 release.request_signature.hex(), release.request_digest.hex(),
                 release.sealed_partial_hash.hex(), release.block, release.signature.hex()),
            )
        return release

    def releases_after(self, seq: int, limit: int = 1000) -> list[PartialRelease]:
        with self.db.read() as tx:
            rows = tx.all(
                f"SELECT {_RELEASE} FROM agg_releases WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
                (seq, limit),
            )
        return [_release(r) for r in rows]


_DEBIT = (
    "debit_id, cohort_id, buyer, epsilon, deadline, epoch, query_hash, query_uri, block_number"
)
_OUTCOME = (
    "debit_id, status, reason, node, epoch, counted, dealers, excluded, sealed_partial, "
    "block_number"
)
_RELEASE = (
    "seq, debit_id, node, epoch, buyer, request, request_signature, request_digest, "
    "sealed_partial_hash, block, signature"
)


def _insert(tx: Tx, row: IndexRow, block_number: int) -> None:
    if isinstance(row, DebitRow):
        tx.execute(
            "INSERT INTO agg_debits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (row.debit_id, row.cohort_id, row.buyer, row.epsilon, row.deadline, row.epoch,
             row.query_hash.hex(), row.query_uri, block_number),
        )
    elif isinstance(row, ContributionRow):
        tx.execute(
            "INSERT INTO agg_contributions VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (row.debit_id, row.owner.lower(), row.bundle_cid.hex(), block_number, row.log_index),
        )
    else:
        tx.execute(
            "INSERT INTO agg_rounds VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (row.debit_id, row.round, row.node.lower(), row.cid.hex(), block_number,
             row.log_index),
        )


def _debit(row: tuple[object, ...]) -> IndexedDebit:
    d, cohort, buyer, eps, deadline, epoch, qhash, uri, block = row
    return IndexedDebit(
        DebitRow(int(d), int(cohort), str(buyer), int(eps), int(deadline), int(epoch),  # type: ignore[call-overload]
                 bytes.fromhex(str(qhash)), str(uri)),
        int(block),  # type: ignore[call-overload]
    )


def _outcome(row: tuple[object, ...]) -> Outcome:
    d, status, reason, node, epoch, counted, dealers, excluded, sealed, block = row
    return Outcome(
        int(d), str(status), str(reason), int(node), int(epoch), int(counted),  # type: ignore[call-overload]
        tuple(int(i) for i in json.loads(str(dealers))),
        tuple(Excluded(str(o), str(r)) for o, r in json.loads(str(excluded))),
        bytes.fromhex(str(sealed)), int(block),  # type: ignore[call-overload]
    )


def _release(row: tuple[object, ...]) -> PartialRelease:
    seq, d, node, epoch, buyer, request, req_sig, req_digest, sealed_hash, block, sig = row
    return PartialRelease(
        seq=int(seq), debit_id=int(d), node=int(node), epoch=int(epoch),  # type: ignore[call-overload]
        buyer=str(buyer), request=PartialRequest.from_message(json.loads(str(request))),
        request_signature=bytes.fromhex(str(req_sig)),
        request_digest=bytes.fromhex(str(req_digest)),
        sealed_partial_hash=bytes.fromhex(str(sealed_hash)),
        block=int(block), signature=bytes.fromhex(str(sig)),  # type: ignore[call-overload]
    )
