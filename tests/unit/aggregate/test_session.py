"""The whole protocol in memory: exact without noise, robust to a node down or lying,
every node excluding the same contributions, and noise of the calibrated variance."""

from __future__ import annotations

import nacl.public
import numpy as np
import pytest

from marketplace.aggregate import (
    BundleMismatch,
    InconsistentShares,
    NoisePlan,
    NotEnoughShares,
    OpenFailed,
    Query,
    calibrate,
    combine,
    decode,
    encode,
    open_partial,
    open_round1,
    output_dimension,
    partial,
    seal_partial,
)
from marketplace.aggregate.field import P, centered
from marketplace.aggregate.session import Partial, deal_round1
from tests.unit.aggregate.support import (
    Committee,
    bundles_for,
    lower_bound,
    owner,
    result,
    run,
    upper_bound,
)

AGES = Query("histogram", "age", 0.5, 1e-6, bins=(0, 18, 30, 45, 65, 120))
PRICE = Query("mean", "price", 1.0, 1e-6, scale=100, lo=0, hi=10_000)


def no_noise(query: Query, committee: Committee) -> NoisePlan:
    return NoisePlan.without_noise_for_tests(output_dimension(query), committee.n, committee.t)


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3)])
def test_histogram_without_noise_is_exact_and_invalid_owners_are_named(n: int, t: int) -> None:
    committee = Committee.make(n, t)
    ages = [3, 17, 18, 29.6, 44, 64, 65, 119, 150, -4]
    vectors = [encode(AGES, a) for a in ages]
    vectors.append(np.array([1, 1, 0, 0, 0]))  # two-hot
    vectors.append(np.array([2, P - 1, 0, 0, 0]))  # sums to one, not bits
    outcome = run(AGES, committee, bundles_for(AGES, committee, vectors), no_noise(AGES, committee))
    excluded = [owner(int(k) + 1) for k in np.flatnonzero(~outcome.valid)]
    assert excluded == [owner(11), owner(12)]
    assert result(outcome).tolist() == [3, 1, 2, 1, 3]  # 29.6 rounds to 30, -4 and 150 clip
    answer = decode(AGES, result(outcome), int(outcome.valid.sum()), 0.0)
    assert answer.values == (3.0, 1.0, 2.0, 1.0, 3.0)


def test_sum_mean_and_count_without_noise() -> None:
    committee = Committee.make(3, 2)
    prices = [12.34, 99.99, 0.0, 250.0, 20.0]  # 250 clips to 100.00
    for stat, expected in (("sum", 232.33), ("mean", 232.33 / 5)):
        query = Query(stat, "price", 1.0, 1e-6, scale=100, lo=0, hi=10_000)
        bundles = bundles_for(query, committee, [encode(query, p) for p in prices])
        outcome = run(query, committee, bundles, no_noise(query, committee))
        assert outcome.valid.all()
        answer = decode(query, result(outcome), 5, 0.0)
        assert answer.values[0] == pytest.approx(expected)
    count = Query("count", "smoker", 1.0, 1e-6)
    bundles = bundles_for(count, committee, [encode(count, v) for v in (True, False, 1, 0, 1)])
    outcome = run(count, committee, bundles, no_noise(count, committee))
    assert result(outcome).tolist() == [3]


def test_a_node_down_after_round_2_leaves_t_partials_enough() -> None:
    committee = Committee.make(5, 3)
    bundles = bundles_for(AGES, committee, [encode(AGES, a) for a in (20, 40, 40)])
    outcome = run(AGES, committee, bundles, no_noise(AGES, committee))
    for down in ({1, 2}, {4, 5}, {1, 5}):
        alive = {i: p for i, p in outcome.partials.items() if i not in down}
        assert combine(alive, 3).tolist() == [0, 1, 2, 0, 0]
    with pytest.raises(NotEnoughShares):
        combine({1: outcome.partials[1], 2: outcome.partials[2]}, 3)


def test_a_wrong_partial_is_named_and_dropping_it_recovers() -> None:
    committee = Committee.make(5, 3)
    bundles = bundles_for(AGES, committee, [encode(AGES, a) for a in (20, 70)])
    outcome = run(AGES, committee, bundles, no_noise(AGES, committee))
    partials = dict(outcome.partials)
    partials[3] = (partials[3] + np.array([0, 0, 0, 0, 7])) % P
    with pytest.raises(InconsistentShares) as info:
        combine(partials, 3)
    assert info.value.culprit == 3
    del partials[3]
    assert combine(partials, 3).tolist() == [0, 1, 0, 0, 1]
    four = {i: outcome.partials[i] for i in (1, 2, 4)} | {3: (outcome.partials[3] + 1) % P}
    with pytest.raises(InconsistentShares) as info:  # t+1 partials: detected, not named
        combine(four, 3)
    assert info.value.culprit is None


def test_a_bundle_one_node_cannot_open_is_excluded_by_every_node() -> None:
    committee = Committee.make(3, 2)
    bundles = bundles_for(AGES, committee, [encode(AGES, a) for a in (20, 40, 70)])
    outcome = run(AGES, committee, bundles, no_noise(AGES, committee), broken=[(2, 1)])
    assert outcome.valid.tolist() == [True, False, True]
    assert result(outcome).tolist() == [0, 1, 0, 0, 1]


def test_partials_are_sealed_to_the_buyer_and_bound_to_node_and_debit() -> None:
    committee = Committee.make(3, 2)
    bundles = bundles_for(AGES, committee, [encode(AGES, 20)])
    outcome = run(AGES, committee, bundles, no_noise(AGES, committee))
    buyer, other = nacl.public.PrivateKey.generate(), nacl.public.PrivateKey.generate()
    sealed = seal_partial(
        outcome.agg, Partial(2, outcome.partials[2], 1, 3), bytes(buyer.public_key)
    )
    opened = open_partial(outcome.agg, sealed, 2, buyer)
    assert opened.values.tolist() == outcome.partials[2].tolist()
    assert (opened.counted, opened.dealers) == (1, 3)
    with pytest.raises(BundleMismatch):
        open_partial(outcome.agg, sealed, 1, buyer)  # presented as node 1's
    with pytest.raises(OpenFailed):
        open_partial(outcome.agg, sealed, 2, other)
    with pytest.raises(OpenFailed):
        open_partial(outcome.agg, sealed[:-1] + bytes([sealed[-1] ^ 1]), 2, buyer)


def test_round1_boxes_are_for_one_recipient_and_candidate_set() -> None:
    committee = Committee.make(3, 2)
    bundles = bundles_for(AGES, committee, [encode(AGES, 20)])
    agg = run(AGES, committee, bundles, no_noise(AGES, committee)).agg
    payload = deal_round1(agg, 1, committee.public)
    with pytest.raises(OpenFailed):
        open_round1(agg, payload, 1, 2, committee.keys[0])  # node 1's key on node 2's box
    with pytest.raises(BundleMismatch):
        open_round1(agg, payload, 2, 2, committee.keys[1])  # claimed by another dealer
    other_set = type(agg)(
        **{**{f: getattr(agg, f) for f in agg.__dataclass_fields__}, "candidates": (owner(9),)}
    )
    with pytest.raises(BundleMismatch):
        open_round1(other_set, payload, 1, 2, committee.keys[1])


def test_partial_refuses_fewer_dealers_than_calibrated() -> None:
    committee = Committee.make(3, 2)
    bundles = bundles_for(AGES, committee, [encode(AGES, 20)])
    outcome = run(AGES, committee, bundles, no_noise(AGES, committee))
    with pytest.raises(NotEnoughShares):
        partial(outcome.agg, outcome.shares[1], outcome.valid, {})


def test_noise_variance_matches_the_plan() -> None:
    """Histogram of 400 bins, 3 runs of 2-of-3 with noise: 1,200 independent noise values
    e = aggregate - truth, each the sum of 3 dealers' N_Z(0, sigma_node²). Their sum of
    squares / (3·sigma_node²) is ~chi-square(1200) (discrete Gaussians with sigma_node > 8
    are normal to within 1e-100 in variance); both Laurent-Massart tails at e^-18.4, so the
    false-failure probability is < 1e-6 with room for the approximation."""
    committee = Committee.make(3, 2)
    bins = tuple(range(401))
    query = Query("histogram", "x", 0.5, 1e-6, bins=bins)
    plan = calibrate(query, 3, 2)
    assert plan.sigma_node == pytest.approx(plan.sigma / np.sqrt(2))
    values = [0.5, 10.5, 399.5, 200.5]
    truth = np.zeros(400, dtype=np.int64)
    for v in values:
        truth[int(v)] += 1
    errors = []
    for _ in range(3):
        outcome = run(
            query,
            committee,
            bundles_for(query, committee, [encode(query, v) for v in values]),
            plan,
        )
        errors.append(centered(result(outcome) - truth))
    e = np.concatenate(errors).astype(float)
    statistic = float((e**2).sum() / (3 * plan.sigma_node**2))
    assert lower_bound(e.size) < statistic < upper_bound(e.size)
