"""Committee epochs: a reshare keeps Y, so either epoch's shares open the same capsule, but
shares of two epochs never combine (verified-only types carry the epoch).

The reshare is done by hand here (what the DKG's reshare computes, without the ceremony):
each qualified epoch-1 node j deals its share s_j on a fresh polynomial f_j (f_j(0) = s_j,
degree t_new - 1), and new node i's share is s'_i = Σ_j λ_j·f_j(i), λ_j the Lagrange
coefficients at 0 over the qualified old indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from marketplace.keyrelease import (
    CommitteeKeys,
    DealtCommittee,
    InvalidField,
    InvalidShareProof,
    MixedEpochShares,
    NodeShare,
    Scalar,
    SecretScalar,
    ShareForAnotherCapsule,
    ShareKey,
    VerifiedKeyShare,
    combine,
    make_key_share,
)
from marketplace.keyrelease.shamir import evaluate, lagrange_coefficients
from tests.unit.keyrelease.support import DEBIT_ID, VERSION, Published, publish

EPOCH_2 = 2


def reshare(old: DealtCommittee, dealers: Sequence[int], size: int, threshold: int,
            epoch: int = EPOCH_2) -> DealtCommittee:
    """Epoch-1 nodes `dealers` reshare Y to a new `threshold`-of-`size` committee."""
    lambdas = lagrange_coefficients(list(dealers))
    polynomials = {
        j: [Scalar.from_bytes(old.shares[j - 1].secret.to_secret_bytes())]
        + [Scalar.random() for _ in range(threshold - 1)]
        for j in dealers
    }
    shares = []
    for i in range(1, size + 1):
        s_i = Scalar.from_int(0)
        for j, f_j in polynomials.items():
            s_i = s_i + lambdas[j] * evaluate(f_j, i)
        shares.append(NodeShare.from_secret(i, SecretScalar(s_i), epoch))
    keys = CommitteeKeys(threshold, old.keys.committee_key,
                         tuple(share.share_key for share in shares), epoch)
    return DealtCommittee(keys, tuple(shares))


def verified(published: Published, dealt: DealtCommittee,
             indices: Sequence[int]) -> list[VerifiedKeyShare]:
    return [
        make_key_share(dealt.shares[i - 1], published.bound, DEBIT_ID, VERSION).verify(
            dealt.keys.share_key(i), published.capsule
        )
        for i in indices
    ]


@pytest.fixture(scope="module")
def epochs() -> tuple[Published, DealtCommittee]:
    """Epoch 1: 2-of-3 dealt; epoch 2: 3-of-5 reshared by old nodes 1 and 3 (2 is down)."""
    published = publish(3, 2)
    return published, reshare(published.dealt, [1, 3], size=5, threshold=3)


def test_reshare_keeps_y_and_renews_every_share_key(
    epochs: tuple[Published, DealtCommittee],
) -> None:
    published, epoch_2 = epochs
    epoch_2.keys.check_consistent()
    assert epoch_2.keys.committee_key.to_bytes() == published.dealt.keys.committee_key.to_bytes()
    assert (published.dealt.keys.epoch, epoch_2.keys.epoch) == (1, EPOCH_2)
    old = {key.point for key in published.dealt.keys.share_keys}
    assert not old & {key.point for key in epoch_2.keys.share_keys}


def test_each_epoch_alone_opens_the_capsule(epochs: tuple[Published, DealtCommittee]) -> None:
    published, epoch_2 = epochs
    from_epoch_1 = combine(published.dealt.keys, published.capsule, published.ctx,
                           verified(published, published.dealt, [2, 3]))
    from_epoch_2 = combine(epoch_2.keys, published.capsule, published.ctx,
                           verified(published, epoch_2, [1, 4, 5]))
    assert from_epoch_1 == from_epoch_2 == published.dek


def test_verified_shares_carry_the_epoch_of_their_share_key(
    epochs: tuple[Published, DealtCommittee],
) -> None:
    published, epoch_2 = epochs
    assert [s.epoch for s in verified(published, published.dealt, [1, 2])] == [1, 1]
    assert [s.epoch for s in verified(published, epoch_2, [1, 2])] == [EPOCH_2, EPOCH_2]
    assert "epoch=2" in repr(verified(published, epoch_2, [1])[0])


@pytest.mark.parametrize("committee_epoch", [1, EPOCH_2])
def test_shares_of_two_epochs_cannot_be_combined(
    epochs: tuple[Published, DealtCommittee], committee_epoch: int,
) -> None:
    """Epoch-1 node 1 and epoch-2 nodes 2, 3: enough shares by count for either committee.

    Before epochs were carried, this mixture was only refused because Y_1 happened to
    differ (as ShareForAnotherCapsule, "another capsule or committee"); now the epoch
    itself is the reason, named with both epochs.
    """
    published, epoch_2 = epochs
    mixed = verified(published, published.dealt, [1]) + verified(published, epoch_2, [2, 3])
    committee = published.dealt.keys if committee_epoch == 1 else epoch_2.keys
    with pytest.raises(MixedEpochShares) as raised:
        combine(committee, published.capsule, published.ctx, mixed)
    stranger = 1 if committee_epoch == EPOCH_2 else EPOCH_2
    assert (raised.value.share_epoch, raised.value.committee_epoch) == (stranger, committee_epoch)
    assert f"epoch {stranger}" in str(raised.value)


def test_epoch_1_shares_are_refused_by_the_epoch_2_committee_even_at_full_count(
    epochs: tuple[Published, DealtCommittee],
) -> None:
    published, epoch_2 = epochs
    with pytest.raises(MixedEpochShares) as raised:
        combine(epoch_2.keys, published.capsule, published.ctx,
                verified(published, published.dealt, [1, 2, 3]))
    assert raised.value.node_index == 1


def test_same_index_same_point_but_another_epoch_is_refused(
    epochs: tuple[Published, DealtCommittee],
) -> None:
    """A committee re-stamped as another epoch (same Y_i, e.g. a re-deployed dealt committee):
    the share keys match byte for byte, so only the epoch tells the shares apart (the code
    before epochs compared Y_i only, and would have combined them)."""
    published, _ = epochs
    relabelled = CommitteeKeys(published.dealt.keys.threshold,
                               published.dealt.keys.committee_key,
                               published.dealt.keys.share_keys, epoch=7)
    shares = verified(published, published.dealt, [1, 2])
    with pytest.raises(MixedEpochShares):
        combine(relabelled, published.capsule, published.ctx, shares)


def test_an_epoch_1_share_does_not_verify_against_epoch_2_keys(
    epochs: tuple[Published, DealtCommittee],
) -> None:
    published, epoch_2 = epochs
    share = make_key_share(published.dealt.shares[0], published.bound, DEBIT_ID, VERSION)
    with pytest.raises(InvalidShareProof):
        share.verify(epoch_2.keys.share_key(1), published.capsule)


def test_the_old_y_i_comparison_still_guards_a_same_epoch_stranger(
    epochs: tuple[Published, DealtCommittee],
) -> None:
    """Two different committees both labelled epoch 2 (a buyer mixing up chains): the
    epoch matches, the share key does not."""
    published, epoch_2 = epochs
    other = reshare(published.dealt, [1, 2], size=5, threshold=3)
    shares = verified(published, other, [1]) + verified(published, epoch_2, [2, 3])
    with pytest.raises(ShareForAnotherCapsule):
        combine(epoch_2.keys, published.capsule, published.ctx, shares)


def test_committee_keys_stamp_their_share_keys_with_their_epoch(
    epochs: tuple[Published, DealtCommittee],
) -> None:
    published, _ = epochs
    keys = published.dealt.keys
    restamped = CommitteeKeys(keys.threshold, keys.committee_key, keys.share_keys, EPOCH_2)
    assert {key.epoch for key in restamped.share_keys} == {EPOCH_2}
    assert restamped.share_key(1) == ShareKey(keys.share_key(1).index,
                                              keys.share_key(1).point, EPOCH_2)
    raw = [key.point.to_bytes() for key in keys.share_keys]
    loaded = CommitteeKeys.from_bytes(keys.threshold, keys.committee_key.to_bytes(), raw,
                                      epoch=3)
    assert loaded.epoch == 3 and {key.epoch for key in loaded.share_keys} == {3}
    assert CommitteeKeys.from_bytes(keys.threshold, keys.committee_key.to_bytes(), raw).epoch == 1


@pytest.mark.parametrize("epoch", [0, -1, 2**64])
def test_epoch_out_of_uint64_range_is_refused(
    epochs: tuple[Published, DealtCommittee], epoch: int,
) -> None:
    keys = epochs[0].dealt.keys
    with pytest.raises(InvalidField):
        CommitteeKeys(keys.threshold, keys.committee_key, keys.share_keys, epoch)
    with pytest.raises(InvalidField):
        ShareKey(keys.share_key(1).index, keys.share_key(1).point, epoch)
