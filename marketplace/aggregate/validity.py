"""The validity check on shares (DESIGN §10, approach (a)), revealing only valid/invalid.

Per contribution k with shares x_k(i), node i computes
- q_k(i) = Σ_j r_j (x_kj(i)² - x_kj(i)): a degree-2(t-1) sharing of Σ r_j (x_j² - x_j),
  which is 0 iff every entry is a bit (except with probability 1/p over the public r);
- l_k(i) = w · x_k(i) - target: a degree-(t-1) sharing of the linear constraint
  (one-hot sums to 1; the two bit decompositions add up to hi - lo); none for count;
- d_k(i) = Σ_j r'_j x_kj(i): a random combination whose opened values must lie on one
  degree-(t-1) polynomial: the owner's shares really are a degree-(t-1) sharing (else
  different t-subsets would reconstruct different aggregates and q would not have degree
  2(t-1)).

Opening q_k(i) as it is leaks the input: its higher coefficients are products of the
input with the sharing's randomness (for t = 2 one corrupt node solves for the one-hot
position; tests/unit/aggregate/test_validity.py demonstrates it). So every node deals, per
contribution, a random degree-2(t-1) sharing of ZERO (`zero_sharing`) and a random
degree-(t-1) sharing of a random value (`mask_sharing`); node i opens
q_k(i) + Σ_dealers z_k(i) and d_k(i) + Σ_dealers m_k(i). One honest dealer makes the opened
polynomials uniform given their value at 0 (0 for a valid q) and the corrupt nodes' own
points: the openings reveal nothing but validity. l_k needs no mask: for a valid input it is
uniform among degree-(t-1) polynomials through 0 and the corrupt nodes' own values.

r and r' come from a seed (a block hash after the contribution deadline), so an owner
cannot aim for a zero of the check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from marketplace.aggregate.encoding import LinearConstraint
from marketplace.aggregate.errors import InvalidParameters, NotEnoughShares
from marketplace.aggregate.field import P, Vector, check_prime, random_elements
from marketplace.aggregate.shamir import (
    InconsistencyReport,
    check_committee,
    check_degree,
    evaluate,
    fits_degree,
    share,
)

CHECK_TAG = b"datadebit/aggregate-check/v1"
PRODUCT = b"product"
DEGREE = b"degree"


def check_coefficients(
    seed: bytes, dimension: int, *, purpose: bytes = PRODUCT, prime: int = P
) -> Vector:
    """Public coefficients in [0, p): BLAKE2b-512(tag || purpose || seed || counter(4 BE))
    cut into little-endian uint32s, masked to bit_length(p) bits, values >= p rejected."""
    check_prime(prime)
    if dimension < 1:
        raise InvalidParameters("dimension must be positive")
    mask = (1 << prime.bit_length()) - 1
    out: list[int] = []
    counter = 0
    while len(out) < dimension:
        block = hashlib.blake2b(
            CHECK_TAG + bytes([len(purpose)]) + purpose + seed + counter.to_bytes(4, "big")
        ).digest()
        words = np.frombuffer(block, dtype="<u4").astype(np.int64) & mask
        out.extend(int(w) for w in words if w < prime)
        counter += 1
    return np.asarray(out[:dimension], dtype=np.int64)


def product_shares(shares: Vector, rho: Vector, *, prime: int = P) -> Vector:
    """q_k(i) for each row k of `shares` (count x dimension)."""
    squares = (shares * shares - shares) % prime
    return np.asarray(((squares * rho) % prime).sum(axis=-1) % prime, dtype=np.int64)


def linear_shares(shares: Vector, constraint: LinearConstraint, *, prime: int = P) -> Vector:
    """l_k(i) = w · x_k(i) - target (a constant minus is a valid degree-0 share operation)."""
    weighted = ((shares * constraint.weights) % prime).sum(axis=-1) % prime
    return np.asarray((weighted - constraint.target) % prime, dtype=np.int64)


def degree_shares(shares: Vector, rho_degree: Vector, *, prime: int = P) -> Vector:
    return np.asarray(((shares * rho_degree) % prime).sum(axis=-1) % prime, dtype=np.int64)


def zero_sharing(count: int, n: int, t: int, *, prime: int = P) -> dict[int, Vector]:
    """Shares for nodes 1..n of `count` random degree-2(t-1) polynomials with constant 0."""
    check_committee(n, t, prime=prime)
    if 2 * t - 1 > n:
        raise InvalidParameters(f"the product check needs n >= 2t-1 (t = {t}, n = {n})")
    higher = random_elements((2 * (t - 1), count), prime=prime)
    coefficients = np.concatenate([np.zeros((1, count), dtype=np.int64), higher])
    return evaluate(coefficients, range(1, n + 1), prime=prime)


def mask_sharing(count: int, n: int, t: int, *, prime: int = P) -> dict[int, Vector]:
    """Shares of `count` uniformly random values on degree-(t-1) polynomials."""
    return share(random_elements(count, prime=prime), n, t, prime=prime)


@dataclass(frozen=True, slots=True)
class Opening:
    """What node i publishes in round 2: one masked value per contribution and check."""

    products: Vector
    linear: Vector | None
    degree: Vector


def open_checks(
    shares: Vector,
    rho: Vector,
    rho_degree: Vector,
    constraint: LinearConstraint | None,
    zero_shares: Mapping[int, Vector],
    mask_shares: Mapping[int, Vector],
    *,
    prime: int = P,
) -> Opening:
    """Node i's opening from its shares (count x dimension) and the zero and mask shares
    it received from every dealer (the same dealer set at every node)."""
    masked = product_shares(shares, rho, prime=prime)
    for z in zero_shares.values():
        masked = (masked + z) % prime
    degree = degree_shares(shares, rho_degree, prime=prime)
    for m in mask_shares.values():
        degree = (degree + m) % prime
    linear = None if constraint is None else linear_shares(shares, constraint, prime=prime)
    return Opening(masked, linear, degree)


def _with_zero(points: Mapping[int, Vector]) -> dict[int, Vector]:
    first = next(iter(points.values()))
    return {0: np.zeros_like(first)} | dict(points)


def verdicts(openings: Mapping[int, Opening], t: int, *, prime: int = P) -> npt.NDArray[np.bool_]:
    """Valid contributions: the masked products interpolate to 0 at x = 0 on degree
    2(t-1), the linear values to 0 on degree t-1, and the degree values lie on one
    degree-(t-1) polynomial, using every opening given (so one bad opening invalidates,
    it never validates). Needs >= 2t-1 openings."""
    if len(openings) < 2 * t - 1:
        raise NotEnoughShares("openings", len(openings), 2 * t - 1)
    ordered = dict(sorted(openings.items()))
    products = {i: o.products for i, o in ordered.items()}
    valid = fits_degree(_with_zero(products), 2 * (t - 1), prime=prime)
    valid &= fits_degree({i: o.degree for i, o in ordered.items()}, t - 1, prime=prime)
    linear = {i: o.linear for i, o in ordered.items() if o.linear is not None}
    if linear:
        if len(linear) != len(ordered):
            raise InvalidParameters("some openings carry linear checks and some do not")
        valid &= fits_degree(_with_zero(linear), t - 1, prime=prime)
    return valid


def inconsistent_openings(
    openings: Mapping[int, Opening], t: int, *, prime: int = P
) -> InconsistencyReport:
    """Which node's openings are off the polynomials every other node agrees on.

    A diagnostic for logs and auditors, not an exclusion rule: a malicious owner can make
    one node's values look off in its own contribution (which `verdicts` then excludes).
    Detects with >= 2t openings, names with >= 2t+1."""
    ordered = dict(sorted(openings.items()))
    report = check_degree({i: o.products for i, o in ordered.items()}, 2 * (t - 1), prime=prime)
    if not report.consistent:
        return report
    return check_degree(
        {
            i: np.concatenate([o.degree] + ([] if o.linear is None else [o.linear]))
            for i, o in ordered.items()
        },
        2 * (t - 1),
        prime=prime,
    )
