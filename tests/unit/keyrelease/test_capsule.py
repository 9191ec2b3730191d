"""Capsules: layout, parsing, and the context binding."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.keyrelease import (
    BoundCapsule,
    Capsule,
    CapsuleContext,
    CapsuleNotBound,
    CapsuleOpenFailed,
    InvalidField,
    L,
    MalformedCapsule,
    make_capsule,
)
from marketplace.keyrelease.capsule import kem_key, open_capsule
from marketplace.keyrelease.group import IDENTITY
from marketplace.keyrelease.shamir import interpolate
from storage.keys import DataKey
from tests.unit.keyrelease.support import (
    CHAIN_ID,
    MARKET,
    NON_CANONICAL,
    SMALL_ORDER,
    VERSION,
    Published,
    make_ctx,
)


def test_capsule_is_168_bytes_and_round_trips(published: Published) -> None:
    raw = published.capsule.to_bytes()
    assert len(raw) == Capsule.SIZE == 168
    assert raw[:32] == published.capsule.r_point.to_bytes()
    assert Capsule.from_bytes(raw) == published.capsule


def test_two_capsules_of_one_key_differ(published: Published) -> None:
    again = make_capsule(published.dek, published.ctx, published.dealt.keys.committee_key)
    assert again.to_bytes() != published.capsule.to_bytes()


@pytest.mark.parametrize("length", [0, 103, 104, 105, 167, 169, 336])
def test_from_bytes_refuses_wrong_lengths(published: Published, length: int) -> None:
    raw = (published.capsule.to_bytes() * 3)[:length]
    with pytest.raises(MalformedCapsule):
        Capsule.from_bytes(raw)


@pytest.mark.parametrize("bad_r", SMALL_ORDER + NON_CANONICAL + ["11" * 32])
def test_from_bytes_refuses_an_invalid_r(published: Published, bad_r: str) -> None:
    raw = bytes.fromhex(bad_r) + published.capsule.to_bytes()[32:]
    with pytest.raises(MalformedCapsule):
        Capsule.from_bytes(raw)


@pytest.mark.parametrize("where", ["challenge", "response"])
def test_from_bytes_refuses_a_non_canonical_proof_scalar(published: Published, where: str) -> None:
    raw = bytearray(published.capsule.to_bytes())
    start = 104 if where == "challenge" else 136
    raw[start : start + 32] = (L + 1).to_bytes(32, "little")  # = 1 mod L, not canonical
    with pytest.raises(MalformedCapsule):
        Capsule.from_bytes(bytes(raw))


def test_a_capsule_binds_to_its_own_context(published: Published) -> None:
    bound = Capsule.from_bytes(published.capsule.to_bytes()).bind(published.ctx)
    assert isinstance(bound, BoundCapsule)
    assert bound.capsule == published.capsule and bound.ctx == published.ctx
    assert bound.r_point == published.capsule.r_point
    assert "listing=7" in repr(bound)


@pytest.mark.parametrize(
    "changes",
    [
        {"chain_id": CHAIN_ID + 1},
        {"market": "0x" + "ab" * 20},
        {"listing_id": 8},
        {"version": VERSION + 1},
        {"cid_bytes": bytes.fromhex("01551220") + bytes(32)},
    ],
)
def test_a_capsule_does_not_bind_to_any_other_context(
    published: Published, changes: dict[str, object]
) -> None:
    with pytest.raises(CapsuleNotBound):
        published.capsule.bind(make_ctx(**changes))


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, Capsule.SIZE - 1), bit=st.integers(0, 7))
def test_any_flipped_bit_unbinds_or_breaks_the_capsule(
    published: Published, position: int, bit: int
) -> None:
    """Nonce, sealed key, R and proof are all under the proof: no bit can change."""
    raw = bytearray(published.capsule.to_bytes())
    raw[position] ^= 1 << bit
    with pytest.raises((CapsuleNotBound, MalformedCapsule)):
        Capsule.from_bytes(bytes(raw)).bind(published.ctx)


def test_a_bound_capsule_cannot_be_made_without_the_proof(published: Published) -> None:
    with pytest.raises(TypeError):
        BoundCapsule(published.capsule, published.ctx, object())


def test_context_encoding_layout() -> None:
    ctx = make_ctx(chain_id=1, listing_id=2, version=3, cid_bytes=b"\x01\x55")
    expected = (
        b"datadebit/ctx/v1"
        + (1).to_bytes(32, "big")
        + bytes.fromhex(MARKET[2:])
        + (2).to_bytes(32, "big")
        + (3).to_bytes(4, "big")
        + b"\x01\x55"
    )
    assert ctx.to_bytes() == expected


def test_context_normalises_the_market_address() -> None:
    assert make_ctx(market=MARKET.lower()).market == MARKET
    assert make_ctx(market=MARKET.lower()) == make_ctx()


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"version": 0}, "version"),
        ({"version": 2**32}, "version"),
        ({"chain_id": -1}, "chainId"),
        ({"listing_id": 2**256}, "listingId"),
        ({"cid_bytes": b""}, "cid"),
        ({"market": "0x1234"}, "market"),
        ({"market": "not an address"}, "market"),
    ],
)
def test_context_refuses_out_of_range_fields(changes: dict[str, object], field_name: str) -> None:
    with pytest.raises(InvalidField) as caught:
        make_ctx(**changes)
    assert caught.value.field_name == field_name


def test_open_capsule_with_the_right_z_and_context_only(published: Published) -> None:
    """Z rebuilt from the shares (as t nodes would) opens; any other Z does not."""
    shares = published.dealt.shares[:3]
    z = interpolate({s.index: published.capsule.r_point * s.secret._scalar for s in shares})
    assert open_capsule(published.capsule, published.ctx, z) == published.dek
    with pytest.raises(CapsuleOpenFailed):
        open_capsule(published.capsule, published.ctx, IDENTITY)
    with pytest.raises(CapsuleOpenFailed):
        open_capsule(published.capsule, published.ctx, published.dealt.keys.committee_key)


def test_kem_key_is_blake2b_256_of_tag_r_z(published: Published) -> None:
    r = published.capsule.r_point
    expected = hashlib.blake2b(b"datadebit/kem/v1" + r.to_bytes() * 2, digest_size=32).digest()
    assert kem_key(r, r) == expected


def test_capsule_context_is_a_frozen_value() -> None:
    ctx = make_ctx()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.version = 4  # type: ignore[misc]
    assert isinstance(ctx, CapsuleContext)
    assert DataKey.SIZE + 16 == Capsule.SEALED_KEY_SIZE
