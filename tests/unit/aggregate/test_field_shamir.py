"""The field and Shamir sharing: ranges, round trips, privacy of t-1 shares, consistency."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.aggregate.errors import InvalidParameters, NotEnoughShares
from marketplace.aggregate.field import (
    P,
    centered,
    check_elements,
    from_bytes,
    random_elements,
    reduce,
    to_bytes,
)
from marketplace.aggregate.shamir import (
    evaluate,
    inconsistent,
    interpolate,
    lagrange_at_zero,
    reconstruct,
    share,
)
from tests.unit.aggregate.support import homogeneity, upper_bound

committees = st.sampled_from([(1, 1), (3, 2), (5, 3), (7, 4), (4, 4)])


def test_random_elements_are_canonical_and_cover_the_field() -> None:
    draws = random_elements(200_000)
    assert draws.dtype == np.int64 and check_elements(draws)
    # 2^31 - 1 values: the top and bottom 1/16 of the field are both hit (fails w.p. ~e^-12500)
    assert draws.max() > P - P // 16 and draws.min() < P // 16


def test_random_elements_on_a_small_prime_reject_out_of_range_draws() -> None:
    draws = random_elements(10_000, prime=5)
    assert set(np.unique(draws).tolist()) == {0, 1, 2, 3, 4}


def test_centered_representatives() -> None:
    assert centered(np.array([0, 1, P // 2, P // 2 + 1, P - 1])).tolist() == [
        0,
        1,
        P // 2,
        -(P // 2),
        -1,
    ]
    assert reduce(np.array([-1, -P, P])).tolist() == [P - 1, 0, 0]


def test_bytes_round_trip_is_little_endian_uint32() -> None:
    values = np.array([1, P - 1, 256], dtype=np.int64)
    data = to_bytes(values)
    assert data[:4] == b"\x01\x00\x00\x00" and len(data) == 12
    assert from_bytes(data, 3).tolist() == values.tolist()
    with pytest.raises(ValueError):
        from_bytes(data, 4)


@settings(max_examples=60, deadline=None)
@given(committees, st.lists(st.integers(0, P - 1), min_size=1, max_size=20), st.data())
def test_any_t_shares_reconstruct_the_vector(
    nt: tuple[int, int], values: list[int], data: st.DataObject
) -> None:
    n, t = nt
    vector = np.array(values, dtype=np.int64)
    shares = share(vector, n, t)
    subset = data.draw(
        st.lists(st.sampled_from(range(1, n + 1)), min_size=t, max_size=t, unique=True)
    )
    assert reconstruct({i: shares[i] for i in subset}, t).tolist() == values


def test_reconstruct_refuses_fewer_than_t_shares() -> None:
    shares = share(np.array([5, 6]), 5, 3)
    with pytest.raises(NotEnoughShares) as info:
        reconstruct({1: shares[1], 4: shares[4]}, 3)
    assert (info.value.have, info.value.need) == (2, 3)


@pytest.mark.parametrize(("n", "t"), [(0, 1), (3, 0), (3, 4), (256, 2)])
def test_share_refuses_bad_committees(n: int, t: int) -> None:
    with pytest.raises(InvalidParameters):
        share(np.array([1]), n, t)


def test_share_refuses_non_field_elements() -> None:
    with pytest.raises(InvalidParameters):
        share(np.array([P]), 3, 2)
    with pytest.raises(InvalidParameters):
        share(np.array([-1]), 3, 2)


def test_lagrange_refuses_repeated_indices() -> None:
    with pytest.raises(InvalidParameters):
        lagrange_at_zero([1, 2, 2])


def test_t_minus_1_shares_are_consistent_with_every_input_exhaustively() -> None:
    """Over GF(7), 3-of-5: every polynomial of degree <= 2 is enumerated; for every pair of
    nodes and every pair of values they could hold, each of the 7 possible inputs is
    explained by exactly one polynomial. The view of t-1 nodes is independent of the input."""
    prime, t, n = 7, 3, 5
    grid = np.array(list(itertools.product(range(prime), repeat=t)), dtype=np.int64).T
    values = evaluate(grid, range(1, n + 1), prime=prime)
    for pair in itertools.combinations(range(1, n + 1), t - 1):
        table = np.zeros((prime,) * (t - 1) + (prime,), dtype=np.int64)
        np.add.at(table, (values[pair[0]], values[pair[1]], grid[0]), 1)
        assert (table == 1).all(), pair


def test_t_minus_1_shares_interpolate_to_any_chosen_input() -> None:
    """The interpolation argument in code: for real shares of 1, adding a point (0, y) for
    any y gives a degree-(t-1) polynomial through the t-1 shares: all inputs fit."""
    shares = share(np.array([1]), 5, 3)
    seen = {2: shares[2], 5: shares[5]}
    for y in (0, 1, 12345, P - 1):
        points = {0: np.array([y])} | seen
        assert interpolate(points, 0).tolist() == [y]
        assert interpolate(points, 2).tolist() == shares[2].tolist()


def test_a_nodes_share_values_look_the_same_for_two_inputs() -> None:
    """Chi-square (64 bins by the top 6 bits) of node 2's share of input 0 vs input 1,
    40,000 sharings each. False-failure probability < 1e-6 (support.py)."""
    zeros = share(np.zeros(40_000, dtype=np.int64), 3, 2)[2] >> 25
    ones = share(np.ones(40_000, dtype=np.int64), 3, 2)[2] >> 25
    statistic, df = homogeneity(zeros[:, None], ones[:, None])
    assert df == 63
    assert statistic < upper_bound(df)


def test_one_wrong_share_is_detected_with_t_plus_1_and_named_with_t_plus_2() -> None:
    shares = share(random_elements(8), 5, 3)
    assert inconsistent(shares, 3).consistent
    bad = dict(shares)
    bad[4] = (bad[4] + np.array([0, 0, 1, 0, 0, 0, 0, 0])) % P
    four = {i: bad[i] for i in (1, 2, 3, 4)}
    report = inconsistent(four, 3)
    assert not report.consistent and report.detectable and not report.identifiable
    assert report.culprit is None
    report = inconsistent(bad, 3)
    assert not report.consistent and report.identifiable and report.culprit == 4


def test_two_wrong_shares_are_detected_but_nobody_is_named() -> None:
    shares = share(random_elements(4), 7, 3)
    shares[2] = (shares[2] + 1) % P
    shares[6] = (shares[6] + 1) % P
    report = inconsistent(shares, 3)
    assert not report.consistent and report.culprit is None
