"""The root of every error the storage package raises on purpose."""

from __future__ import annotations


class StorageError(Exception):
    """Base of all storage errors; catch this to handle any of them."""
