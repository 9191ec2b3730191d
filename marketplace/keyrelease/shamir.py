"""Polynomials and Lagrange interpolation over Z_L, for Shamir sharing in the exponent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from marketplace.keyrelease.group import IDENTITY, L, Point, Scalar


def evaluate(coefficients: Sequence[Scalar], x: int) -> Scalar:
    """f(x) for f = c0 + c1·x + ... (Horner's rule)."""
    x_scalar = Scalar.from_int(x)
    result = Scalar.from_int(0)
    for coefficient in reversed(coefficients):
        result = result * x_scalar + coefficient
    return result


def lagrange_coefficients(indices: Sequence[int], at: int = 0) -> dict[int, Scalar]:
    """λ_i(at) = Π_{j≠i} (at - j) / (i - j) mod L, for distinct indices.

    Plain integer arithmetic: the indices are public, so constant time is not needed,
    and Python's modular inverse is ~20x cheaper than libsodium's.
    """
    if len(set(indices)) != len(indices):
        raise ValueError("interpolation indices must be distinct")
    coefficients: dict[int, Scalar] = {}
    for i in indices:
        numerator, denominator = 1, 1
        for j in indices:
            if j != i:
                numerator = numerator * (at - j) % L
                denominator = denominator * (i - j) % L
        coefficients[i] = Scalar.from_int(numerator * pow(denominator, -1, L))
    return coefficients


def interpolate(points: Mapping[int, Point], at: int = 0) -> Point:
    """The value at `at` of the polynomial (in the exponent) through `points`."""
    result = IDENTITY
    for i, coefficient in lagrange_coefficients(list(points), at).items():
        result = result + points[i] * coefficient
    return result
