"""Merkle roots over release receipts, for anchoring a gateway's log on-chain.

Leaves are domain-separated from inner nodes (0x00 / 0x01 prefixes) so a leaf can never
be passed off as a subtree; an odd node at a level is promoted unchanged. Hash: keccak256,
so a contract could verify a proof if it ever needs to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_utils.crypto import keccak

LEAF = b"\x00"
NODE = b"\x01"
#: The kind byte before a partial release's receipt digest in its Merkle item (protocol
#: §13): a key release's item is its bare 32-byte receipt digest, a partial release's is
#: 0x02 || digest, so the two kinds of entry can never pass for each other in a root.
PARTIAL_ITEM = b"\x02"


def partial_item(receipt_digest: bytes) -> bytes:
    """The Merkle item of a partial release (aggregate debits) with this receipt digest."""
    return PARTIAL_ITEM + receipt_digest


def leaf_hash(item: bytes) -> bytes:
    return keccak(LEAF + item)


def _parent(left: bytes, right: bytes) -> bytes:
    return keccak(NODE + left + right)


def _levels(items: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, root last."""
    if not items:
        raise ValueError("no Merkle tree over zero items")
    levels = [[leaf_hash(i) for i in items]]
    while len(levels[-1]) > 1:
        level = levels[-1]
        levels.append([
            _parent(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ])
    return levels


def merkle_root(items: Sequence[bytes]) -> bytes:
    """Root over `items` (their leaf hashes); an empty batch has no root."""
    return _levels(items)[-1][0]


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """Sibling hashes from leaf to root, for the leaf at `index` of a batch of `count`.

    Which side each sibling sits on follows from (index, count), so a proof binds the
    leaf's position, not just its membership: the verifier checks `index` against the
    receipt's place in the log (seq - first seq of its anchor) and `count` against the
    anchored count on-chain.
    """

    index: int
    count: int
    siblings: tuple[bytes, ...]


def _path(index: int, count: int) -> list[bool]:
    """For each level that has a sibling, whether it sits to the right."""
    sides: list[bool] = []
    position, size = index, count
    while size > 1:
        sibling = position ^ 1
        if sibling < size:
            sides.append(sibling > position)
        position, size = position // 2, (size + 1) // 2
    return sides


def merkle_proof(items: Sequence[bytes], index: int) -> MerkleProof:
    if not 0 <= index < len(items):
        raise IndexError(f"leaf {index} outside a batch of {len(items)}")
    siblings: list[bytes] = []
    position = index
    for level in _levels(items)[:-1]:
        sibling = position ^ 1
        if sibling < len(level):
            siblings.append(level[sibling])
        position //= 2
    return MerkleProof(index, len(items), tuple(siblings))


def verify_proof(item: bytes, proof: MerkleProof, root: bytes) -> bool:
    """Whether `item` is leaf `proof.index` of a batch of `proof.count` under `root`."""
    if not 0 <= proof.index < proof.count:
        return False
    sides = _path(proof.index, proof.count)
    if len(sides) != len(proof.siblings):
        return False
    node = leaf_hash(item)
    for sibling, on_right in zip(proof.siblings, sides, strict=True):
        node = _parent(node, sibling) if on_right else _parent(sibling, node)
    return node == root
