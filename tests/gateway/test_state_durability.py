"""What the state promises on its hot path: a served release is committed durably (fsynced
on SQLite), nonces are refused while valid and pruned once expired (not on every request)."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.state import NONCE_PRUNE_INTERVAL, GatewayState, Release
from tests.gateway.state_backends import StateBackend


def _synchronous(db: SqliteDatabase) -> int:
    row = db._conn.execute("PRAGMA synchronous").fetchone()
    return int(row[0])


def test_release_appends_are_fsynced_and_nothing_else_is(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "state.db")
    state = GatewayState(db)
    seen: list[int] = []

    def build(seq: int) -> Release:
        seen.append(_synchronous(db))  # inside the append's transaction
        return Release(seq, 1, 1, 1, b"\x01" * 80, b"\x02" * 32, 7, b"\x03" * 65)

    assert _synchronous(db) == 1  # NORMAL: the index and nonces survive a process crash
    state.append_release(1, 1, build)
    assert seen == [2]  # FULL: the WAL is fsynced before the commit returns
    assert _synchronous(db) == 1
    assert [r.seq for r in state.releases_after(0)] == [1]


def test_a_failed_append_restores_normal_sync(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "state.db")
    state = GatewayState(db)

    def build(seq: int) -> Release:
        raise RuntimeError("signing failed")

    with pytest.raises(RuntimeError):
        state.append_release(1, 1, build)
    assert _synchronous(db) == 1
    assert state.releases_after(0) == []


def _nonce_rows(state: GatewayState) -> int:
    with state.db.transaction() as tx:
        row = tx.one("SELECT COUNT(*) FROM nonces")
    assert row is not None
    return int(row[0])


def test_nonces_refused_while_valid_pruned_once_expired(state_backend: StateBackend) -> None:
    state = state_backend.open("nonces")
    now = 1_000
    assert state.use_nonce("0xAbC", b"\x01" * 32, now + 5, now)
    assert state.use_nonce("0xAbC", b"\x02" * 32, now + 500, now)
    assert not state.use_nonce("0xabc", b"\x01" * 32, now + 5, now + 1)  # same signer
    assert state.use_nonce("0xDef", b"\x01" * 32, now + 5, now + 1)  # another signer

    # expired, but within the prune interval: still stored, and harmless (an expired
    # request is refused before its nonce is looked at)
    assert _nonce_rows(state) == 3
    later = now + NONCE_PRUNE_INTERVAL
    assert state.use_nonce("0xAbC", b"\x03" * 32, later + 5, later)
    assert _nonce_rows(state) == 2  # the two that expired at now + 5 are gone
    assert not state.use_nonce("0xAbC", b"\x02" * 32, now + 500, later)  # still valid
