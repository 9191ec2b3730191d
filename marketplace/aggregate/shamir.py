"""Shamir sharing of field vectors (degree t-1), Lagrange interpolation, consistency checks.

Node i holds f(i) for a random polynomial f with f(0) = the vector; any t values give f(0),
fewer are uniformly distributed whatever f(0) is. Indices are public, so the Lagrange
coefficients use plain Python integers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from marketplace.aggregate.errors import InvalidParameters, NotEnoughShares
from marketplace.aggregate.field import P, Vector, check_elements, check_prime, random_elements

MAX_NODES = 255
"""Node indices travel as one byte."""


def check_committee(n: int, t: int, *, prime: int = P) -> None:
    check_prime(prime)
    if not 1 <= t <= n <= min(MAX_NODES, prime - 1):
        raise InvalidParameters(f"threshold {t} of {n} nodes: need 1 <= t <= n <= 255, n < p")


def evaluate(coefficients: Vector, indices: Sequence[int], *, prime: int = P) -> dict[int, Vector]:
    """f(i) for each index, where coefficients[k] is the x^k coefficient (any trailing shape)."""
    values: dict[int, Vector] = {}
    for i in indices:
        acc = np.zeros(coefficients.shape[1:], dtype=np.int64)
        for coefficient in coefficients[::-1]:
            acc = (acc * i + coefficient) % prime
        values[i] = acc
    return values


def share(vector: Vector, n: int, t: int, *, prime: int = P) -> dict[int, Vector]:
    """Shares for nodes 1..n of `vector`, with fresh random coefficients from os.urandom."""
    check_committee(n, t, prime=prime)
    vector = np.asarray(vector, dtype=np.int64)
    if not check_elements(vector, prime=prime):
        raise InvalidParameters("a shared vector must hold field elements in [0, p)")
    higher = random_elements((t - 1, *vector.shape), prime=prime)
    coefficients = np.concatenate([vector[np.newaxis], higher])
    return evaluate(coefficients, range(1, n + 1), prime=prime)


def lagrange_coefficients(
    indices: Sequence[int], at: int = 0, *, prime: int = P
) -> npt.NDArray[np.int64]:
    """λ_i(at) = Π_{j≠i} (at - j) / (i - j) mod p, in the order of `indices`."""
    if len({i % prime for i in indices}) != len(indices):
        raise InvalidParameters("interpolation indices must be distinct modulo p")
    weights = []
    for i in indices:
        numerator, denominator = 1, 1
        for j in indices:
            if j != i:
                numerator = numerator * (at - j) % prime
                denominator = denominator * (i - j) % prime
        weights.append(numerator * pow(denominator, -1, prime) % prime)
    return np.asarray(weights, dtype=np.int64)


def lagrange_at_zero(indices: Sequence[int], *, prime: int = P) -> npt.NDArray[np.int64]:
    return lagrange_coefficients(indices, 0, prime=prime)


def interpolate(points: Mapping[int, Vector], at: int = 0, *, prime: int = P) -> Vector:
    """The value at `at` of the lowest-degree polynomial through all `points`."""
    indices = list(points)
    weights = lagrange_coefficients(indices, at, prime=prime)
    total = np.zeros(np.shape(points[indices[0]]), dtype=np.int64)
    for weight, i in zip(weights, indices, strict=True):
        total = (total + (points[i] * int(weight)) % prime) % prime
    return total


def reconstruct(shares: Mapping[int, Vector], t: int, *, prime: int = P) -> Vector:
    """f(0) from the t lowest-indexed shares; refuses fewer than t."""
    if len(shares) < t:
        raise NotEnoughShares("shares", len(shares), t)
    chosen = sorted(shares)[:t]
    return interpolate({i: shares[i] for i in chosen}, 0, prime=prime)


def fits_degree(
    points: Mapping[int, Vector], degree: int, *, prime: int = P
) -> npt.NDArray[np.bool_]:
    """Per coordinate: do all points lie on one polynomial of degree <= `degree`?

    The first degree+1 points define it; every other point must agree. With at most
    degree+1 points every coordinate fits (nothing is checkable).
    """
    indices = list(points)
    shape = np.shape(points[indices[0]])
    ok = np.ones(shape, dtype=np.bool_)
    base = indices[: degree + 1]
    for x in indices[degree + 1 :]:
        predicted = interpolate({i: points[i] for i in base}, x, prime=prime)
        ok &= predicted == points[x]
    return ok


@dataclass(frozen=True, slots=True)
class InconsistencyReport:
    """Whether values lie on one polynomial of the expected degree, and who is off.

    `detectable`: enough values to notice one bad node (degree + 2). `identifiable`:
    enough to name it (degree + 3: every subset without it still over-determines the
    polynomial). With two or more bad nodes `culprit` stays None.
    """

    consistent: bool
    culprit: int | None
    detectable: bool
    identifiable: bool


def check_degree(
    points: Mapping[int, Vector], degree: int, *, prime: int = P
) -> InconsistencyReport:
    """Consistency of whole vectors (a node is off if any coordinate is off)."""
    count = len(points)
    detectable, identifiable = count >= degree + 2, count >= degree + 3
    if bool(np.all(fits_degree(points, degree, prime=prime))):
        return InconsistencyReport(True, None, detectable, identifiable)
    culprit = None
    if identifiable:
        for suspect in points:
            rest = {i: v for i, v in points.items() if i != suspect}
            if bool(np.all(fits_degree(rest, degree, prime=prime))):
                culprit = suspect
                break
    return InconsistencyReport(False, culprit, detectable, identifiable)


def inconsistent(shares: Mapping[int, Vector], t: int, *, prime: int = P) -> InconsistencyReport:
    """Do more than t shares lie on one degree-(t-1) polynomial? With t+1 shares a bad one
    is detected but not identified (dropping any single share leaves a consistent set);
    with t+2 or more, one bad node is named."""
    return check_degree(shares, t - 1, prime=prime)
