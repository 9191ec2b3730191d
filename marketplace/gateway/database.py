"""The gateway's state database: `marketplace.db`, re-exported so existing imports keep
working (the catalog shares the same abstraction)."""

from marketplace.db import (
    Database,
    PostgresDatabase,
    Row,
    SqliteDatabase,
    StateStoreError,
    Tx,
    WalSync,
    open_database,
)

__all__ = [
    "Database",
    "PostgresDatabase",
    "Row",
    "SqliteDatabase",
    "StateStoreError",
    "Tx",
    "WalSync",
    "open_database",
]
