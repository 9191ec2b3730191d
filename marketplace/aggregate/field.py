"""The prime field of aggregate debits, vectorised with numpy.

Elements are `int64` arrays with entries in [0, p). With p = 2^31 - 1 a product of two
elements is below 2^62 and fits int64, so every multiply is followed by a reduction; a sum
of up to 2^32 reduced elements fits as well. Every function takes the prime as a keyword
so the privacy tests can run the same code exhaustively over a tiny field.

Randomness comes only from `os.urandom` (never numpy's generators: a PRNG seed would be
the whole secret).
"""

from __future__ import annotations

import os
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from marketplace.aggregate.errors import InvalidParameters

P = 2**31 - 1
"""The Mersenne prime of the protocol; shares travel as little-endian uint32."""

Vector: TypeAlias = npt.NDArray[np.int64]
"""Field elements (any shape) in [0, p), or signed integers before `reduce`."""


def check_prime(prime: int) -> None:
    """Primes above 2^31 would overflow int64 products; tests use small primes."""
    if not 2 < prime <= P:
        raise InvalidParameters(f"prime {prime} is outside 3..2^31-1")


def reduce(values: npt.ArrayLike, *, prime: int = P) -> Vector:
    """Any integers (negative too) to their representatives in [0, p)."""
    return np.asarray(np.mod(np.asarray(values, dtype=np.int64), prime), dtype=np.int64)


def random_elements(shape: int | tuple[int, ...], *, prime: int = P) -> Vector:
    """Uniform field elements from `os.urandom`, by rejection on bit_length(p)-bit draws.

    For P = 2^31 - 1 only the value P itself is rejected (probability 2^-31 per draw).
    """
    check_prime(prime)
    dims = (shape,) if isinstance(shape, int) else shape
    count = int(np.prod(dims, dtype=np.int64))
    mask = (1 << prime.bit_length()) - 1
    out = np.empty(count, dtype=np.int64)
    filled = 0
    while filled < count:
        want = count - filled
        draw = np.frombuffer(os.urandom(4 * want), dtype="<u4").astype(np.int64) & mask
        accepted = draw[draw < prime]
        out[filled : filled + accepted.size] = accepted
        filled += accepted.size
    return out.reshape(dims)


def centered(values: npt.ArrayLike, *, prime: int = P) -> Vector:
    """The representative in (-p/2, p/2]: how noise and signed differences are read."""
    reduced = reduce(values, prime=prime)
    return np.where(reduced > prime // 2, reduced - prime, reduced).astype(np.int64)


def check_elements(values: Vector, *, prime: int = P) -> bool:
    """Whether every entry is a canonical element of [0, p)."""
    return bool(np.all((values >= 0) & (values < prime)))


def to_bytes(values: Vector) -> bytes:
    """Canonical elements as little-endian uint32 (the wire encoding of shares)."""
    return np.asarray(values, dtype="<u4").tobytes()


def from_bytes(data: bytes, count: int) -> Vector:
    """Little-endian uint32s to int64 elements; the caller checks `check_elements`."""
    if len(data) != 4 * count:
        raise ValueError(f"{len(data)} bytes for {count} elements")
    return np.frombuffer(data, dtype="<u4").astype(np.int64)
