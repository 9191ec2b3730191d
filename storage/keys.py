"""The data key (DEK): the 32-byte secret that encrypts one version's envelope.

A `DataKey` never shows its bytes in a repr, cannot be hashed (so it does not end up as
a dict key or in a set by accident), compares in constant time, and gives its bytes up
only through `to_secret_bytes()`.
"""

from __future__ import annotations

import nacl.bindings
import nacl.utils


class DataKey:
    """A fresh random key per version; see module docstring for how it guards itself."""

    SIZE = 32
    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != self.SIZE:
            raise ValueError(f"a data key is exactly {self.SIZE} bytes")
        self._key = key

    @classmethod
    def generate(cls) -> DataKey:
        """A new key from the operating system's CSPRNG."""
        return cls(nacl.utils.random(cls.SIZE))

    def to_secret_bytes(self) -> bytes:
        """The raw key. Callers must not log, print or persist it unencrypted."""
        return self._key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataKey):
            return NotImplemented
        return nacl.bindings.sodium_memcmp(self._key, other._key)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "DataKey(<secret>)"
