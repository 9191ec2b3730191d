"""Combining: any t verified shares give the DEK; fewer, duplicates or strangers do not."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.keyrelease import (
    BuyerSecretKey,
    CapsuleNotBound,
    CapsuleOpenFailed,
    CommitteeKeys,
    DuplicateShare,
    InvalidShareProof,
    KeyShare,
    NotEnoughShares,
    ShareForAnotherCapsule,
    UnknownNode,
    VerifiedKeyShare,
    combine,
    make_capsule,
    make_key_share,
    make_sealed_share,
    recover_data_key,
)
from marketplace.keyrelease.capsule import open_capsule
from marketplace.keyrelease.shamir import interpolate
from marketplace.keyrelease.share import seal_key_share
from storage.keys import DataKey
from tests.unit.keyrelease.support import DEBIT_ID, VERSION, Published, make_ctx, publish


def verified_shares(published: Published, indices: list[int]) -> list[VerifiedKeyShare]:
    keys = published.dealt.keys
    return [
        make_key_share(published.dealt.shares[i - 1], published.bound, DEBIT_ID, VERSION).verify(
            keys.share_key(i), published.capsule
        )
        for i in indices
    ]


@st.composite
def committee_and_subset(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    n = draw(st.integers(min_value=1, max_value=7))
    t = draw(st.integers(min_value=1, max_value=n))
    subset = draw(st.lists(st.integers(1, n), min_size=t, max_size=n, unique=True))
    return n, t, subset


@settings(max_examples=30, deadline=None)
@given(committee_and_subset())
def test_any_t_of_n_shares_recover_the_dek(params: tuple[int, int, list[int]]) -> None:
    n, t, subset = params
    published = publish(n, t)
    shares = verified_shares(published, subset)
    assert combine(published.dealt.keys, published.capsule, published.ctx, shares) == (
        published.dek
    )


@settings(max_examples=20, deadline=None)
@given(committee_and_subset())
def test_t_minus_one_shares_cannot_be_combined(params: tuple[int, int, list[int]]) -> None:
    n, t, subset = params
    published = publish(n, t)
    few = subset[: t - 1]
    shares = verified_shares(published, few)
    with pytest.raises(NotEnoughShares) as caught:
        combine(published.dealt.keys, published.capsule, published.ctx, shares)
    assert (caught.value.have, caught.value.need) == (t - 1, t)
    # Interpolating t-1 shares anyway (skipping the check) gives a Z that does not open.
    z = interpolate({s.index: s.d_point for s in shares})
    with pytest.raises(CapsuleOpenFailed):
        open_capsule(published.capsule, published.ctx, z)


@pytest.mark.parametrize(
    "changes",
    [
        {"chain_id": 1},
        {"market": "0x" + "11" * 20},
        {"listing_id": 8},
        {"version": 4},
        {"cid_bytes": bytes.fromhex("01551220") + bytes(range(1, 33))},
    ],
    ids=["chain_id", "market", "listing_id", "version", "cid"],
)
def test_a_wrong_context_does_not_open(published: Published, changes: dict[str, object]) -> None:
    shares = verified_shares(published, [1, 2, 3])
    wrong = make_ctx(**changes)
    assert wrong != published.ctx
    with pytest.raises(CapsuleOpenFailed):
        combine(published.dealt.keys, published.capsule, wrong, shares)


def test_duplicate_shares_are_refused(published: Published) -> None:
    shares = verified_shares(published, [1, 2, 2])
    with pytest.raises(DuplicateShare) as caught:
        combine(published.dealt.keys, published.capsule, published.ctx, shares)
    assert caught.value.node_index == 2


def test_a_share_from_outside_the_committee_is_refused(published: Published) -> None:
    keys = published.dealt.keys
    smaller = CommitteeKeys(keys.threshold, keys.committee_key, keys.share_keys[:4])
    shares = verified_shares(published, [1, 2, 5])
    with pytest.raises(UnknownNode) as caught:
        combine(smaller, published.capsule, published.ctx, shares)
    assert caught.value.node_index == 5


def test_shares_verified_for_another_capsule_are_refused(published: Published) -> None:
    shares = verified_shares(published, [1, 2, 3])
    other = make_capsule(DataKey.generate(), published.ctx, published.dealt.keys.committee_key)
    with pytest.raises(ShareForAnotherCapsule):
        combine(published.dealt.keys, other, published.ctx, shares)


def test_shares_verified_under_another_committee_are_refused(published: Published) -> None:
    stranger = publish(5, 3)
    shares = verified_shares(published, [1, 2, 3])
    with pytest.raises(ShareForAnotherCapsule):
        combine(stranger.dealt.keys, published.capsule, published.ctx, shares)


def test_unverified_shares_are_refused(published: Published) -> None:
    raw: list[KeyShare] = [
        make_key_share(published.dealt.shares[i], published.bound, DEBIT_ID, VERSION)
        for i in range(3)
    ]
    with pytest.raises(TypeError, match="VerifiedKeyShare"):
        combine(published.dealt.keys, published.capsule, published.ctx, raw)  # type: ignore[arg-type]


def test_more_than_t_shares_still_recover(published: Published) -> None:
    shares = verified_shares(published, [5, 4, 3, 2, 1])
    assert combine(published.dealt.keys, published.capsule, published.ctx, shares) == (
        published.dek
    )


def test_recover_data_key_end_to_end(published: Published, buyer: BuyerSecretKey) -> None:
    sealed = [
        make_sealed_share(s, published.bound, buyer.public_key(), DEBIT_ID, VERSION)
        for s in published.dealt.shares[2:]
    ]
    dek = recover_data_key(
        published.dealt.keys, published.capsule, published.ctx, sealed, buyer, DEBIT_ID, VERSION
    )
    assert dek == published.dek


def test_recover_data_key_names_a_bad_node(published: Published, buyer: BuyerSecretKey) -> None:
    """Node 4 answers with node 5's D under its own index: the proof fails, naming node 4."""
    good = [
        make_sealed_share(s, published.bound, buyer.public_key(), DEBIT_ID, VERSION)
        for s in published.dealt.shares[:2]
    ]
    real = make_key_share(published.dealt.shares[4], published.bound, DEBIT_ID, VERSION)
    forged_plain = bytes([4]) + real.to_bytes()[1:]
    forged = seal_key_share(KeyShare.from_bytes(forged_plain), buyer.public_key())
    with pytest.raises(InvalidShareProof) as caught:
        recover_data_key(
            published.dealt.keys,
            published.capsule,
            published.ctx,
            [*good, forged],
            buyer,
            DEBIT_ID,
            VERSION,
        )
    assert caught.value.node_index == 4


def test_a_copied_r_does_not_buy_someone_elses_key(published: Published) -> None:
    """An attacker copies the victim's R into a capsule of their own listing, hoping to
    buy that (entitled) version and combine the released shares into r·Y. The capsule's
    proof of knowledge of r, bound to the context, stops it before any node computes a
    share: nodes serve only a `BoundCapsule`."""
    attacker_ctx = make_ctx(listing_id=999, version=1)
    junk = make_capsule(DataKey.generate(), attacker_ctx, published.dealt.keys.committee_key)
    copied = replace(junk, r_point=published.capsule.r_point)
    with pytest.raises(CapsuleNotBound):
        copied.bind(attacker_ctx)
    with pytest.raises(CapsuleNotBound):  # the victim's whole capsule, re-published
        published.capsule.bind(attacker_ctx)
    shifted = replace(junk, r_point=published.capsule.r_point + junk.r_point)  # R + r'·G
    with pytest.raises(CapsuleNotBound):
        shifted.bind(attacker_ctx)
    with pytest.raises(TypeError):  # and no node function takes an unbound capsule
        make_key_share(published.dealt.shares[0], copied, 1, 1)  # type: ignore[arg-type]


def test_without_the_binding_the_copied_r_attack_would_work(published: Published) -> None:
    """Why the proof is needed: shares computed on a copied R (bypassing `bind`, as a
    DESIGN §4 v1 node would) really do recover the victim's key. If this ever stopped
    holding, the test above would be proving nothing."""
    attacker_ctx = make_ctx(listing_id=999, version=1)
    junk = make_capsule(DataKey.generate(), attacker_ctx, published.dealt.keys.committee_key)
    copied = replace(junk, r_point=published.capsule.r_point)
    z = interpolate(
        {s.index: copied.r_point * s.secret._scalar for s in published.dealt.shares[:3]}
    )
    assert open_capsule(published.capsule, published.ctx, z) == published.dek
