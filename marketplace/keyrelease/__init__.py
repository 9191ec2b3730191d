"""Threshold key release (DESIGN §4): pure crypto, no I/O.

Owner: `make_capsule`. Dealer: `deal`. Node: `Capsule.bind` (checks the capsule's proof
against the context rebuilt from the chain), then `make_sealed_share`. Buyer:
`BuyerSecretKey.from_account` / `.from_signature`, `open_sealed_share`, `KeyShare.verify`,
`combine` (or `recover_data_key`, all three at once).
"""

from marketplace.keyrelease.buyer_key import BuyerPublicKey, BuyerSecretKey
from marketplace.keyrelease.capsule import (
    BoundCapsule,
    Capsule,
    CapsuleContext,
    CapsuleProof,
    make_capsule,
)
from marketplace.keyrelease.combine import combine, recover_data_key
from marketplace.keyrelease.dealer import DealtCommittee, deal
from marketplace.keyrelease.errors import (
    CapsuleNotBound,
    CapsuleOpenFailed,
    DuplicateShare,
    InconsistentCommittee,
    InvalidBuyerKey,
    InvalidField,
    InvalidPoint,
    InvalidScalar,
    InvalidShareProof,
    InvalidThreshold,
    KeyReleaseError,
    MalformedCapsule,
    MalformedKeyShare,
    MixedEpochShares,
    NotEnoughShares,
    SealedShareMismatch,
    SealedShareOpenFailed,
    ShareForAnotherCapsule,
    ShareKeyMismatch,
    UnknownNode,
)
from marketplace.keyrelease.group import L, Point, Scalar, SecretScalar
from marketplace.keyrelease.keys import CommitteeKeys, NodeIndex, NodeShare, ShareKey
from marketplace.keyrelease.share import (
    SEALED_SHARE_SIZE,
    KeyShare,
    VerifiedKeyShare,
    make_key_share,
    make_sealed_share,
    open_sealed_share,
)

__all__ = [
    "SEALED_SHARE_SIZE",
    "BoundCapsule",
    "BuyerPublicKey",
    "BuyerSecretKey",
    "Capsule",
    "CapsuleContext",
    "CapsuleNotBound",
    "CapsuleOpenFailed",
    "CapsuleProof",
    "CommitteeKeys",
    "DealtCommittee",
    "DuplicateShare",
    "InconsistentCommittee",
    "InvalidBuyerKey",
    "InvalidField",
    "InvalidPoint",
    "InvalidScalar",
    "InvalidShareProof",
    "InvalidThreshold",
    "KeyReleaseError",
    "KeyShare",
    "L",
    "MalformedCapsule",
    "MalformedKeyShare",
    "MixedEpochShares",
    "NodeIndex",
    "NodeShare",
    "NotEnoughShares",
    "Point",
    "Scalar",
    "SealedShareMismatch",
    "SealedShareOpenFailed",
    "SecretScalar",
    "ShareForAnotherCapsule",
    "ShareKey",
    "ShareKeyMismatch",
    "UnknownNode",
    "VerifiedKeyShare",
    "combine",
    "deal",
    "make_capsule",
    "make_key_share",
    "make_sealed_share",
    "open_sealed_share",
    "recover_data_key",
]
