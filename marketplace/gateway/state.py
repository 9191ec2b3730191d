"""What a gateway remembers: its chain cursor, the index it builds from events, the
nonces it has seen, its prepared shares, and its append-only release log with anchors.

Everything derived from chain logs carries the block it came from, so a reorg can
rewind it; the release log is never rewound (releases happen only at the confirmed
head, below the reorg depth the node is configured for).
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
from marketplace.eip712 import KeyRequest

#: The layout below. A state file written by an older layout is refused, not misread.
SCHEMA_VERSION = 3

SCHEMA = (
    *watcher_tables(),
    """CREATE TABLE IF NOT EXISTS debits (
        debit_id BIGINT PRIMARY KEY, listing_id BIGINT NOT NULL, buyer TEXT NOT NULL,
        buyer_key TEXT NOT NULL, block_number BIGINT NOT NULL, block_hash TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS versions (
        listing_id BIGINT NOT NULL, version BIGINT NOT NULL, cid TEXT NOT NULL,
        capsule TEXT NOT NULL, block_number BIGINT NOT NULL,
        PRIMARY KEY (listing_id, version))""",
    """CREATE TABLE IF NOT EXISTS prepared (
        debit_id BIGINT NOT NULL, version BIGINT NOT NULL, buyer_key TEXT NOT NULL,
        epoch BIGINT NOT NULL, sealed_share TEXT NOT NULL, block_number BIGINT NOT NULL,
        PRIMARY KEY (debit_id, version, buyer_key, epoch))""",
    "CREATE INDEX IF NOT EXISTS prepared_by_block ON prepared (block_number)",
    """CREATE TABLE IF NOT EXISTS nonces (
        signer TEXT NOT NULL, nonce TEXT NOT NULL, expiry BIGINT NOT NULL,
        digest TEXT NOT NULL, PRIMARY KEY (signer, nonce))""",
    "CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces (expiry)",
    """CREATE TABLE IF NOT EXISTS releases (
        seq BIGINT PRIMARY KEY, debit_id BIGINT NOT NULL, version BIGINT NOT NULL,
        node BIGINT NOT NULL, epoch BIGINT NOT NULL, buyer TEXT NOT NULL,
        buyer_key_hash TEXT NOT NULL, request TEXT NOT NULL, request_signature TEXT NOT NULL,
        request_digest TEXT NOT NULL, sealed_share TEXT NOT NULL,
        sealed_share_hash TEXT NOT NULL, block BIGINT NOT NULL, signature TEXT NOT NULL,
        UNIQUE (debit_id, version, buyer_key_hash))""",
    """CREATE TABLE IF NOT EXISTS anchors (
        anchor_seq BIGINT PRIMARY KEY, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL,
        root TEXT NOT NULL, tx_hash TEXT NOT NULL)""",
)

#: Logs recorded per transaction while indexing (a request waits for at most one).
LOGS_PER_TRANSACTION = 64
#: Expired nonces are deleted at most this often (seconds of request time), not on every
#: request: a nonce past its expiry can never match (expired requests are refused first).
NONCE_PRUNE_INTERVAL = 10


@dataclass(frozen=True, slots=True)
class IndexedDebit:
    """A `DebitRequested` log as indexed, with the block it came from: a first release
    checks that block is still canonical (a reorg can give the id to another buyer)."""

    debit_id: int
    listing_id: int
    buyer: str
    buyer_key: bytes
    block_number: int = -1
    block_hash: str = ""


@dataclass(frozen=True, slots=True)
class IndexedVersion:
    listing_id: int
    version: int
    cid: bytes
    capsule: bytes


@dataclass(frozen=True, slots=True)
class Release:
    """One entry of the append-only release log: a signed receipt, what it covers, and
    the buyer-signed request that asked for it (kept for auditors)."""

    seq: int
    debit_id: int
    version: int
    node: int
    epoch: int
    buyer: str
    buyer_key_hash: bytes
    request: KeyRequest
    request_signature: bytes
    request_digest: bytes
    sealed_share: bytes
    sealed_share_hash: bytes
    block: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class Anchor:
    anchor_seq: int
    first_seq: int
    last_seq: int
    root: bytes
    tx_hash: str


class GatewayState:
    """Typed access to the gateway's tables; each method is one transaction. Implements
    `marketplace.chain.watcher.WatcherState` for debits and versions."""

    def __init__(self, db: SqliteDatabase | PostgresDatabase) -> None:
        self.db = db
        self._next_nonce_prune = 0
        with db.transaction() as tx:
            _check_schema_version(tx)
            for statement in SCHEMA:
                tx.execute(statement)
            tx.execute(
                "INSERT INTO schema_version VALUES (1, ?) ON CONFLICT DO NOTHING",
                (SCHEMA_VERSION,),
            )

    # ---------------------------------------------------------------- cursor and reorgs

    def cursor(self) -> Cursor | None:
        with self.db.read() as tx:
            return read_cursor(tx)

    def seen_blocks(self) -> list[Cursor]:
        """Recently processed blocks, newest first."""
        with self.db.read() as tx:
            return read_seen_blocks(tx)

    def rewind_to(self, ancestor: int) -> None:
        """Forget everything derived from blocks after `ancestor` (a reorg replaced them)."""
        with self.db.transaction() as tx:
            for table in ("processed_logs", "debits", "versions", "prepared"):
                tx.execute(f"DELETE FROM {table} WHERE block_number > ?", (ancestor,))  # noqa: S608
            rewind_cursor(tx, ancestor)

    # ---------------------------------------------------------------- event index

    def apply_logs(
        self,
        chain_id: int,
        logs: Sequence[tuple[LogKey, Sequence[IndexedDebit | IndexedVersion]]],
        new_cursor: Cursor,
    ) -> list[LogKey]:
        """Record each log once, with the index rows it yields, and advance the cursor.

        `logs` pairs each log's (block_hash, tx_hash, log_index, block_number) with the
        rows it produced. Returns the logs that were new (not processed before).
        """
        fresh: list[LogKey] = []
        # short transactions: requests share the database and must not wait for a whole
        # range of a flood; a crash between them leaves logs recorded and the cursor
        # behind, and the next poll skips what was recorded
        chunks = [logs[i:i + LOGS_PER_TRANSACTION]
                  for i in range(0, len(logs), LOGS_PER_TRANSACTION)] or [[]]
        for chunk in chunks[:-1]:
            with self.db.transaction() as tx:
                fresh += _record_logs(tx, chain_id, chunk)
        with self.db.transaction() as tx:
            fresh += _record_logs(tx, chain_id, chunks[-1])
            advance_cursor(tx, new_cursor)
        return fresh

    def debit(self, debit_id: int) -> IndexedDebit | None:
        with self.db.read() as tx:
            row = tx.one(f"SELECT {_DEBIT_COLUMNS} FROM debits WHERE debit_id = ?", (debit_id,))  # noqa: S608
        return _debit(row) if row else None

    def debits_of_listing(
        self, listing_id: int, *, newest: int | None = None
    ) -> list[IndexedDebit]:
        """The listing's indexed debits, newest first; at most `newest` of them if given."""
        with self.db.read() as tx:
            rows = tx.all(
                f"SELECT {_DEBIT_COLUMNS} FROM debits WHERE listing_id = ? "  # noqa: S608
                "ORDER BY debit_id DESC LIMIT ?",
                (listing_id, -1 if newest is None else newest),
            )
        return [_debit(r) for r in rows]

    def version(self, listing_id: int, version: int) -> IndexedVersion | None:
        with self.db.read() as tx:
            row = tx.one(
                "SELECT listing_id, version, cid, capsule FROM versions "
                "WHERE listing_id = ? AND version = ?",
                (listing_id, version),
            )
        return _version(row) if row else None

    def versions_of_listing(
        self, listing_id: int, *, newest: int | None = None
    ) -> list[IndexedVersion]:
        """The listing's indexed versions, newest first; at most `newest` of them if given."""
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT listing_id, version, cid, capsule FROM versions WHERE listing_id = ? "
                "ORDER BY version DESC LIMIT ?",
                (listing_id, -1 if newest is None else newest),
            )
        return [_version(r) for r in rows]

    def remember(self, row: IndexedDebit | IndexedVersion, block_number: int) -> None:
        """Index a row fetched on demand, ahead of the watcher. When the watcher reaches
        its block it writes the row again from the log it processes (a reorg in between
        cannot leave this one behind; a first release re-checks it against the chain)."""
        with self.db.transaction() as tx:
            _insert_index_row(tx, row, block_number)

    # ---------------------------------------------------------------- prepared shares

    def prepared(
        self, debit_id: int, version: int, buyer_key: bytes | None = None,
        *, epoch: int | None = None,
    ) -> bytes | None:
        """The share prepared for (debit, version) sealed to `buyer_key` with the share of
        committee `epoch` (None: whichever key or epoch it was prepared for)."""
        sql = "SELECT sealed_share FROM prepared WHERE debit_id = ? AND version = ?"
        params: list[object] = [debit_id, version]
        if buyer_key is not None:
            sql += " AND buyer_key = ?"
            params.append(buyer_key.hex())
        if epoch is not None:
            sql += " AND epoch = ?"
            params.append(epoch)
        with self.db.read() as tx:
            row = tx.one(sql, params)
        return bytes.fromhex(row[0]) if row else None

    def store_prepared(
        self, debit_id: int, version: int, buyer_key: bytes, sealed: bytes, block_number: int,
        *, epoch: int,
    ) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO prepared VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (debit_id, version, buyer_key.hex(), epoch, sealed.hex(), block_number),
            )

    def prune_prepared(self, before_block: int, keep: int) -> int:
        """Drop prepared shares made for events before `before_block`, then all but the
        `keep` newest; returns how many remain. A dropped share is made again on request."""
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM prepared WHERE block_number < ?", (before_block,))
            row = tx.one("SELECT COUNT(*) FROM prepared")
            count = int(row[0]) if row else 0
            if count > keep:
                tx.execute(
                    "DELETE FROM prepared WHERE block_number <= (SELECT block_number FROM "
                    "prepared ORDER BY block_number DESC LIMIT 1 OFFSET ?)",
                    (keep,),
                )
                row = tx.one("SELECT COUNT(*) FROM prepared")
                count = int(row[0]) if row else 0
        return count

    # ---------------------------------------------------------------- nonces

    def use_nonce(self, signer: str, nonce: bytes, expiry: int, now: int, digest: bytes) -> bool:
        """Record a request nonce with the digest of the request that carried it; False
        when this signer used it before for a *different* request (a replay). The same
        request seen again is allowed: it is answered again (idempotent), so whoever
        relays a buyer's request to a node first cannot make the buyer's own copy fail."""
        with self.db.transaction() as tx:
            if now >= self._next_nonce_prune:
                tx.execute("DELETE FROM nonces WHERE expiry < ?", (now,))
                self._next_nonce_prune = now + NONCE_PRUNE_INTERVAL
            row = tx.one(
                "SELECT digest FROM nonces WHERE signer = ? AND nonce = ?",
                (signer.lower(), nonce.hex()),
            )
            if row is not None:
                return bool(row[0] == digest.hex())
            tx.execute(
                "INSERT INTO nonces VALUES (?, ?, ?, ?)",
                (signer.lower(), nonce.hex(), expiry, digest.hex()),
            )
        return True

    # ---------------------------------------------------------------- release log

    def release_for(
        self, debit_id: int, version: int, buyer_key_hash: bytes | None = None
    ) -> Release | None:
        """The release of (debit, version) to the buyer key with this hash (None: the
        first release of (debit, version) to any key)."""
        with self.db.read() as tx:
            row = _release_row(tx, debit_id, version, buyer_key_hash)
        return _release(row) if row else None

    def append_release(
        self, debit_id: int, version: int, buyer_key_hash: bytes, build: Callable[[int], Release]
    ) -> Release:
        """Append the next release, or return the existing one for (debit, version, key).

        `build(seq)` makes (and signs) the release once its sequence number is known,
        inside the same transaction, so two requests cannot both append. The commit is
        durable: a release is answered only once it would survive a power cut.
        """
        with self.db.transaction(durable=True) as tx:
            existing = _release_row(tx, debit_id, version, buyer_key_hash)
            if existing:
                return _release(existing)
            release = build(next_log_seq(tx))
            tx.execute(
                "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (release.seq, release.debit_id, release.version, release.node, release.epoch,
                 release.buyer, release.buyer_key_hash.hex(),
                 json.dumps(release.request.to_message(), separators=(",", ":")),
                 release.request_signature.hex(), release.request_digest.hex(),
                 release.sealed_share.hex(), release.sealed_share_hash.hex(), release.block,
                 release.signature.hex()),
            )
            # the prepared share has served its purpose
            tx.execute(
                "DELETE FROM prepared WHERE debit_id = ? AND version = ?", (debit_id, version)
            )
        return release

    def releases_after(self, seq: int, limit: int = 1000) -> list[Release]:
        with self.db.read() as tx:
            rows = tx.all(
                f"SELECT {_RELEASE_COLUMNS} FROM releases WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
                (seq, limit),
            )
        return [_release(r) for r in rows]

    # ---------------------------------------------------------------- anchors

    def anchors(self) -> list[Anchor]:
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT anchor_seq, first_seq, last_seq, root, tx_hash FROM anchors "
                "ORDER BY anchor_seq"
            )
        return [Anchor(r[0], r[1], r[2], bytes.fromhex(r[3]), r[4]) for r in rows]

    def anchors_covering(self, first_seq: int, last_seq: int) -> list[Anchor]:
        """The anchors whose entries overlap `first_seq..last_seq`, in order."""
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT anchor_seq, first_seq, last_seq, root, tx_hash FROM anchors "
                "WHERE last_seq >= ? AND first_seq <= ? ORDER BY anchor_seq",
                (first_seq, last_seq),
            )
        return [Anchor(r[0], r[1], r[2], bytes.fromhex(r[3]), r[4]) for r in rows]

    def last_anchored_seq(self) -> int:
        with self.db.read() as tx:
            row = tx.one("SELECT COALESCE(MAX(last_seq), 0) FROM anchors")
        return int(row[0]) if row else 0

    def record_anchor(self, anchor: Anchor) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO anchors VALUES (?, ?, ?, ?, ?)",
                (anchor.anchor_seq, anchor.first_seq, anchor.last_seq, anchor.root.hex(),
                 anchor.tx_hash),
            )

    # ---------------------------------------------------------------- metrics (read-only)

    def prepared_count(self) -> int:
        """How many sealed shares wait prepared ahead of requests (for `/metrics`)."""
        with self.db.read() as tx:
            row = tx.one("SELECT COUNT(*) FROM prepared")
        return int(row[0]) if row else 0

    def last_release_seq(self) -> int:
        """The newest log entry's sequence number (a key or a partial release), 0 before
        the first (for `/metrics`)."""
        with self.db.read() as tx:
            return next_log_seq(tx) - 1

    def has_partials_after(self, seq: int) -> bool:
        """Whether the log holds a partial release after `seq`: a node restarted without its
        AggregateMarket can neither serve nor anchor those (their domain is that contract)."""
        with self.db.read() as tx:
            if PARTIAL_RELEASES_TABLE not in tx.tables():
                return False
            row = tx.one(f"SELECT 1 FROM {PARTIAL_RELEASES_TABLE} WHERE seq > ? LIMIT 1", (seq,))  # noqa: S608
        return row is not None


#: The partial releases' table (marketplace/gateway/aggregate_state.py): its entries share
#: the release log's sequence numbers, so a node has one log and one anchor sequence.
PARTIAL_RELEASES_TABLE = "agg_releases"


def next_log_seq(tx: Tx) -> int:
    """The next sequence number of the node's release log, counted over key releases and
    partial releases alike (protocol §13; state transactions run one at a time, so two
    appends cannot take the same number)."""
    tables = tx.tables()
    last = 0
    for table in ("releases", PARTIAL_RELEASES_TABLE):
        if table in tables:
            row = tx.one(f"SELECT COALESCE(MAX(seq), 0) FROM {table}")  # noqa: S608
            last = max(last, int(row[0]) if row else 0)
    return last + 1


_RELEASE_COLUMNS = (
    "seq, debit_id, version, node, epoch, buyer, buyer_key_hash, request, request_signature, "
    "request_digest, sealed_share, sealed_share_hash, block, signature"
)
_DEBIT_COLUMNS = "debit_id, listing_id, buyer, buyer_key, block_number, block_hash"


def _check_schema_version(tx: Tx) -> None:
    """Refuse a state database written by another layout (before the schema_version
    table, releases were unique per (debit, version) and named no buyer)."""
    tables = tx.tables()
    if "schema_version" in tables:
        row = tx.one("SELECT version FROM schema_version WHERE id = 1")
        found = int(row[0]) if row else SCHEMA_VERSION
    else:
        found = 1 if "cursor" in tables else SCHEMA_VERSION
    if found != SCHEMA_VERSION:
        raise StateStoreError(
            f"this gateway state was written with schema {found}; this datadebit needs "
            f"schema {SCHEMA_VERSION}: start the node with a new state database"
        )


def _release_row(
    tx: Tx, debit_id: int, version: int, buyer_key_hash: bytes | None
) -> tuple[object, ...] | None:
    if buyer_key_hash is None:
        return tx.one(
            f"SELECT {_RELEASE_COLUMNS} FROM releases WHERE debit_id = ? AND version = ? "  # noqa: S608
            "ORDER BY seq LIMIT 1",
            (debit_id, version),
        )
    return tx.one(
        f"SELECT {_RELEASE_COLUMNS} FROM releases WHERE debit_id = ? AND version = ? "  # noqa: S608
        "AND buyer_key_hash = ?",
        (debit_id, version, buyer_key_hash.hex()),
    )


def _release(row: tuple[object, ...]) -> Release:
    (seq, debit_id, version, node, epoch, buyer, key_hash, request, request_signature,
     request_digest, sealed, sealed_hash, block, signature) = row
    return Release(
        seq=int(seq), debit_id=int(debit_id), version=int(version), node=int(node),  # type: ignore[call-overload]
        epoch=int(epoch), buyer=str(buyer), buyer_key_hash=bytes.fromhex(str(key_hash)),  # type: ignore[call-overload]
        request=KeyRequest.from_message(json.loads(str(request))),
        request_signature=bytes.fromhex(str(request_signature)),
        request_digest=bytes.fromhex(str(request_digest)),
        sealed_share=bytes.fromhex(str(sealed)), sealed_share_hash=bytes.fromhex(str(sealed_hash)),
        block=int(block), signature=bytes.fromhex(str(signature)),  # type: ignore[call-overload]
    )


def _debit(row: tuple[object, ...]) -> IndexedDebit:
    debit_id, listing_id, buyer, key, block_number, block_hash = row
    return IndexedDebit(
        int(debit_id), int(listing_id), str(buyer), bytes.fromhex(str(key)),  # type: ignore[call-overload]
        int(block_number), str(block_hash),  # type: ignore[call-overload]
    )


def _version(row: tuple[object, ...]) -> IndexedVersion:
    return IndexedVersion(
        int(row[0]), int(row[1]), bytes.fromhex(str(row[2])), bytes.fromhex(str(row[3]))  # type: ignore[call-overload]
    )


def _insert_index_row(
    tx: Tx, row: IndexedDebit | IndexedVersion, block_number: int, *, replace: bool = False
) -> None:
    """Insert an index row; `replace` (the watcher's processed logs) overwrites a debit
    remembered on demand from a block that may since have been reorganised away."""
    if isinstance(row, IndexedDebit):
        conflict = (
            "ON CONFLICT (debit_id) DO UPDATE SET listing_id = excluded.listing_id, "
            "buyer = excluded.buyer, buyer_key = excluded.buyer_key, "
            "block_number = excluded.block_number, block_hash = excluded.block_hash"
            if replace else "ON CONFLICT DO NOTHING"
        )
        tx.execute(
            f"INSERT INTO debits VALUES (?, ?, ?, ?, ?, ?) {conflict}",  # noqa: S608
            (row.debit_id, row.listing_id, row.buyer, row.buyer_key.hex(), block_number,
             row.block_hash),
        )
    else:
        tx.execute(
            "INSERT INTO versions VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (row.listing_id, row.version, row.cid.hex(), row.capsule.hex(), block_number),
        )


def _record_logs(
    tx: Tx,
    chain_id: int,
    logs: Sequence[tuple[LogKey, Sequence[IndexedDebit | IndexedVersion]]],
) -> list[LogKey]:
    """Record each log not recorded before, with its index rows; returns those."""
    fresh = []
    for key, rows in logs:
        if not first_time(tx, "processed_logs", chain_id, key):
            continue
        for row in rows:
            _insert_index_row(tx, row, key[3], replace=True)
        fresh.append(key)
    return fresh

