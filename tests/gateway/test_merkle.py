"""Properties of the release-log Merkle tree (`marketplace.merkle`)."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak
from hypothesis import assume, given
from hypothesis import strategies as st

from marketplace.merkle import (
    LEAF,
    NODE,
    MerkleProof,
    _path,
    leaf_hash,
    merkle_proof,
    merkle_root,
    verify_proof,
)

items = st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=40)


@st.composite
def tree_and_index(
    draw: st.DrawFn, min_size: int = 1, unique: bool = False
) -> tuple[list[bytes], int]:
    leaves = draw(st.lists(st.binary(max_size=40), min_size=min_size, max_size=40, unique=unique))
    return leaves, draw(st.integers(0, len(leaves) - 1))


@given(tree_and_index())
def test_every_proof_verifies(case: tuple[list[bytes], int]) -> None:
    leaves, index = case
    assert verify_proof(leaves[index], merkle_proof(leaves, index), merkle_root(leaves))


@given(tree_and_index(), st.binary(max_size=40))
def test_altered_item_fails(case: tuple[list[bytes], int], other: bytes) -> None:
    leaves, index = case
    if other == leaves[index]:
        other += b"\x00"
    assert not verify_proof(other, merkle_proof(leaves, index), merkle_root(leaves))


@given(tree_and_index(min_size=2), st.data())
def test_altered_sibling_fails(case: tuple[list[bytes], int], data: st.DataObject) -> None:
    leaves, index = case
    proof = merkle_proof(leaves, index)
    k = data.draw(st.integers(0, len(proof.siblings) - 1))
    bit = data.draw(st.integers(0, 255))
    sibling = bytearray(proof.siblings[k])
    sibling[bit // 8] ^= 1 << (bit % 8)
    siblings = (*proof.siblings[:k], bytes(sibling), *proof.siblings[k + 1:])
    altered = MerkleProof(proof.index, proof.count, siblings)
    assert not verify_proof(leaves[index], altered, merkle_root(leaves))


@given(tree_and_index(min_size=2, unique=True), st.data())
def test_a_proof_binds_the_leafs_position(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    """The same siblings claimed for another index, or another batch size, do not verify:
    a receipt cannot be passed off as sitting elsewhere in its anchored batch."""
    leaves, index = case
    proof = merkle_proof(leaves, index)
    other = data.draw(st.integers(0, len(leaves) - 1).filter(lambda i: i != index))
    root = merkle_root(leaves)
    assert not verify_proof(leaves[index], MerkleProof(other, proof.count, proof.siblings), root)
    wrong_count = data.draw(st.integers(index + 1, 80).filter(lambda n: n != len(leaves)))
    claimed = MerkleProof(index, wrong_count, proof.siblings)
    assert verify_proof(leaves[index], claimed, root) == (
        _path(index, wrong_count) == _path(index, len(leaves))  # same path, same tree shape
    )


def test_out_of_range_claims_do_not_verify() -> None:
    leaves = [b"a", b"b", b"c"]
    proof = merkle_proof(leaves, 1)
    root = merkle_root(leaves)
    assert verify_proof(b"b", proof, root)
    assert not verify_proof(b"b", MerkleProof(3, 3, proof.siblings), root)
    assert not verify_proof(b"b", MerkleProof(-1, 3, proof.siblings), root)
    assert not verify_proof(b"b", MerkleProof(1, 0, proof.siblings), root)


@given(tree_and_index(), st.integers(0, 255))
def test_altered_root_fails(case: tuple[list[bytes], int], bit: int) -> None:
    leaves, index = case
    root = bytearray(merkle_root(leaves))
    root[bit // 8] ^= 1 << (bit % 8)
    assert not verify_proof(leaves[index], merkle_proof(leaves, index), bytes(root))


@given(items, st.data())
def test_root_depends_on_order_and_every_item(leaves: list[bytes], data: st.DataObject) -> None:
    root = merkle_root(leaves)
    assert merkle_root([*leaves, b"extra"]) != root
    assert merkle_root(leaves[:-1] or [b"other"]) != root
    i = data.draw(st.integers(0, len(leaves) - 1))
    j = data.draw(st.integers(0, len(leaves) - 1))
    assume(leaves[i] != leaves[j])
    swapped = list(leaves)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    assert merkle_root(swapped) != root


@given(st.binary(max_size=40))
def test_single_leaf_root_is_its_leaf_hash(item: bytes) -> None:
    assert merkle_root([item]) == leaf_hash(item) == keccak(LEAF + item)
    assert merkle_proof([item], 0).siblings == ()


@given(st.binary(min_size=1, max_size=40), st.binary(min_size=1, max_size=40))
def test_leaves_and_inner_nodes_are_domain_separated(a: bytes, b: bytes) -> None:
    inner = keccak(NODE + leaf_hash(a) + leaf_hash(b))
    assert merkle_root([a, b]) == inner
    # the concatenation of two leaf hashes, posing as one item, is not that subtree
    assert merkle_root([leaf_hash(a) + leaf_hash(b)]) != inner
    # an inner node cannot be proved as an item of a larger tree
    four = [a, b, a + b, b + a]
    upper = merkle_proof(four, 0)
    shortened = MerkleProof(0, 2, upper.siblings[1:])  # "inner is leaf 0 of 2"
    assert not verify_proof(inner, shortened, merkle_root(four))


def test_odd_node_is_promoted_not_duplicated() -> None:
    a, b, c = b"a", b"b", b"c"
    assert merkle_root([a, b, c]) == keccak(NODE + merkle_root([a, b]) + leaf_hash(c))
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])


def test_empty_batch_and_out_of_range_index_are_refused() -> None:
    with pytest.raises(ValueError, match="zero items"):
        merkle_root([])
    with pytest.raises(IndexError):
        merkle_proof([b"a", b"b"], 2)
    with pytest.raises(IndexError):
        merkle_proof([b"a"], -1)
