"""Shares: sealing to the buyer, the opened layout, and DLEQ proof verification."""

from __future__ import annotations

import dataclasses

import pytest

from marketplace.keyrelease import (
    SEALED_SHARE_SIZE,
    BuyerPublicKey,
    BuyerSecretKey,
    InvalidBuyerKey,
    InvalidField,
    InvalidPoint,
    InvalidScalar,
    InvalidShareProof,
    KeyShare,
    L,
    MalformedKeyShare,
    NodeIndex,
    Point,
    Scalar,
    SealedShareMismatch,
    SealedShareOpenFailed,
    ShareKeyMismatch,
    VerifiedKeyShare,
    make_capsule,
    make_key_share,
    make_sealed_share,
    open_sealed_share,
)
from marketplace.keyrelease.share import seal_key_share
from tests.unit.keyrelease.support import (
    DEBIT_ID,
    NON_CANONICAL,
    SMALL_ORDER,
    VERSION,
    Published,
)


@pytest.fixture(scope="module")
def key_share(published: Published) -> KeyShare:
    """Node 2's share for DEBIT_ID / VERSION."""
    return make_key_share(published.dealt.shares[1], published.bound, DEBIT_ID, VERSION)


def test_sealed_share_opens_for_its_buyer_and_verifies(
    published: Published, buyer: BuyerSecretKey
) -> None:
    node = published.dealt.shares[1]
    sealed = make_sealed_share(node, published.bound, buyer.public_key(), DEBIT_ID, VERSION)
    assert len(sealed) == SEALED_SHARE_SIZE == 1 + 32 * 4 + 4 + 48
    share = open_sealed_share(sealed, buyer, DEBIT_ID, VERSION)
    assert (share.index, share.debit_id, share.version) == (2, DEBIT_ID, VERSION)
    assert share.d_point == published.capsule.r_point * node.secret._scalar
    verified = share.verify(node.share_key, published.capsule)
    assert isinstance(verified, VerifiedKeyShare)
    assert verified.index == 2


def test_plaintext_layout(key_share: KeyShare) -> None:
    raw = key_share.to_bytes()
    assert raw[0] == 2
    assert raw[1:33] == key_share.d_point.to_bytes()
    assert raw[33:65] == key_share.proof.challenge.to_bytes()
    assert raw[65:97] == key_share.proof.response.to_bytes()
    assert raw[97:129] == DEBIT_ID.to_bytes(32, "big")
    assert raw[129:133] == VERSION.to_bytes(4, "big")
    assert KeyShare.from_bytes(raw) == key_share


def test_a_share_sealed_to_another_buyer_does_not_open(
    published: Published, buyer: BuyerSecretKey, other_buyer: BuyerSecretKey
) -> None:
    node = published.dealt.shares[0]
    sealed = make_sealed_share(node, published.bound, buyer.public_key(), DEBIT_ID, VERSION)
    with pytest.raises(SealedShareOpenFailed):
        open_sealed_share(sealed, other_buyer, DEBIT_ID, VERSION)


@pytest.mark.parametrize("position", [0, 40, 100, SEALED_SHARE_SIZE - 1])
def test_a_tampered_sealed_share_does_not_open(
    published: Published, buyer: BuyerSecretKey, position: int
) -> None:
    node = published.dealt.shares[0]
    sealed = bytearray(
        make_sealed_share(node, published.bound, buyer.public_key(), DEBIT_ID, VERSION)
    )
    sealed[position] ^= 0x01
    with pytest.raises(SealedShareOpenFailed):
        open_sealed_share(bytes(sealed), buyer, DEBIT_ID, VERSION)


@pytest.mark.parametrize("length", [0, 47, SEALED_SHARE_SIZE - 1, SEALED_SHARE_SIZE + 1])
def test_a_sealed_share_of_the_wrong_length_is_malformed(
    buyer: BuyerSecretKey, length: int
) -> None:
    with pytest.raises(MalformedKeyShare):
        open_sealed_share(bytes(length), buyer, DEBIT_ID, VERSION)


@pytest.mark.parametrize(
    ("debit_id", "version"),
    [(DEBIT_ID + 1, VERSION), (DEBIT_ID, VERSION + 1), (DEBIT_ID - 1, VERSION - 1)],
)
def test_a_share_for_another_debit_or_version_is_refused(
    published: Published, buyer: BuyerSecretKey, debit_id: int, version: int
) -> None:
    node = published.dealt.shares[0]
    sealed = make_sealed_share(node, published.bound, buyer.public_key(), DEBIT_ID, VERSION)
    with pytest.raises(SealedShareMismatch) as caught:
        open_sealed_share(sealed, buyer, debit_id, version)
    assert (caught.value.found_debit, caught.value.found_version) == (DEBIT_ID, VERSION)


def _bump(scalar: Scalar) -> Scalar:
    return scalar + Scalar.from_int(1)


@pytest.mark.parametrize("field", ["challenge", "response"])
def test_a_tampered_proof_is_refused_and_names_the_node(
    published: Published, key_share: KeyShare, field: str
) -> None:
    proof = dataclasses.replace(key_share.proof, **{field: _bump(getattr(key_share.proof, field))})
    tampered = dataclasses.replace(key_share, proof=proof)
    with pytest.raises(InvalidShareProof) as caught:
        tampered.verify(published.dealt.keys.share_key(2), published.capsule)
    assert caught.value.node_index == 2
    assert "node 2" in str(caught.value)


def test_a_tampered_proof_through_the_sealed_path_is_refused(
    published: Published, buyer: BuyerSecretKey, key_share: KeyShare
) -> None:
    raw = bytearray(key_share.to_bytes())
    raw[33] ^= 0x01  # lowest byte of c: stays canonical
    sealed = seal_key_share(KeyShare.from_bytes(bytes(raw)), buyer.public_key())
    opened = open_sealed_share(sealed, buyer, DEBIT_ID, VERSION)
    with pytest.raises(InvalidShareProof):
        opened.verify(published.dealt.keys.share_key(2), published.capsule)


def test_a_replaced_d_is_refused(published: Published, key_share: KeyShare) -> None:
    other = dataclasses.replace(key_share, d_point=Point.base_mul(Scalar.random()))
    with pytest.raises(InvalidShareProof):
        other.verify(published.dealt.keys.share_key(2), published.capsule)


def test_a_relabelled_share_fails_under_the_claimed_nodes_key(
    published: Published, key_share: KeyShare
) -> None:
    relabelled = dataclasses.replace(key_share, index=NodeIndex(3))
    with pytest.raises(InvalidShareProof) as caught:
        relabelled.verify(published.dealt.keys.share_key(3), published.capsule)
    assert caught.value.node_index == 3


def test_verifying_against_another_nodes_key_is_refused(
    published: Published, key_share: KeyShare
) -> None:
    with pytest.raises(ShareKeyMismatch):
        key_share.verify(published.dealt.keys.share_key(1), published.capsule)


def test_a_share_for_another_capsule_does_not_verify(
    published: Published, key_share: KeyShare
) -> None:
    other = make_capsule(published.dek, published.ctx, published.dealt.keys.committee_key)
    with pytest.raises(InvalidShareProof):
        key_share.verify(published.dealt.keys.share_key(2), other)


@pytest.mark.parametrize("bad_point", SMALL_ORDER + NON_CANONICAL + ["11" * 32])
def test_an_invalid_d_point_is_refused_on_parsing(key_share: KeyShare, bad_point: str) -> None:
    raw = key_share.to_bytes()
    with pytest.raises(InvalidPoint):
        KeyShare.from_bytes(raw[:1] + bytes.fromhex(bad_point) + raw[33:])


@pytest.mark.parametrize("offset", [33, 65])
def test_a_non_canonical_proof_scalar_is_refused(key_share: KeyShare, offset: int) -> None:
    raw = key_share.to_bytes()
    plus_l = int.from_bytes(raw[offset : offset + 32], "little") + L  # < 2^254: still 32 bytes
    with pytest.raises(InvalidScalar):
        KeyShare.from_bytes(raw[:offset] + plus_l.to_bytes(32, "little") + raw[offset + 32 :])


def test_index_zero_and_wrong_length_are_malformed(key_share: KeyShare) -> None:
    raw = key_share.to_bytes()
    with pytest.raises(MalformedKeyShare):
        KeyShare.from_bytes(b"\x00" + raw[1:])
    with pytest.raises(MalformedKeyShare):
        KeyShare.from_bytes(raw[:-1])


def test_verified_shares_come_only_from_verify(key_share: KeyShare) -> None:
    with pytest.raises(TypeError):
        VerifiedKeyShare(
            key_share.index, key_share.d_point, key_share.d_point, key_share.d_point, 1, object()
        )


@pytest.mark.parametrize(
    "bad_key",
    [bytes(32), b"\x01" + bytes(31), bytes.fromhex(SMALL_ORDER[1])],
)
def test_sealing_to_a_low_order_buyer_key_is_refused(key_share: KeyShare, bad_key: bytes) -> None:
    with pytest.raises(InvalidBuyerKey):
        seal_key_share(key_share, BuyerPublicKey(bad_key))


def test_buyer_public_key_must_be_32_bytes() -> None:
    with pytest.raises(InvalidBuyerKey):
        BuyerPublicKey(bytes(31))


def test_make_key_share_refuses_out_of_range_ids(published: Published) -> None:
    node = published.dealt.shares[0]
    for debit_id, version in [(-1, 1), (2**256, 1), (1, 0), (1, 2**32)]:
        with pytest.raises(InvalidField):
            make_key_share(node, published.bound, debit_id, version)
