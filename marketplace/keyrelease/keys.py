"""The committee's public keys (Y and every Y_i) and one node's secret share s_i.

Each belongs to one committee epoch: a reshare keeps Y but gives every node a new share
(and maybe a new index), so a share key is only meaningful with its epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NewType

from marketplace.eip712 import FIRST_EPOCH
from marketplace.keyrelease.errors import (
    InconsistentCommittee,
    InvalidField,
    InvalidThreshold,
    UnknownNode,
)
from marketplace.keyrelease.group import Point, SecretScalar
from marketplace.keyrelease.shamir import interpolate

NodeIndex = NewType("NodeIndex", int)
"""A committee member's position, 1..n; the x at which its share was evaluated."""

MAX_NODES = 255
"""Indices travel as one byte in sealed shares and as uint8 in receipts."""

MAX_EPOCH = 2**64 - 1
"""Epochs are uint64 on chain and in receipts."""


def _check_epoch(epoch: int) -> None:
    if not FIRST_EPOCH <= epoch <= MAX_EPOCH:
        raise InvalidField("epoch", f"{epoch} is outside 1..2^64-1")


@dataclass(frozen=True, slots=True)
class ShareKey:
    """Y_i = s_i·G in committee epoch `epoch`: what a buyer checks node i's proofs against."""

    index: NodeIndex
    point: Point
    epoch: int = FIRST_EPOCH

    def __post_init__(self) -> None:
        _check_epoch(self.epoch)


@dataclass(frozen=True, slots=True)
class CommitteeKeys:
    """The public side of one committee epoch: threshold t, Y, and Y_1..Y_n in order.

    The committee owns the epoch of its share keys: they are stamped with `epoch` on
    construction, so `share_key(i)` always names the epoch a share is verified under.
    """

    threshold: int
    committee_key: Point
    share_keys: tuple[ShareKey, ...]
    epoch: int = FIRST_EPOCH

    def __post_init__(self) -> None:
        _check_epoch(self.epoch)
        size = len(self.share_keys)
        if not 1 <= self.threshold <= size <= MAX_NODES:
            raise InvalidThreshold(self.threshold, size)
        for position, share_key in enumerate(self.share_keys, start=1):
            if share_key.index != position:
                raise ValueError("share keys must be listed by index 1..n, in order")
        if any(share_key.epoch != self.epoch for share_key in self.share_keys):
            stamped = tuple(replace(key, epoch=self.epoch) for key in self.share_keys)
            object.__setattr__(self, "share_keys", stamped)

    @classmethod
    def from_bytes(
        cls,
        threshold: int,
        committee_key: bytes,
        share_keys: Sequence[bytes],
        epoch: int = FIRST_EPOCH,
    ) -> CommitteeKeys:
        """Validate the encodings read from the contract or the committee file."""
        return cls(
            threshold=threshold,
            committee_key=Point.from_bytes(committee_key, "committee key"),
            share_keys=tuple(
                ShareKey(NodeIndex(i), Point.from_bytes(key, f"share key of node {i}"), epoch)
                for i, key in enumerate(share_keys, start=1)
            ),
            epoch=epoch,
        )

    @property
    def size(self) -> int:
        return len(self.share_keys)

    def share_key(self, index: int) -> ShareKey:
        if not 1 <= index <= self.size:
            raise UnknownNode(index, self.size)
        return self.share_keys[index - 1]

    def check_consistent(self) -> None:
        """Raise unless Y_1..Y_n lie on one degree t-1 polynomial whose value at 0 is Y.

        Costs (n - t + 1)·t scalar multiplications: call it once when loading a committee,
        so a misconfigured deployment fails loudly instead of at the first combine.
        """
        t = self.threshold
        basis: dict[int, Point] = {key.index: key.point for key in self.share_keys[:t]}
        if interpolate(basis, 0) != self.committee_key:
            raise InconsistentCommittee(None)
        for key in self.share_keys[t:]:
            if interpolate(basis, key.index) != key.point:
                raise InconsistentCommittee(key.index)


@dataclass(frozen=True, slots=True)
class NodeShare:
    """Node i's secret share s_i and its public key Y_i; the only secret a node holds."""

    share_key: ShareKey
    secret: SecretScalar

    def __post_init__(self) -> None:
        if self.secret.public_point() != self.share_key.point:
            raise ValueError(f"node {self.share_key.index}'s share does not match its share key")

    @classmethod
    def from_secret(
        cls, index: int, secret: SecretScalar, epoch: int = FIRST_EPOCH
    ) -> NodeShare:
        return cls(ShareKey(NodeIndex(index), secret.public_point(), epoch), secret)

    @property
    def epoch(self) -> int:
        return self.share_key.epoch

    @property
    def index(self) -> NodeIndex:
        return self.share_key.index

    __hash__ = None  # type: ignore[assignment]
