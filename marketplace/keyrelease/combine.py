"""The buyer's side: rebuild Z = r·Y from t verified shares, then the data key.

Z = Σ λ_i·D_i (Lagrange at 0 over the chosen indices), K = BLAKE2b-256(kem || R || Z),
DEK = open(capsule) under the context. Only `VerifiedKeyShare`s are accepted.
"""

from __future__ import annotations

from collections.abc import Iterable

from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import Capsule, CapsuleContext, open_capsule
from marketplace.keyrelease.errors import (
    DuplicateShare,
    MixedEpochShares,
    NotEnoughShares,
    ShareForAnotherCapsule,
)
from marketplace.keyrelease.group import IDENTITY
from marketplace.keyrelease.keys import CommitteeKeys
from marketplace.keyrelease.shamir import lagrange_coefficients
from marketplace.keyrelease.share import VerifiedKeyShare, open_sealed_share
from storage.keys import DataKey


def combine(
    committee: CommitteeKeys,
    capsule: Capsule,
    ctx: CapsuleContext,
    shares: Iterable[VerifiedKeyShare],
) -> DataKey:
    """The DEK from at least t verified shares of distinct nodes of `committee`'s epoch.

    Uses the t lowest indices when given more. Raises MixedEpochShares (a share verified
    under another epoch: its index and Y_i mean nothing in this one), NotEnoughShares,
    DuplicateShare, UnknownNode, ShareForAnotherCapsule, or CapsuleOpenFailed (wrong
    context).
    """
    by_index: dict[int, VerifiedKeyShare] = {}
    for share in shares:
        if not isinstance(share, VerifiedKeyShare):
            raise TypeError("combine takes only VerifiedKeyShare (see KeyShare.verify)")
        if share.epoch != committee.epoch:
            raise MixedEpochShares(share.index, share.epoch, committee.epoch)
        expected_key = committee.share_key(share.index).point
        if share.index in by_index:
            raise DuplicateShare(share.index)
        if share.capsule_r != capsule.r_point or share.share_key != expected_key:
            raise ShareForAnotherCapsule(share.index)
        by_index[share.index] = share
    if len(by_index) < committee.threshold:
        raise NotEnoughShares(len(by_index), committee.threshold)
    chosen = sorted(by_index)[: committee.threshold]
    z_point = IDENTITY
    for index, coefficient in lagrange_coefficients(chosen).items():
        z_point = z_point + by_index[index].d_point * coefficient
    return open_capsule(capsule, ctx, z_point)


def recover_data_key(
    committee: CommitteeKeys,
    capsule: Capsule,
    ctx: CapsuleContext,
    sealed_shares: Iterable[bytes],
    buyer_secret: BuyerSecretKey,
    debit_id: int,
    version: int,
) -> DataKey:
    """Open, verify and combine the sealed shares gateways returned for one request.

    Any bad share raises (named by node index); none is skipped silently.
    """
    verified = []
    for sealed in sealed_shares:
        key_share = open_sealed_share(sealed, buyer_secret, debit_id, version)
        verified.append(key_share.verify(committee.share_key(key_share.index), capsule))
    return combine(committee, capsule, ctx, verified)
