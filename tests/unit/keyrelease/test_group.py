"""The edwards25519 subgroup types: validation of outside bytes, arithmetic, secrets."""

from __future__ import annotations

import nacl.bindings as sodium
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from marketplace.keyrelease import InvalidPoint, InvalidScalar, L, Point, Scalar, SecretScalar
from marketplace.keyrelease.group import GENERATOR, IDENTITY, hash_to_scalar, tag
from tests.unit.keyrelease.support import NON_CANONICAL, SMALL_ORDER

P = 2**255 - 19
D = (-121665 * pow(121666, -1, P)) % P

scalars = st.integers(min_value=0, max_value=L - 1).map(Scalar.from_int)
nonzero_scalars = st.integers(min_value=1, max_value=L - 1).map(Scalar.from_int)


def times_eight_is_identity(encoded: bytes) -> bool:
    point = encoded
    for _ in range(3):
        point = sodium.crypto_core_ed25519_add(point, point)
    return point == IDENTITY.to_bytes()


def on_curve(encoded: bytes) -> bool:
    """Whether some x solves -x^2 + y^2 = 1 + d x^2 y^2 for the encoded y (< p)."""
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x2 = u * pow(v, -1, P) % P
    return x2 == 0 or pow(x2, (P - 1) // 2, P) == 1


def test_the_small_order_list_really_is_small_order() -> None:
    for encoded in SMALL_ORDER:
        assert times_eight_is_identity(bytes.fromhex(encoded))


@pytest.mark.parametrize("encoded", SMALL_ORDER + NON_CANONICAL)
def test_from_bytes_refuses_small_order_identity_and_non_canonical(encoded: str) -> None:
    with pytest.raises(InvalidPoint):
        Point.from_bytes(bytes.fromhex(encoded))


@pytest.mark.parametrize("torsion", SMALL_ORDER[1:])
def test_from_bytes_refuses_mixed_order_points(torsion: str) -> None:
    mixed = sodium.crypto_core_ed25519_add(GENERATOR.to_bytes(), bytes.fromhex(torsion))
    with pytest.raises(InvalidPoint):
        Point.from_bytes(mixed)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_from_bytes_refuses_wrong_lengths(length: int) -> None:
    with pytest.raises(InvalidPoint):
        Point.from_bytes(GENERATOR.to_bytes()[:1] * length)


@settings(max_examples=50)
@given(st.binary(min_size=32, max_size=32))
def test_from_bytes_refuses_random_bytes_off_the_curve(data: bytes) -> None:
    canonical_y = int.from_bytes(data, "little") & ((1 << 255) - 1) < P
    assume(canonical_y and not on_curve(data))
    with pytest.raises(InvalidPoint):
        Point.from_bytes(data)


@settings(max_examples=25)
@given(nonzero_scalars)
def test_from_bytes_accepts_every_subgroup_point(s: Scalar) -> None:
    point = Point.base_mul(s)
    assert Point.from_bytes(point.to_bytes()) == point


def test_points_are_made_only_by_validating_constructors() -> None:
    with pytest.raises(TypeError):
        Point()
    with pytest.raises(TypeError):
        Scalar()


@settings(max_examples=25)
@given(scalars, scalars)
def test_scalar_multiplication_is_a_homomorphism(a: Scalar, b: Scalar) -> None:
    assert Point.base_mul(a + b) == Point.base_mul(a) + Point.base_mul(b)
    assert Point.base_mul(a - b) == Point.base_mul(a) - Point.base_mul(b)
    assert Point.base_mul(a) * b == Point.base_mul(a * b)


def test_identity_and_zero_edge_cases_that_libsodium_refuses() -> None:
    zero, one = Scalar.from_int(0), Scalar.from_int(1)
    assert Point.base_mul(zero) == IDENTITY
    assert GENERATOR * zero == IDENTITY
    assert IDENTITY * one == IDENTITY
    assert (GENERATOR - GENERATOR).is_identity
    assert IDENTITY + GENERATOR == GENERATOR
    assert Point.base_mul(Scalar.from_int(L)) == IDENTITY


def test_scalar_from_bytes_refuses_non_canonical() -> None:
    assert Scalar.from_bytes((L - 1).to_bytes(32, "little")).to_int() == L - 1
    for value in (L, L + 1, 2**256 - 1):
        with pytest.raises(InvalidScalar):
            Scalar.from_bytes(value.to_bytes(32, "little"))
    with pytest.raises(InvalidScalar):
        Scalar.from_bytes(bytes(31))


@settings(max_examples=25)
@given(nonzero_scalars)
def test_invert(a: Scalar) -> None:
    assert (a * a.invert()).to_int() == 1


def test_zero_has_no_inverse() -> None:
    with pytest.raises(ZeroDivisionError):
        Scalar.from_int(0).invert()


def test_hash_to_scalar_is_deterministic_and_separated_by_tag() -> None:
    a = hash_to_scalar(tag("dleq"), b"x" * 32)
    assert a == hash_to_scalar(tag("dleq"), b"x" * 32)
    assert a != hash_to_scalar(tag("other"), b"x" * 32)
    assert a.to_int() < L
    assert tag("dleq") == b"datadebit/dleq/v1"


def test_secret_scalar_guards_itself() -> None:
    secret = SecretScalar.random()
    assert repr(secret) == "SecretScalar(<secret>)"
    assert secret.to_secret_bytes().hex() not in repr(secret) + str(secret)
    with pytest.raises(TypeError):
        hash(secret)
    assert secret == SecretScalar.from_secret_bytes(secret.to_secret_bytes())
    assert secret != SecretScalar.random()
    with pytest.raises(InvalidScalar):
        SecretScalar(Scalar.from_int(0))
