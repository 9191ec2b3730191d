"""A gateway refuses state written by another layout instead of misreading it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from marketplace.gateway.database import SqliteDatabase, StateStoreError
from marketplace.gateway.state import SCHEMA_VERSION, GatewayState


def test_a_new_state_is_created_and_reopened(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    GatewayState(SqliteDatabase(path)).db.close()
    state = GatewayState(SqliteDatabase(path))
    with state.db.transaction() as tx:
        assert tx.one("SELECT version FROM schema_version") == (SCHEMA_VERSION,)


def test_state_from_before_the_schema_version_is_refused(tmp_path: Path) -> None:
    """Schema 1 (releases unique per (debit, version), no buyer) had no version table."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE cursor (id INTEGER PRIMARY KEY, block_number BIGINT, "
                     "block_hash TEXT)")
    with pytest.raises(StateStoreError, match=r"schema 1\b.*new state database"):
        GatewayState(SqliteDatabase(path))


def test_state_of_another_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (id INTEGER PRIMARY KEY, version BIGINT)")
        conn.execute("INSERT INTO schema_version VALUES (1, 99)")
    with pytest.raises(StateStoreError, match="schema 99"):
        GatewayState(SqliteDatabase(path))
