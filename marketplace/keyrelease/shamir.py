"""Polynomials and Lagrange interpolation over Z_L, for Shamir sharing in the exponent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from marketplace.keyrelease.group import IDENTITY, Point, Scalar


def evaluate(coefficients: Sequence[Scalar], x: int) -> Scalar:
    """f(x) for f = c0 + c1·x + ... (Horner's rule)."""
    x_scalar = Scalar.from_int(x)
    result = Scalar.from_int(0)
    for coefficient in reversed(coefficients):
        result = result * x_scalar + coefficient
    return result


def lagrange_coefficients(indices: Sequence[int], at: int = 0) -> dict[int, Scalar]:
    """λ_i(at) = Π_{j≠i} (at - j) / (i - j) for each i of a set of distinct non-zero indices."""
    if len(set(indices)) != len(indices):
        raise ValueError("interpolation indices must be distinct")
    at_scalar = Scalar.from_int(at)
    coefficients: dict[int, Scalar] = {}
    for i in indices:
        numerator = Scalar.from_int(1)
        denominator = Scalar.from_int(1)
        for j in indices:
            if j != i:
                numerator = numerator * (at_scalar - Scalar.from_int(j))
                denominator = denominator * Scalar.from_int(i - j)
        coefficients[i] = numerator * denominator.invert()
    return coefficients


def interpolate(points: Mapping[int, Point], at: int = 0) -> Point:
    """The value at `at` of the polynomial (in the exponent) through `points`."""
    result = IDENTITY
    for i, coefficient in lagrange_coefficients(list(points), at).items():
        result = result + points[i] * coefficient
    return result
