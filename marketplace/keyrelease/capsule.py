"""The owner's side: wrap a version's data key (DEK) for the committee, in a capsule.

capsule = R(32) || nonce(24) || XChaCha20-Poly1305(K, DEK, aad=ctx)(48), with R = r·G,
K = BLAKE2b-256(`datadebit/kem/v1` || R || r·Y). Only t nodes together can rebuild r·Y
from R. The context binds the capsule to one chain, market, listing, version and CID, so
a capsule copied elsewhere does not open.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils
from eth_utils.address import to_checksum_address

from marketplace.keyrelease.errors import CapsuleOpenFailed, InvalidField, MalformedCapsule
from marketplace.keyrelease.group import Point, SecretScalar, tag
from storage.keys import DataKey

_KEM_TAG = tag("kem")
_CTX_TAG = tag("ctx")
_UINT256_MAX = 2**256 - 1
_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class CapsuleContext:
    """Where a capsule belongs; its encoding is the AEAD's associated data.

    `version` is the number `publishVersion` will assign (the listing's count + 1);
    `market` is normalised to its checksummed form.
    """

    chain_id: int
    market: str
    listing_id: int
    version: int
    cid_bytes: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.chain_id <= _UINT256_MAX:
            raise InvalidField("chainId", "must fit uint256")
        if not 0 <= self.listing_id <= _UINT256_MAX:
            raise InvalidField("listingId", "must fit uint256")
        if not 1 <= self.version <= _UINT32_MAX:
            raise InvalidField("version", "must be in 1..2^32-1")
        if not self.cid_bytes:
            raise InvalidField("cid", "must not be empty")
        try:
            market = to_checksum_address(self.market)
        except ValueError as e:
            raise InvalidField("market", "must be a 20-byte hex address") from e
        object.__setattr__(self, "market", market)

    def to_bytes(self) -> bytes:
        """`datadebit/ctx/v1` || chainId(32 BE) || market(20) || listingId(32 BE)
        || version(4 BE) || cid bytes."""
        return b"".join(
            (
                _CTX_TAG,
                self.chain_id.to_bytes(32, "big"),
                bytes.fromhex(self.market[2:]),
                self.listing_id.to_bytes(32, "big"),
                self.version.to_bytes(4, "big"),
                self.cid_bytes,
            )
        )


@dataclass(frozen=True, slots=True)
class Capsule:
    """A parsed capsule; R is a validated subgroup point."""

    SIZE = 104
    NONCE_SIZE = 24
    SEALED_KEY_SIZE = DataKey.SIZE + 16

    r_point: Point
    nonce: bytes
    sealed_key: bytes

    def __post_init__(self) -> None:
        if len(self.nonce) != self.NONCE_SIZE or len(self.sealed_key) != self.SEALED_KEY_SIZE:
            raise MalformedCapsule("wrong nonce or sealed-key length")

    @classmethod
    def from_bytes(cls, data: bytes) -> Capsule:
        if len(data) != cls.SIZE:
            raise MalformedCapsule(f"{len(data)} bytes, expected {cls.SIZE}")
        try:
            r_point = Point.from_bytes(data[:32], "capsule R")
        except ValueError as e:
            raise MalformedCapsule("R is not a valid point") from e
        return cls(r_point, data[32:56], data[56:])

    def to_bytes(self) -> bytes:
        return self.r_point.to_bytes() + self.nonce + self.sealed_key


def make_capsule(dek: DataKey, ctx: CapsuleContext, committee_key: Point) -> Capsule:
    """Wrap `dek` so that any t committee nodes, and nobody fewer, can help unwrap it."""
    return _make_capsule(
        dek, ctx, committee_key, _r=SecretScalar.random(), _nonce=nacl.utils.random(24)
    )


def _make_capsule(
    dek: DataKey, ctx: CapsuleContext, committee_key: Point, *, _r: SecretScalar, _nonce: bytes
) -> Capsule:
    """`make_capsule` with explicit r and nonce: for test vectors only."""
    r_point = _r.public_point()
    z_point = committee_key * _r._scalar
    sealed = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        dek.to_secret_bytes(), ctx.to_bytes(), _nonce, kem_key(r_point, z_point)
    )
    return Capsule(r_point, _nonce, sealed)


def kem_key(r_point: Point, z_point: Point) -> bytes:
    """K = BLAKE2b-256(`datadebit/kem/v1` || R || Z)."""
    data = _KEM_TAG + r_point.to_bytes() + z_point.to_bytes()
    return hashlib.blake2b(data, digest_size=32).digest()


def open_capsule(capsule: Capsule, ctx: CapsuleContext, z_point: Point) -> DataKey:
    """Unwrap the DEK given Z = r·Y (rebuilt from shares); raise if Z or ctx is wrong."""
    try:
        dek = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            capsule.sealed_key, ctx.to_bytes(), capsule.nonce, kem_key(capsule.r_point, z_point)
        )
    except nacl.exceptions.CryptoError as e:
        raise CapsuleOpenFailed() from e
    return DataKey(dek)
