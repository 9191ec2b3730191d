"""Where a test's gateway state lives: SQLite files (WAL) or databases on a real Postgres.

The gateway tests run on both through the `state_backend` fixture (tests/gateway/
conftest.py), so every state behaviour (cursor, exactly-once logs, reorg rewind, nonces,
releases, anchors) is proven on each. A name maps to one location for the whole test:
opening it again is a restart on the same state.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from marketplace.eip712 import KeyRequest
from marketplace.gateway.database import PostgresDatabase, SqliteDatabase, open_database
from marketplace.gateway.state import GatewayState, Release

#: Parameters of the `state_backend` fixture; Postgres needs a real server, so it is an
#: integration test.
BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.integration)]


class StateBackend:
    def __init__(self, kind: str, tmp_path: Path, postgres_admin_url: str | None = None) -> None:
        if kind == "postgres" and postgres_admin_url is None:
            raise ValueError("the postgres backend needs the server's admin URL")
        self.kind = kind
        self._tmp_path = tmp_path
        self._admin_url = postgres_admin_url
        self._urls: dict[str, str] = {}
        self._opened: list[SqliteDatabase | PostgresDatabase] = []

    def url(self, name: str) -> str:
        """The state URL for `name` (a file path or a postgresql:// URL), made on first use."""
        if name not in self._urls:
            if self._admin_url is None:
                self._urls[name] = str(self._tmp_path / f"{name}.db")
            else:
                from scripts.servers.postgres import create_database  # noqa: PLC0415

                db_name = f"gw_{name}_{uuid.uuid4().hex[:12]}"
                self._urls[name] = create_database(self._admin_url, db_name)
        return self._urls[name]

    def open(self, name: str) -> GatewayState:
        db = open_database(self.url(name))
        self._opened.append(db)
        return GatewayState(db)

    def close(self) -> None:
        """Close every connection the test opened and drop its Postgres databases."""
        for db in self._opened:
            db.close()
        if self._admin_url is not None and self._urls:
            import psycopg  # noqa: PLC0415

            with psycopg.connect(self._admin_url, autocommit=True) as conn:
                for url in self._urls.values():
                    conn.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


#: The buyer-key hash the state tests' releases are keyed by.
TEST_KEY_HASH = b"\x05" * 32
_TEST_REQUEST = KeyRequest(1, 1, 2_000, b"\x06" * 32)


def a_release(seq: int, debit_id: int = 1, version: int = 1) -> Release:
    """A release log entry with placeholder bytes, for state tests (no crypto involved)."""
    return Release(
        seq=seq, debit_id=debit_id, version=version, node=1, epoch=1,
        buyer="0x" + "ab" * 20, buyer_key_hash=TEST_KEY_HASH, request=_TEST_REQUEST,
        request_signature=b"\x07" * 65, request_digest=b"\x08" * 32,
        sealed_share=b"\x01" * 80, sealed_share_hash=b"\x02" * 32, block=7,
        signature=b"\x03" * 65,
    )
