"""Capsules: layout, parsing, and the context binding."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from marketplace.keyrelease import (
    Capsule,
    CapsuleContext,
    CapsuleOpenFailed,
    InvalidField,
    MalformedCapsule,
    make_capsule,
)
from marketplace.keyrelease.capsule import kem_key, open_capsule
from marketplace.keyrelease.group import IDENTITY
from marketplace.keyrelease.shamir import interpolate
from storage.keys import DataKey
from tests.unit.keyrelease.support import MARKET, NON_CANONICAL, SMALL_ORDER, Published, make_ctx


def test_capsule_is_104_bytes_and_round_trips(published: Published) -> None:
    raw = published.capsule.to_bytes()
    assert len(raw) == Capsule.SIZE == 104
    assert raw[:32] == published.capsule.r_point.to_bytes()
    assert Capsule.from_bytes(raw) == published.capsule


def test_two_capsules_of_one_key_differ(published: Published) -> None:
    again = make_capsule(published.dek, published.ctx, published.dealt.keys.committee_key)
    assert again.to_bytes() != published.capsule.to_bytes()


@pytest.mark.parametrize("length", [0, 103, 105, 208])
def test_from_bytes_refuses_wrong_lengths(published: Published, length: int) -> None:
    raw = (published.capsule.to_bytes() * 3)[:length]
    with pytest.raises(MalformedCapsule):
        Capsule.from_bytes(raw)


@pytest.mark.parametrize("bad_r", SMALL_ORDER + NON_CANONICAL + ["11" * 32])
def test_from_bytes_refuses_an_invalid_r(published: Published, bad_r: str) -> None:
    raw = bytes.fromhex(bad_r) + published.capsule.to_bytes()[32:]
    with pytest.raises(MalformedCapsule):
        Capsule.from_bytes(raw)


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
