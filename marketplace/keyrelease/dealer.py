"""Committee set-up by a trusted dealer (v1; a dealer-free DKG is a later step).

The dealer's secret s and the polynomial live only inside `deal`: what comes out is the
public committee keys and one share per node, never s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from marketplace.keyrelease.errors import InvalidThreshold
from marketplace.keyrelease.group import Point, Scalar, SecretScalar
from marketplace.keyrelease.keys import MAX_NODES, CommitteeKeys, NodeShare
from marketplace.keyrelease.shamir import evaluate


@dataclass(frozen=True, slots=True)
class DealtCommittee:
    """The dealer's output: public keys for the contract, one secret share per node."""

    keys: CommitteeKeys
    shares: tuple[NodeShare, ...]

    __hash__ = None  # type: ignore[assignment]


def deal(size: int, threshold: int) -> DealtCommittee:
    """Shamir-share a fresh random s among `size` nodes so any `threshold` of them suffice."""
    _check(size, threshold)
    return _deal(size, threshold, [Scalar.random() for _ in range(threshold)])


def _deal(size: int, threshold: int, _coefficients: Sequence[Scalar]) -> DealtCommittee:
    """`deal` with an explicit polynomial (coefficient 0 is s): for test vectors only."""
    _check(size, threshold)
    if len(_coefficients) != threshold or _coefficients[0].is_zero:
        raise ValueError("need `threshold` coefficients with a non-zero secret")
    shares = tuple(
        NodeShare.from_secret(i, SecretScalar(evaluate(_coefficients, i)))
        for i in range(1, size + 1)
    )
    keys = CommitteeKeys(
        threshold=threshold,
        committee_key=Point.base_mul(_coefficients[0]),
        share_keys=tuple(s.share_key for s in shares),
    )
    return DealtCommittee(keys, shares)


def _check(size: int, threshold: int) -> None:
    if not 1 <= threshold <= size <= MAX_NODES:
        raise InvalidThreshold(threshold, size)
