"""The owner's side: wrap a version's data key (DEK) for the committee, in a capsule.

capsule (v2, 168 bytes) = R(32) || nonce(24) || XChaCha20-Poly1305(K, DEK, aad=ctx)(48)
|| c(32) || s(32), with R = r·G, K = BLAKE2b-256(`datadebit/kem/v1` || R || r·Y). Only t
nodes together can rebuild r·Y from R. The context binds the capsule to one chain,
market, listing, version and CID, so a capsule copied elsewhere does not open.

(c, s) is a Schnorr proof of knowledge of r whose challenge hashes the context and the
rest of the capsule. Without it (DESIGN §4 as first written) anyone could copy a victim's
R into a capsule of their own listing, buy that from themselves and have the committee
compute r·Y for them: the AEAD context only protects the *sealed key*, not R. With it,
R can only be reused by whoever knows r, who can compute r·Y alone anyway. Nodes
therefore make shares only for a `BoundCapsule`, which `Capsule.bind` returns once the
proof checks out against the context the node rebuilt from the chain.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils
from eth_utils.address import to_checksum_address

from marketplace.keyrelease.errors import (
    CapsuleNotBound,
    CapsuleOpenFailed,
    InvalidField,
    InvalidScalar,
    MalformedCapsule,
)
from marketplace.keyrelease.group import Point, Scalar, SecretScalar, hash_to_scalar, tag
from storage.keys import DataKey

_KEM_TAG = tag("kem")
_CTX_TAG = tag("ctx")
_PROOF_TAG = tag("capsule-proof")
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
class CapsuleProof:
    """Schnorr proof of knowledge of r = log_G(R), bound to the context: (c, s)."""

    challenge: Scalar
    response: Scalar


@dataclass(frozen=True, slots=True)
class Capsule:
    """A parsed capsule: R is a validated subgroup point, the proof's scalars canonical.

    Parsing says nothing about where the capsule belongs; `bind` checks that.
    """

    SIZE = 168
    NONCE_SIZE = 24
    SEALED_KEY_SIZE = DataKey.SIZE + 16

    r_point: Point
    nonce: bytes
    sealed_key: bytes
    proof: CapsuleProof

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
        try:
            proof = CapsuleProof(
                Scalar.from_bytes(data[104:136], "capsule proof challenge"),
                Scalar.from_bytes(data[136:168], "capsule proof response"),
            )
        except InvalidScalar as e:
            raise MalformedCapsule("the proof is not two canonical scalars") from e
        return cls(r_point, data[32:56], data[56:104], proof)

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                self.r_point.to_bytes(),
                self.nonce,
                self.sealed_key,
                self.proof.challenge.to_bytes(),
                self.proof.response.to_bytes(),
            )
        )

    def bind(self, ctx: CapsuleContext) -> BoundCapsule:
        """Check the proof against `ctx`; raise CapsuleNotBound if it was made for another
        context (or R was copied from someone else's capsule)."""
        c, s = self.proof.challenge, self.proof.response
        commitment = Point.base_mul(s) - self.r_point * c
        if _proof_challenge(self.r_point, commitment, self.nonce, self.sealed_key, ctx) != c:
            raise CapsuleNotBound()
        return BoundCapsule(self, ctx, _BOUND)


_BOUND = object()


class BoundCapsule:
    """A capsule whose proof checked out for one context: the only kind nodes serve.

    Only `Capsule.bind` makes these.
    """

    __slots__ = ("capsule", "ctx")

    def __init__(self, capsule: Capsule, ctx: CapsuleContext, _token: object) -> None:
        if _token is not _BOUND:
            raise TypeError("use Capsule.bind(ctx)")
        self.capsule = capsule
        self.ctx = ctx

    @property
    def r_point(self) -> Point:
        return self.capsule.r_point

    def __repr__(self) -> str:
        return f"BoundCapsule(listing={self.ctx.listing_id}, version={self.ctx.version})"


def _proof_challenge(
    r_point: Point, commitment: Point, nonce: bytes, sealed_key: bytes, ctx: CapsuleContext
) -> Scalar:
    """c = Hs(`datadebit/capsule-proof/v1`, R || A || nonce || sealed key || ctx); ctx goes
    last because it alone has a variable length."""
    return hash_to_scalar(
        _PROOF_TAG, r_point.to_bytes(), commitment.to_bytes(), nonce, sealed_key, ctx.to_bytes()
    )


def make_capsule(dek: DataKey, ctx: CapsuleContext, committee_key: Point) -> Capsule:
    """Wrap `dek` so that any t committee nodes, and nobody fewer, can help unwrap it."""
    return _make_capsule(
        dek,
        ctx,
        committee_key,
        _r=SecretScalar.random(),
        _nonce=nacl.utils.random(24),
        _k=SecretScalar.random(),
    )


def _make_capsule(
    dek: DataKey,
    ctx: CapsuleContext,
    committee_key: Point,
    *,
    _r: SecretScalar,
    _nonce: bytes,
    _k: SecretScalar,
) -> Capsule:
    """`make_capsule` with explicit r, nonce and proof nonce k: for test vectors only."""
    r_point = _r.public_point()
    z_point = committee_key * _r._scalar
    sealed = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        dek.to_secret_bytes(), ctx.to_bytes(), _nonce, kem_key(r_point, z_point)
    )
    c = _proof_challenge(r_point, _k.public_point(), _nonce, sealed, ctx)
    proof = CapsuleProof(c, _k._scalar + c * _r._scalar)
    return Capsule(r_point, _nonce, sealed, proof)


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
