"""Committee set-up by a dealer: shares on one polynomial, public keys consistent, s kept."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.keyrelease import (
    CommitteeKeys,
    InconsistentCommittee,
    InvalidThreshold,
    NodeIndex,
    NodeShare,
    Point,
    Scalar,
    SecretScalar,
    ShareKey,
    UnknownNode,
    deal,
)
from marketplace.keyrelease.dealer import _deal
from marketplace.keyrelease.shamir import evaluate, interpolate, lagrange_coefficients


@st.composite
def committees(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=1, max_value=7))
    return n, draw(st.integers(min_value=1, max_value=n))


@settings(max_examples=20, deadline=None)
@given(committees(), st.data())
def test_any_t_share_keys_interpolate_to_the_committee_key(
    nt: tuple[int, int], data: st.DataObject
) -> None:
    n, t = nt
    dealt = deal(n, t)
    subset = data.draw(st.lists(st.integers(1, n), min_size=t, max_size=t, unique=True))
    points = {i: dealt.keys.share_key(i).point for i in subset}
    assert interpolate(points, 0) == dealt.keys.committee_key
    dealt.keys.check_consistent()


def test_shares_match_their_share_keys_and_sum_to_the_secret() -> None:
    coefficients = [Scalar.from_int(c) for c in (11, 22, 33)]
    dealt = _deal(5, 3, coefficients)
    assert dealt.keys.committee_key == Point.base_mul(Scalar.from_int(11))
    for share in dealt.shares:
        assert share.share_key == dealt.keys.share_key(share.index)
        assert share.secret.public_point() == share.share_key.point
        assert share.secret.to_secret_bytes() == evaluate(coefficients, share.index).to_bytes()
    lambdas = lagrange_coefficients([2, 4, 5])
    s = Scalar.from_int(0)
    for i, lam in lambdas.items():
        s = s + lam * Scalar.from_bytes(dealt.shares[i - 1].secret.to_secret_bytes())
    assert s.to_int() == 11


@pytest.mark.parametrize(("n", "t"), [(3, 4), (3, 0), (256, 2), (0, 0)])
def test_deal_refuses_bad_parameters(n: int, t: int) -> None:
    with pytest.raises(InvalidThreshold):
        deal(n, t)


def test_the_dealt_committee_holds_no_secret_but_the_shares() -> None:
    dealt = deal(3, 2)
    fields = {f.name for f in dataclasses.fields(dealt)}
    assert fields == {"keys", "shares"}
    assert {f.name for f in dataclasses.fields(dealt.keys)} == {
        "threshold",
        "committee_key",
        "share_keys",
        "epoch",
    }
    assert "<secret>" in repr(dealt)


def test_check_consistent_catches_a_wrong_share_key_or_committee_key() -> None:
    keys = deal(4, 2).keys
    wrong = Point.base_mul(Scalar.random())
    with pytest.raises(InconsistentCommittee) as caught:
        dataclasses.replace(
            keys, share_keys=(*keys.share_keys[:3], ShareKey(NodeIndex(4), wrong))
        ).check_consistent()
    assert caught.value.node_index == 4
    with pytest.raises(InconsistentCommittee) as caught:
        dataclasses.replace(keys, committee_key=wrong).check_consistent()
    assert caught.value.node_index is None


def test_committee_keys_from_bytes_validates_points_and_order() -> None:
    keys = deal(3, 2).keys
    raw = [k.point.to_bytes() for k in keys.share_keys]
    again = CommitteeKeys.from_bytes(2, keys.committee_key.to_bytes(), raw)
    assert again == keys
    with pytest.raises(ValueError, match="point"):
        CommitteeKeys.from_bytes(2, bytes(32), raw)
    with pytest.raises(ValueError, match="in order"):
        CommitteeKeys(2, keys.committee_key, tuple(reversed(keys.share_keys)))
    with pytest.raises(UnknownNode):
        keys.share_key(4)
    with pytest.raises(UnknownNode):
        keys.share_key(0)


def test_node_share_refuses_a_secret_that_does_not_match_its_key() -> None:
    share = deal(2, 1).shares[0]
    with pytest.raises(ValueError, match="does not match"):
        NodeShare(share.share_key, SecretScalar.random())
