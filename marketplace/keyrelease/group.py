"""The prime-order subgroup of edwards25519, over libsodium.

`Scalar` is a public number modulo L (a challenge, a response, a Lagrange coefficient);
`SecretScalar` wraps one that must stay secret (a share, a nonce). `Point` is an element
of the subgroup. Bytes from outside become a `Point` only through `Point.from_bytes`,
which rejects the identity, small-order and mixed-order points and non-canonical
encodings; arithmetic inside the package may reach the identity (libsodium refuses to
multiply to or from it, so those cases are handled here).
"""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium
import nacl.utils

from marketplace.keyrelease.errors import InvalidPoint, InvalidScalar

L = 2**252 + 27742317777372353535851937790883648493
"""Order of the prime-order subgroup (and of the scalar field)."""

SCALAR_SIZE = 32
POINT_SIZE = 32
_IDENTITY_BYTES = b"\x01" + bytes(31)
_ZERO_BYTES = bytes(32)


def tag(name: str) -> bytes:
    """Domain-separation tag `datadebit/<name>/v1`, so no hash is reused across purposes."""
    return f"datadebit/{name}/v1".encode("ascii")


class Scalar:
    """A public scalar modulo L, kept as its canonical 32-byte little-endian encoding."""

    SIZE = SCALAR_SIZE
    __slots__ = ("_encoded",)
    _encoded: bytes

    def __init__(self) -> None:
        raise TypeError("use Scalar.from_bytes, Scalar.from_int or Scalar.random")

    @classmethod
    def _trusted(cls, encoded: bytes) -> Scalar:
        scalar = object.__new__(cls)
        scalar._encoded = encoded
        return scalar

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "scalar") -> Scalar:
        """Parse a canonical encoding; anything at or above L is refused (no malleability)."""
        if len(data) != SCALAR_SIZE or int.from_bytes(data, "little") >= L:
            raise InvalidScalar(what)
        return cls._trusted(bytes(data))

    @classmethod
    def from_int(cls, value: int) -> Scalar:
        return cls._trusted((value % L).to_bytes(SCALAR_SIZE, "little"))

    @classmethod
    def random(cls) -> Scalar:
        """Uniform and non-zero, from the OS CSPRNG (64 bytes reduced: negligible bias)."""
        while True:
            encoded = sodium.crypto_core_ed25519_scalar_reduce(nacl.utils.random(64))
            if encoded != _ZERO_BYTES:
                return cls._trusted(encoded)

    def to_bytes(self) -> bytes:
        return self._encoded

    def to_int(self) -> int:
        return int.from_bytes(self._encoded, "little")

    @property
    def is_zero(self) -> bool:
        return self._encoded == _ZERO_BYTES

    def __add__(self, other: Scalar) -> Scalar:
        return Scalar._trusted(sodium.crypto_core_ed25519_scalar_add(self._encoded, other._encoded))

    def __sub__(self, other: Scalar) -> Scalar:
        return Scalar._trusted(sodium.crypto_core_ed25519_scalar_sub(self._encoded, other._encoded))

    def __mul__(self, other: Scalar) -> Scalar:
        return Scalar._trusted(sodium.crypto_core_ed25519_scalar_mul(self._encoded, other._encoded))

    def __neg__(self) -> Scalar:
        return Scalar._trusted(sodium.crypto_core_ed25519_scalar_negate(self._encoded))

    def invert(self) -> Scalar:
        if self.is_zero:
            raise ZeroDivisionError("zero has no inverse modulo L")
        return Scalar._trusted(sodium.crypto_core_ed25519_scalar_invert(self._encoded))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scalar):
            return NotImplemented
        return sodium.sodium_memcmp(self._encoded, other._encoded)

    def __hash__(self) -> int:
        return hash(self._encoded)

    def __repr__(self) -> str:
        return f"Scalar(0x{self._encoded.hex()})"


class SecretScalar:
    """A scalar that must stay secret: a key share s_i, or a one-time nonce k or r.

    It prints as `SecretScalar(<secret>)`, cannot be hashed, compares in constant time,
    and gives its bytes up only through `to_secret_bytes()`.
    """

    __slots__ = ("_scalar",)

    def __init__(self, scalar: Scalar) -> None:
        if scalar.is_zero:
            raise InvalidScalar("secret scalar (zero)")
        self._scalar = scalar

    @classmethod
    def random(cls) -> SecretScalar:
        return cls(Scalar.random())

    @classmethod
    def from_secret_bytes(cls, data: bytes) -> SecretScalar:
        return cls(Scalar.from_bytes(data, "secret scalar"))

    def to_secret_bytes(self) -> bytes:
        """The canonical encoding. Callers must not log, print or store it unencrypted."""
        return self._scalar.to_bytes()

    def public_point(self) -> Point:
        """self·G."""
        return Point.base_mul(self._scalar)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretScalar):
            return NotImplemented
        return self._scalar == other._scalar

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<secret>)"


class Point:
    """An element of the prime-order subgroup, kept as its 32-byte encoding."""

    SIZE = POINT_SIZE
    __slots__ = ("_encoded",)
    _encoded: bytes

    def __init__(self) -> None:
        raise TypeError("use Point.from_bytes or Point.base_mul")

    @classmethod
    def _trusted(cls, encoded: bytes) -> Point:
        point = object.__new__(cls)
        point._encoded = encoded
        return point

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "point") -> Point:
        """Validate bytes from outside: canonical, on the curve, in the subgroup, not 0."""
        if len(data) != POINT_SIZE or not sodium.crypto_core_ed25519_is_valid_point(data):
            raise InvalidPoint(what)
        return cls._trusted(bytes(data))

    @classmethod
    def identity(cls) -> Point:
        return IDENTITY

    @classmethod
    def base_mul(cls, scalar: Scalar) -> Point:
        """scalar·G (libsodium refuses 0, whose product is the identity)."""
        if scalar.is_zero:
            return IDENTITY
        return cls._trusted(sodium.crypto_scalarmult_ed25519_base_noclamp(scalar.to_bytes()))

    @property
    def is_identity(self) -> bool:
        return self._encoded == _IDENTITY_BYTES

    def to_bytes(self) -> bytes:
        return self._encoded

    def __add__(self, other: Point) -> Point:
        return Point._trusted(sodium.crypto_core_ed25519_add(self._encoded, other._encoded))

    def __sub__(self, other: Point) -> Point:
        return Point._trusted(sodium.crypto_core_ed25519_sub(self._encoded, other._encoded))

    def __mul__(self, scalar: Scalar) -> Point:
        """self·scalar (libsodium refuses the identity on either side; so do we, here)."""
        if scalar.is_zero or self.is_identity:
            return IDENTITY
        return Point._trusted(
            sodium.crypto_scalarmult_ed25519_noclamp(scalar.to_bytes(), self._encoded)
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Point):
            return NotImplemented
        return self._encoded == other._encoded

    def __hash__(self) -> int:
        return hash(self._encoded)

    def __repr__(self) -> str:
        return f"Point(0x{self._encoded.hex()})"


IDENTITY = Point._trusted(_IDENTITY_BYTES)
GENERATOR = Point.base_mul(Scalar.from_int(1))


def hash_to_scalar(domain_tag: bytes, *parts: bytes) -> Scalar:
    """Hs(tag, parts) = scalar_reduce(BLAKE2b-512(tag || parts)).

    Every caller passes fixed-length parts, so plain concatenation is unambiguous.
    """
    digest = hashlib.blake2b(domain_tag + b"".join(parts), digest_size=64).digest()
    return Scalar._trusted(sodium.crypto_core_ed25519_scalar_reduce(digest))
