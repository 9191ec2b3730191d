"""Key shares: node i's D_i = s_i·R with a Chaum-Pedersen proof, sealed to one buyer.

The node seals `i(1) || D_i(32) || c(32) || z(32) || debitId(32 BE) || version(4 BE)`
to the buyer's X25519 key; only that buyer can open it. An opened `KeyShare` is just a
claim: it becomes a `VerifiedKeyShare`, the only kind `combine` accepts, through
`KeyShare.verify` against node i's share key Y_i from the contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.exceptions

from marketplace.keyrelease.buyer_key import BuyerPublicKey, BuyerSecretKey
from marketplace.keyrelease.capsule import BoundCapsule, Capsule
from marketplace.keyrelease.errors import (
    InvalidBuyerKey,
    InvalidField,
    InvalidShareProof,
    MalformedKeyShare,
    SealedShareMismatch,
    SealedShareOpenFailed,
    ShareKeyMismatch,
)
from marketplace.keyrelease.group import Point, Scalar, SecretScalar, hash_to_scalar, tag
from marketplace.keyrelease.keys import NodeIndex, NodeShare, ShareKey

_DLEQ_TAG = tag("dleq")
_UINT256_MAX = 2**256 - 1
_UINT32_MAX = 2**32 - 1

KEY_SHARE_SIZE = 1 + 32 + 32 + 32 + 32 + 4
"""i || D_i || c || z || debitId || version."""
SEALED_SHARE_SIZE = KEY_SHARE_SIZE + sodium.crypto_box_SEALBYTES


@dataclass(frozen=True, slots=True)
class DleqProof:
    """Chaum-Pedersen proof that log_G(Y_i) = log_R(D_i): challenge c, response z."""

    challenge: Scalar
    response: Scalar


def _challenge(y_i: Point, r: Point, d_i: Point, a1: Point, a2: Point) -> Scalar:
    return hash_to_scalar(
        _DLEQ_TAG, y_i.to_bytes(), r.to_bytes(), d_i.to_bytes(), a1.to_bytes(), a2.to_bytes()
    )


class VerifiedKeyShare:
    """A share whose proof checked out, for one capsule and one share key of one epoch.

    Only `KeyShare.verify` makes these; `combine` accepts nothing else, and only with the
    committee of the epoch the share was verified under (indices and Y_i change between
    epochs, so shares of two epochs never interpolate to Z).
    """

    __slots__ = ("capsule_r", "d_point", "epoch", "index", "share_key")

    def __init__(
        self,
        index: NodeIndex,
        d_point: Point,
        share_key: Point,
        capsule_r: Point,
        epoch: int,
        _token: object,
    ) -> None:
        if _token is not _VERIFIED:
            raise TypeError("a VerifiedKeyShare comes only from KeyShare.verify")
        self.index = index
        self.d_point = d_point
        self.share_key = share_key
        self.capsule_r = capsule_r
        self.epoch = epoch

    def __repr__(self) -> str:
        return f"VerifiedKeyShare(node={self.index}, epoch={self.epoch})"


_VERIFIED = object()


@dataclass(frozen=True, slots=True)
class KeyShare:
    """An opened, not yet verified share from node `index` for (debit_id, version)."""

    index: NodeIndex
    d_point: Point
    proof: DleqProof
    debit_id: int
    version: int

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                bytes([self.index]),
                self.d_point.to_bytes(),
                self.proof.challenge.to_bytes(),
                self.proof.response.to_bytes(),
                self.debit_id.to_bytes(32, "big"),
                self.version.to_bytes(4, "big"),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyShare:
        """Parse an opened share; every point and scalar is validated."""
        if len(data) != KEY_SHARE_SIZE:
            raise MalformedKeyShare(f"{len(data)} bytes, expected {KEY_SHARE_SIZE}")
        index = data[0]
        if index == 0:
            raise MalformedKeyShare("node index 0")
        return cls(
            index=NodeIndex(index),
            d_point=Point.from_bytes(data[1:33], f"D_i of node {index}"),
            proof=DleqProof(
                Scalar.from_bytes(data[33:65], f"proof challenge of node {index}"),
                Scalar.from_bytes(data[65:97], f"proof response of node {index}"),
            ),
            debit_id=int.from_bytes(data[97:129], "big"),
            version=int.from_bytes(data[129:133], "big"),
        )

    def verify(self, share_key: ShareKey, capsule: Capsule | BoundCapsule) -> VerifiedKeyShare:
        """Check the proof against Y_i (from the contract) and the capsule's R; the result
        carries `share_key.epoch`, the committee epoch it is valid in.

        Raises InvalidShareProof naming the node, or ShareKeyMismatch if `share_key`
        belongs to another node.
        """
        if share_key.index != self.index:
            raise ShareKeyMismatch(self.index, share_key.index)
        c, z = self.proof.challenge, self.proof.response
        r = capsule.r_point
        a1 = Point.base_mul(z) - share_key.point * c
        a2 = r * z - self.d_point * c
        if _challenge(share_key.point, r, self.d_point, a1, a2) != c:
            raise InvalidShareProof(self.index)
        return VerifiedKeyShare(
            self.index, self.d_point, share_key.point, r, share_key.epoch, _VERIFIED
        )


def make_key_share(
    share: NodeShare, capsule: BoundCapsule, debit_id: int, version: int
) -> KeyShare:
    """Node side: D_i = s_i·R and its proof, for one (debit, version).

    Only for a `BoundCapsule`: a node must never compute s_i·R for an R whose capsule
    was not proven to belong to the listing it checked the buyer's entitlement on.
    """
    return _make_key_share(share, capsule, debit_id, version, _k=SecretScalar.random())


def _make_key_share(
    share: NodeShare, capsule: BoundCapsule, debit_id: int, version: int, *, _k: SecretScalar
) -> KeyShare:
    """`make_key_share` with an explicit proof nonce k: for test vectors only."""
    if not isinstance(capsule, BoundCapsule):
        raise TypeError("nodes make shares only for a BoundCapsule (Capsule.bind(ctx))")
    if not 0 <= debit_id <= _UINT256_MAX:
        raise InvalidField("debitId", "must fit uint256")
    if not 1 <= version <= _UINT32_MAX:
        raise InvalidField("version", "must be in 1..2^32-1")
    s_i, k, r = share.secret._scalar, _k._scalar, capsule.r_point
    d_i = r * s_i
    a1, a2 = Point.base_mul(k), r * k
    c = _challenge(share.share_key.point, r, d_i, a1, a2)
    return KeyShare(share.index, d_i, DleqProof(c, k + c * s_i), debit_id, version)


def seal_key_share(key_share: KeyShare, buyer_key: BuyerPublicKey) -> bytes:
    """SealedBox(buyerKey) of the share: anonymous sender, only the buyer can open it."""
    try:
        return sodium.crypto_box_seal(key_share.to_bytes(), buyer_key.key)
    except nacl.exceptions.CryptoError as e:
        raise InvalidBuyerKey("libsodium cannot seal to it (a low-order X25519 point)") from e


def make_sealed_share(
    share: NodeShare,
    capsule: BoundCapsule,
    buyer_key: BuyerPublicKey,
    debit_id: int,
    version: int,
) -> bytes:
    """Node side, all in one: the sealed share to return for `POST /v1/keys`."""
    return seal_key_share(make_key_share(share, capsule, debit_id, version), buyer_key)


def open_sealed_share(
    sealed_share: bytes, buyer_secret: BuyerSecretKey, debit_id: int, version: int
) -> KeyShare:
    """Buyer side: open with the buyer's X25519 secret; refuse a share for another
    debit or version than the one asked for. The result still needs `verify`."""
    if len(sealed_share) != SEALED_SHARE_SIZE:
        raise MalformedKeyShare(
            f"sealed share is {len(sealed_share)} bytes, expected {SEALED_SHARE_SIZE}"
        )
    secret = buyer_secret.to_secret_bytes()
    try:
        plain = sodium.crypto_box_seal_open(sealed_share, buyer_secret.public_key().key, secret)
    except nacl.exceptions.CryptoError as e:
        raise SealedShareOpenFailed(len(sealed_share)) from e
    key_share = KeyShare.from_bytes(plain)
    if (key_share.debit_id, key_share.version) != (debit_id, version):
        raise SealedShareMismatch(debit_id, version, key_share.debit_id, key_share.version)
    return key_share
