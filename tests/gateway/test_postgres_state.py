"""What only the Postgres backend has: a server that can drop the connection, and
connection URLs that carry credentials."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from marketplace.gateway.database import PostgresDatabase, StateStoreError, open_database
from marketplace.gateway.state import Cursor
from tests.gateway.state_backends import StateBackend

pytestmark = pytest.mark.integration


@pytest.fixture
def postgres(postgres_admin_url: str, tmp_path: Path) -> StateBackend:
    return StateBackend("postgres", tmp_path, postgres_admin_url)


def test_a_dropped_connection_is_replaced_and_nothing_is_lost(
    postgres: StateBackend, postgres_admin_url: str
) -> None:
    try:
        state = postgres.open("dropped")
        assert isinstance(state.db, PostgresDatabase)
        state.apply_logs(1, [], Cursor(5, "0x05"))
        db_name = postgres.url("dropped").rsplit("/", 1)[1]
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (db_name,),
            ).fetchall()
        assert killed == [(True,)]

        with pytest.raises(StateStoreError) as failed:
            state.cursor()  # the transaction in flight when the server went away fails...
        assert isinstance(failed.value.__cause__, psycopg.OperationalError)
        assert state.cursor() == Cursor(5, "0x05")  # ...the next one reconnects
        state.apply_logs(1, [], Cursor(6, "0x06"))
        assert postgres.open("dropped").cursor() == Cursor(6, "0x06")
    finally:
        postgres.close()


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StateStoreError) as refused:
        open_database("postgresql://gw:s3cret@127.0.0.1:1/state?connect_timeout=2")
    assert "cannot connect to Postgres" in str(refused.value)
    assert "s3cret" not in str(refused.value)
