"""The validity check on shares: it catches invalid contributions, and its openings leak
nothing else — but only because of the zero-sharing re-randomisation (DESIGN §10,
Careful). The leak without it is demonstrated, then shown to be closed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.aggregate.encoding import LinearConstraint
from marketplace.aggregate.errors import InvalidParameters, NotEnoughShares
from marketplace.aggregate.field import P, Vector, random_elements
from marketplace.aggregate.shamir import reconstruct, share
from marketplace.aggregate.validity import (
    DEGREE,
    Opening,
    check_coefficients,
    inconsistent_openings,
    mask_sharing,
    open_checks,
    verdicts,
    zero_sharing,
)
from tests.unit.aggregate.support import SEED, homogeneity, upper_bound

SMALL_FIELD_SEED = b"\x01" * 32
ONE_HOT = LinearConstraint(np.ones(2, dtype=np.int64), 1)


def openings_for(
    shares: dict[int, Vector],
    constraint: LinearConstraint | None,
    *,
    n: int,
    t: int,
    masked: bool = True,
    degree_check: bool = True,
    prime: int = P,
    seed: bytes = SEED,
) -> dict[int, Opening]:
    """Every node's opening for the contributions in `shares` (rows), all n nodes dealing."""
    count, d = shares[1].shape
    rho = check_coefficients(seed, d, prime=prime)
    rho_degree = check_coefficients(seed, d, purpose=DEGREE, prime=prime)
    if not degree_check:
        rho_degree = np.zeros_like(rho_degree)
    zeros = [zero_sharing(count, n, t, prime=prime) for _ in range(n)] if masked else []
    masks = [mask_sharing(count, n, t, prime=prime) for _ in range(n)]
    return {
        i: open_checks(
            shares[i],
            rho,
            rho_degree,
            constraint,
            {d: z[i] for d, z in enumerate(zeros, 1)},
            {d: m[i] for d, m in enumerate(masks, 1)},
            prime=prime,
        )
        for i in range(1, n + 1)
    }


def test_check_coefficients_are_deterministic_canonical_and_purpose_bound() -> None:
    rho = check_coefficients(SEED, 1000)
    assert rho.tolist() == check_coefficients(SEED, 1000).tolist()
    assert ((rho >= 0) & (rho < P)).all() and len(set(rho.tolist())) == 1000
    assert rho.tolist() != check_coefficients(b"\x12" * 32, 1000).tolist()
    assert rho.tolist() != check_coefficients(SEED, 1000, purpose=DEGREE).tolist()
    assert set(check_coefficients(SEED, 500, prime=5).tolist()) == {0, 1, 2, 3, 4}


def test_zero_sharing_has_degree_2t_minus_2_and_constant_zero() -> None:
    z = zero_sharing(6, 5, 3)
    assert reconstruct(z, 5).tolist() == [0] * 6  # degree 4 = 2(t-1): 5 points give 0
    with pytest.raises(InvalidParameters):
        zero_sharing(1, 4, 3)  # n < 2t-1


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3), (4, 2), (1, 1)])
def test_valid_one_hot_rows_pass_and_invalid_rows_fail(n: int, t: int) -> None:
    rows = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [2, P - 1], [P - 1, 2]], dtype=np.int64)
    shares = share(rows, n, t)
    ok = verdicts(openings_for(shares, ONE_HOT, n=n, t=t), t)
    assert ok.tolist() == [True, True, False, False, False, False]


def test_verdicts_need_2t_minus_1_openings() -> None:
    shares = share(np.array([[1, 0]]), 5, 3)
    openings = openings_for(shares, ONE_HOT, n=5, t=3)
    with pytest.raises(NotEnoughShares) as info:
        verdicts({i: openings[i] for i in (1, 2, 3, 4)}, 3)
    assert info.value.need == 5


def test_one_bad_opening_invalidates_never_validates_and_is_named() -> None:
    rows = np.array([[1, 0], [1, 1]], dtype=np.int64)
    openings = openings_for(share(rows, 5, 2), ONE_HOT, n=5, t=2)
    o = openings[4]
    openings[4] = Opening((o.products + 1) % P, o.linear, o.degree)
    assert verdicts(openings, 2).tolist() == [False, False]
    report = inconsistent_openings(openings, 2)
    assert not report.consistent and report.culprit == 4


# --- the leak of unmasked product openings, t = 2 ------------------------------------------


def one_hot_attack(rho: Vector, mine: Vector, q: dict[int, Vector]) -> list[list[int]]:
    """Node 1 (t = 2, n = 3) from its shares s_j = x_j + a_j and the three opened q(i):
    q's x-coefficient is Σ_j r_j a_j (2x_j - 1), i.e. -Σ_{j≠p} r_j s_j + r_p (s_p - 1) for a
    one-hot at p. Returns, per contribution row, every position p that fits."""
    inv2 = pow(2, -1, P)
    c2 = (q[1] - 2 * q[2] + q[3]) % P * inv2 % P
    c1 = (q[2] - q[1] - 3 * c2) % P
    base = (-(mine * rho) % P).sum(axis=-1) % P
    found = []
    for row in range(mine.shape[0]):
        fits = [
            p
            for p in range(mine.shape[1])
            if (base[row] + rho[p] * mine[row, p] + rho[p] * (mine[row, p] - 1)) % P == c1[row]
        ]
        found.append(fits)
    return found


@pytest.mark.parametrize("masked", [False, True])
def test_t2_leak_without_masking_and_none_with_it(masked: bool) -> None:
    """Unmasked: node 1 recovers every owner's one-hot position (a wrong extra fit has
    probability 1/p per position). Masked: no position fits (false-failure probability
    <= 50·8/p < 2e-7)."""
    positions = np.arange(50) % 8
    rows = np.eye(8, dtype=np.int64)[positions]
    shares = share(rows, 3, 2)
    rho = check_coefficients(SEED, 8)
    openings = openings_for(
        shares, LinearConstraint(np.ones(8, np.int64), 1), n=3, t=2, masked=masked
    )
    assert verdicts(openings, 2).all()
    found = one_hot_attack(rho, shares[1], {i: o.products for i, o in openings.items()})
    if masked:
        assert found == [[]] * 50
    else:
        assert found == [[int(p)] for p in positions]


def corrupt_view(inputs: Vector, *, masked: bool, prime: int = 5) -> Vector:
    """Node 1's whole view (t = 2, n = 3) for each row of `inputs`: its two shares, the sums
    of the zero and mask shares it received (it only ever uses their sums; the individual
    values are independent uniform given the sums), and every node's opening."""
    n, t = 3, 2
    shares = share(inputs, n, t, prime=prime)
    count = inputs.shape[0]
    zeros = [zero_sharing(count, n, t, prime=prime) for _ in range(n)] if masked else []
    masks = [mask_sharing(count, n, t, prime=prime) for _ in range(n)]
    rho = check_coefficients(SMALL_FIELD_SEED, 2, prime=prime)
    rho_degree = check_coefficients(SMALL_FIELD_SEED, 2, purpose=DEGREE, prime=prime)
    assert rho.all() and rho_degree.all()  # this fixed seed gives non-zero coefficients
    openings = {
        i: open_checks(
            shares[i],
            rho,
            rho_degree,
            ONE_HOT,
            {d: z[i] for d, z in enumerate(zeros, 1)},
            {d: m[i] for d, m in enumerate(masks, 1)},
            prime=prime,
        )
        for i in range(1, n + 1)
    }
    columns = [shares[1][:, 0], shares[1][:, 1]]
    columns.append(sum((z[1] for z in zeros), np.zeros(count, np.int64)) % prime)
    columns.append(sum((m[1] for m in masks), np.zeros(count, np.int64)) % prime)
    for i in range(1, n + 1):
        o = openings[i]
        assert o.linear is not None
        columns += [o.products, o.linear, o.degree]
    return np.stack(columns, axis=1)


@pytest.mark.parametrize("masked", [True, False])
def test_corrupt_nodes_view_is_the_same_for_two_valid_inputs(masked: bool) -> None:
    """Over GF(5), 150,000 runs each of inputs (1, 0) and (0, 1): node 1's view has 6 free
    uniform coordinates (5^6 cells, ~19 expected per cell). Masked: the two-sample
    chi-square stays below the Laurent-Massart bound (false failure < 1e-6, support.py).
    Unmasked: it is far above (the leak is real; the test has power)."""
    count = 150_000
    a = corrupt_view(np.tile([1, 0], (count, 1)), masked=masked)
    b = corrupt_view(np.tile([0, 1], (count, 1)), masked=masked)
    statistic, df = homogeneity(a, b)
    if masked:
        assert df == 5**6 - 1
        assert statistic < upper_bound(df)
    else:
        assert statistic > 10 * upper_bound(df)


# --- the degree check: an owner's inconsistent sharing ---------------------------------------


def crafted_shares(beta: int) -> dict[int, Vector]:
    """A one-hot (1, 0) shared on g_j(X) = x_j + b_j·X(X-3), b = (beta, -beta): degree 2,
    not t-1 = 1. Its q and l pass their checks at nodes 1..3, yet nodes {1,2} reconstruct
    (1 - 2·beta, 2·beta) and {2,3} (1 - 6·beta, 6·beta): the buyer's answer would depend
    on which nodes answered, by an amount the owner chooses."""
    x = np.array([1, 0], dtype=np.int64)
    b = np.array([beta, P - beta], dtype=np.int64)
    return {i: ((x + b * (i * (i - 3) % P)) % P)[None, :] for i in (1, 2, 3)}


def test_inconsistent_sharing_fools_the_product_check_but_not_the_degree_check() -> None:
    shares = crafted_shares(1000)
    assert reconstruct({1: shares[1], 2: shares[2]}, 2).tolist() == [[P - 1999, 2000]]
    assert reconstruct({2: shares[2], 3: shares[3]}, 2).tolist() == [[P - 5999, 6000]]
    fooled = openings_for(shares, ONE_HOT, n=3, t=2, degree_check=False)
    assert verdicts(fooled, 2).tolist() == [True]
    assert verdicts(openings_for(shares, ONE_HOT, n=3, t=2), 2).tolist() == [False]


# --- a malicious owner moves the result by at most one honest contribution -------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from([0, 1, 2, P - 1, P - 2, 3]) | st.integers(0, P - 1), min_size=4, max_size=4
    ),
    st.sampled_from([None, 1, 2, 3]),
    st.integers(1, P - 1),
    st.sampled_from([(3, 2), (5, 3), (5, 2)]),
)
def test_a_contribution_that_passes_is_one_honest_one_hot(
    values: list[int], tampered: int | None, delta: int, nt: tuple[int, int]
) -> None:
    n, t = nt
    vector = np.array(values, dtype=np.int64)
    shares = {i: s[None, :] for i, s in share(vector, n, t).items()}
    if tampered is not None:  # the owner sends one node a share off the polynomial
        shares[tampered] = shares[tampered].copy()
        shares[tampered][0, 0] = (shares[tampered][0, 0] + delta) % P
    constraint = LinearConstraint(np.ones(4, dtype=np.int64), 1)
    valid = bool(verdicts(openings_for(shares, constraint, n=n, t=t), t)[0])
    is_one_hot = sorted(values) == [0, 0, 0, 1]
    assert valid == (is_one_hot and tampered is None)


def test_sum_encoding_out_of_bounds_is_refused() -> None:
    """Range 0..100 (7 bits): v' = 120 with complement bits forced to sum to 100 needs a
    non-bit entry, which the product check rejects; the honest 100 passes."""
    powers = [1 << m for m in range(7)]
    constraint = LinearConstraint(np.array(powers * 2, dtype=np.int64), 100)
    honest = [(100 >> m) & 1 for m in range(7)] + [0] * 7
    cheat = [(120 >> m) & 1 for m in range(7)] + [P - 20] + [0] * 6
    unbalanced = [(120 >> m) & 1 for m in range(7)] + [0] * 7  # bits, but sum 120 != 100
    rows = np.array([honest, cheat, unbalanced], dtype=np.int64)
    valid = verdicts(openings_for(share(rows, 3, 2), constraint, n=3, t=2), 2)
    assert valid.tolist() == [True, False, False]


def test_count_accepts_bits_only() -> None:
    rows = np.array([[0], [1], [2], [P - 1]], dtype=np.int64)
    valid = verdicts(openings_for(share(rows, 3, 2), None, n=3, t=2), 2)
    assert valid.tolist() == [True, True, False, False]


def test_random_garbage_rows_are_all_refused() -> None:
    rows = random_elements((200, 6))
    constraint = LinearConstraint(np.ones(6, dtype=np.int64), 1)
    assert not verdicts(openings_for(share(rows, 5, 3), constraint, n=5, t=3), 3).any()
