"""One small SQL connection for a service's state (the gateway's, the catalog's):
SQLite by default, Postgres by URL.

The same SQL runs on both (portable types, `ON CONFLICT DO NOTHING`); statements are
written with `?` placeholders and rewritten for psycopg. Every write runs inside
`transaction()`, so a crash leaves either all of a step's effects or none of them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from marketplace.errors import MarketplaceError

Row = tuple[Any, ...]


class StateStoreError(MarketplaceError):
    """A state database (the gateway's, the catalog's) could not be opened or used."""


class Tx(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def tables(self) -> set[str]: ...


class Database(Protocol):
    def transaction(self, *, durable: bool = False) -> Any: ...  # a context manager yielding a Tx
    def read(self) -> Any: ...  # a context manager yielding a Tx for one SELECT
    def close(self) -> None: ...


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(sql, tuple(params))

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = self._conn.execute(sql, tuple(params)).fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(r) for r in self._conn.execute(sql, tuple(params)).fetchall()]

    def tables(self) -> set[str]:
        return {str(r[0]) for r in self.all("SELECT name FROM sqlite_master WHERE type = 'table'")}


class WalSync:
    """Group commit for a WAL-mode SQLite file: makes committed transactions durable with
    one fsync of the WAL for every commit made before it started.

    Transactions commit with `synchronous=NORMAL` (no fsync, under the database lock);
    a caller that needs durability then waits here, outside the lock. One waiter fsyncs
    the WAL for everything committed so far while the others wait for it, so concurrent
    releases share a flush and never hold the lock through one. A checkpoint needs no
    help: SQLite fsyncs the WAL before it and the database file after it.
    """

    def __init__(self, wal_path: str) -> None:
        self._wal_path = wal_path
        self._cond = threading.Condition()
        self._committed = 0
        self._synced = 0
        self._syncing = False
        self._directory_synced = False
        self.flushes = 0

    def note_commit(self) -> int:
        """Call under the database lock right after COMMIT; returns the commit's ticket."""
        with self._cond:
            self._committed += 1
            return self._committed

    def wait_durable(self, ticket: int) -> None:
        """Return once commit `ticket` is on disk (raises StateStoreError if fsync fails)."""
        with self._cond:
            while self._synced < ticket:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
                target = self._committed
                self._cond.release()
                try:
                    self._fsync()
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                self._synced = max(self._synced, target)
                self.flushes += 1

    def _fsync(self) -> None:
        paths = [self._wal_path]
        if not self._directory_synced:  # the WAL's directory entry, once
            paths.append(os.path.dirname(os.path.abspath(self._wal_path)))
        try:
            for path in paths:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self._directory_synced = True
        except OSError as e:
            raise StateStoreError(f"cannot flush the state database's WAL: {e.strerror}") from e


class SqliteDatabase:
    """A file (or `:memory:`) database in WAL mode, shared by a service's threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._conn = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as e:
            raise StateStoreError(f"cannot open the state database at {self.path}: {e}") from e
        self._lock = threading.RLock()
        on_disk = mode is not None and str(mode[0]).lower() == "wal"
        self.wal_sync = WalSync(self.path + "-wal") if on_disk else None

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[Tx]:
        """One write transaction. Commits survive a crash of the process in any case;
        `durable` ones also survive a crash of the machine: the call returns only once the
        WAL holding the commit is fsynced (group commit, see `WalSync`). For what must
        never be lost once answered (a served release), not for what the chain or an
        expiry can restore."""
        ticket = 0
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _SqliteTx(self._conn)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except (sqlite3.Error, OverflowError) as e:  # OverflowError: an int beyond int64
                raise StateStoreError(f"state database at {self.path}: {e}") from e
            if durable and self.wal_sync is not None:
                ticket = self.wal_sync.note_commit()
        if ticket:
            assert self.wal_sync is not None
            self.wal_sync.wait_durable(ticket)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """One read-only statement, without BEGIN/COMMIT (a SELECT is atomic on its own
        in autocommit mode): a third of the statements a transaction costs, on the hot
        path of every request."""
        with self._lock:
            try:
                yield _SqliteTx(self._conn)
            except (sqlite3.Error, OverflowError) as e:
                raise StateStoreError(f"state database at {self.path}: {e}") from e

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _PostgresTx:
    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cur.execute(_pg(sql), tuple(params))

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._cur.execute(_pg(sql), tuple(params))
        row = self._cur.fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cur.execute(_pg(sql), tuple(params))
        return [tuple(r) for r in self._cur.fetchall()]

    def tables(self) -> set[str]:
        rows = self.all("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {str(r[0]) for r in rows}


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


#: Advisory lock key every state transaction holds (advisory locks are per database).
_WRITER_LOCK = 0x64617461_64656274  # "datadebt"


class PostgresDatabase:
    """State in Postgres, for a replicated deployment (needs `psycopg`).

    Every transaction first takes one transaction-scoped advisory lock, so transactions
    on the same database run one at a time across connections and processes, as SQLite's
    `BEGIN IMMEDIATE` makes them: read-then-write steps (next release seq, nonce check,
    processed-log check) cannot interleave. A connection the server dropped is replaced
    at the next transaction; the one in flight fails and its caller retries.
    """

    def __init__(self, url: str) -> None:
        try:
            import psycopg  # noqa: PLC0415 - optional dependency, only for Postgres URLs
        except ImportError as e:
            raise StateStoreError(
                "a Postgres state URL needs psycopg: pip install 'datadebit[postgres]'"
            ) from e
        self._url = url
        self._connect = psycopg.connect
        self._errors = psycopg.Error
        self._conn = self._open()
        self._lock = threading.RLock()

    def _open(self) -> Any:
        try:
            return self._connect(self._url, autocommit=True)
        except self._errors as e:
            raise StateStoreError(f"cannot connect to Postgres: {type(e).__name__}") from e

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[Tx]:
        """One write transaction; every Postgres commit is durable (synchronous_commit
        on, the server's default), so `durable` changes nothing here."""
        with self._lock:
            if self._conn.broken:
                self._conn.close()
                self._conn = self._open()
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITER_LOCK,))
                    yield _PostgresTx(cur)
            except self._errors as e:  # the class name only: messages may quote parameters
                raise StateStoreError(f"Postgres state: {type(e).__name__}") from e

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """One read-only statement on the autocommit connection: no transaction block,
        no advisory lock (nothing is written, so nothing can interleave with it)."""
        with self._lock:
            if self._conn.broken:
                self._conn.close()
                self._conn = self._open()
            try:
                with self._conn.cursor() as cur:
                    yield _PostgresTx(cur)
            except self._errors as e:  # the class name only: messages may quote parameters
                raise StateStoreError(f"Postgres state: {type(e).__name__}") from e

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_database(url: str) -> SqliteDatabase | PostgresDatabase:
    """`postgresql://...` opens Postgres; `sqlite:///path`, a path or `:memory:` SQLite."""
    if url.startswith(("postgres://", "postgresql://")):
        return PostgresDatabase(url)
    if url.startswith("sqlite:///"):
        url = url.removeprefix("sqlite:///")
    return SqliteDatabase(url)


def first_time(tx: Tx, table: str, chain_id: int, key: tuple[str, str, int, int]) -> bool:
    """Record the log `key` (block hash, tx hash, log index, block number) in `table`, a
    processed-logs table of columns (chain_id, block_hash, tx_hash, log_index,
    block_number); False when it was recorded before: each log is applied once."""
    block_hash, tx_hash, log_index, block_number = key
    if tx.one(
        f"SELECT 1 FROM {table} WHERE chain_id = ? AND block_hash = ? "  # noqa: S608
        "AND tx_hash = ? AND log_index = ?",
        (chain_id, block_hash, tx_hash, log_index),
    ):
        return False
    tx.execute(
        f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?)",  # noqa: S608 - a constant name
        (chain_id, block_hash, tx_hash, log_index, block_number),
    )
    return True
