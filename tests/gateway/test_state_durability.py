"""What the state promises on its hot path: a served release is committed durably (its WAL
fsynced, by group commit, before the append returns), nonces are refused while valid and
pruned once expired (not on every request)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from marketplace.gateway.database import SqliteDatabase, StateStoreError
from marketplace.gateway.state import NONCE_PRUNE_INTERVAL, GatewayState, Release
from tests.gateway.state_backends import TEST_KEY_HASH, StateBackend, a_release


def _synchronous(db: SqliteDatabase) -> int:
    row = db._conn.execute("PRAGMA synchronous").fetchone()
    return int(row[0])


#: Digests of two different requests.
D1, D2 = b"\x11" * 32, b"\x22" * 32


def _release(seq: int, debit_id: int = 1) -> Release:
    return a_release(seq, debit_id)


def test_release_appends_are_flushed_and_nothing_else_is(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "state.db")
    state = GatewayState(db)
    assert db.wal_sync is not None
    before = db.wal_sync.flushes
    state.use_nonce("0xabc", b"\x01" * 32, 2_000, 1_000, D1)  # NORMAL: survives a process crash
    assert db.wal_sync.flushes == before
    state.append_release(1, 1, TEST_KEY_HASH, _release)
    assert db.wal_sync.flushes == before + 1  # the WAL was fsynced before the append returned
    assert _synchronous(db) == 1  # commits themselves stay NORMAL: the flush is separate
    assert [r.seq for r in state.releases_after(0)] == [1]


def test_a_failed_append_flushes_nothing_and_leaves_no_release(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "state.db")
    state = GatewayState(db)
    assert db.wal_sync is not None

    def build(seq: int) -> Release:
        raise RuntimeError("signing failed")

    with pytest.raises(RuntimeError):
        state.append_release(1, 1, TEST_KEY_HASH, build)
    assert db.wal_sync.flushes == 0
    assert state.releases_after(0) == []


def test_concurrent_appends_share_flushes_and_each_waits_for_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: 16 racing appends need fewer than 16 fsyncs, and no append returns
    before a flush that started after its own commit (the flush's commit count covers
    its ticket)."""
    db = SqliteDatabase(tmp_path / "state.db")
    state = GatewayState(db)
    sync = db.wal_sync
    assert sync is not None
    real_fsync = sync._fsync
    covered: list[int] = []

    def slow_fsync() -> None:
        covered.append(sync._committed)  # what this flush will make durable
        time.sleep(0.02)
        real_fsync()

    monkeypatch.setattr(sync, "_fsync", slow_fsync)
    returned_after: dict[int, int] = {}

    def append(debit_id: int) -> None:
        state.append_release(debit_id, 1, TEST_KEY_HASH, lambda seq: _release(seq, debit_id))
        returned_after[debit_id] = len(covered)

    threads = [threading.Thread(target=append, args=(d,)) for d in range(1, 17)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.seq for r in state.releases_after(0)) == list(range(1, 17))
    assert 1 <= sync.flushes < 16 and sync.flushes == len(covered)
    assert covered[-1] == 16 and sync._synced == 16
    assert all(n >= 1 for n in returned_after.values())


def test_a_failed_flush_is_a_state_error_and_the_next_append_retries_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = SqliteDatabase(tmp_path / "state.db")
    state = GatewayState(db)
    sync = db.wal_sync
    assert sync is not None
    real_fsync = sync._fsync
    calls: list[int] = []

    def failing_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise StateStoreError("cannot flush the gateway state's WAL: disk on fire")
        real_fsync()

    monkeypatch.setattr(sync, "_fsync", failing_once)
    with pytest.raises(StateStoreError):
        state.append_release(1, 1, TEST_KEY_HASH, _release)  # committed, but not answered
    # the retry re-serves it, now durable
    again = state.append_release(1, 1, TEST_KEY_HASH, _release)
    assert again.seq == 1 and len(calls) == 2 and sync._synced >= 1


def test_in_memory_state_has_nothing_to_flush() -> None:
    db = SqliteDatabase(":memory:")
    assert db.wal_sync is None
    GatewayState(db).append_release(1, 1, TEST_KEY_HASH, _release)


def _nonce_rows(state: GatewayState) -> int:
    with state.db.transaction() as tx:
        row = tx.one("SELECT COUNT(*) FROM nonces")
    assert row is not None
    return int(row[0])


def test_nonces_refused_while_valid_pruned_once_expired(state_backend: StateBackend) -> None:
    state = state_backend.open("nonces")
    now = 1_000
    assert state.use_nonce("0xAbC", b"\x01" * 32, now + 5, now, D1)
    assert state.use_nonce("0xAbC", b"\x02" * 32, now + 500, now, D2)
    assert not state.use_nonce("0xabc", b"\x01" * 32, now + 5, now + 1, D2)  # same signer
    assert state.use_nonce("0xabc", b"\x01" * 32, now + 5, now + 1, D1)  # same request
    assert state.use_nonce("0xDef", b"\x01" * 32, now + 5, now + 1, D2)  # another signer

    # expired, but within the prune interval: still stored, and harmless (an expired
    # request is refused before its nonce is looked at)
    assert _nonce_rows(state) == 3
    later = now + NONCE_PRUNE_INTERVAL
    assert state.use_nonce("0xAbC", b"\x03" * 32, later + 5, later, D1)
    assert _nonce_rows(state) == 2  # the two that expired at now + 5 are gone
    assert not state.use_nonce("0xAbC", b"\x02" * 32, now + 500, later, D1)  # still valid
