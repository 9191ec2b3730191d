"""The committee's epochs as the chain finalized them, up to the audited block.

Each `CommitteeFinalized` event makes an epoch current from its block on; its roster,
threshold and share keys are read with `committeeAt`. A release is judged against the
epoch in force at its receipt's block (the largest epoch whose start block is at or
before it): that is the roster whose node may have signed it, and the epoch it must name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eth_typing import ChecksumAddress

from marketplace.chain.events import CommitteeEpochEvent
from marketplace.chain.types import Committee, CommitteeEpoch


@dataclass(frozen=True, slots=True)
class FinalizedEpoch:
    """One epoch: what `committeeAt` says, and the `CommitteeFinalized` log that made it."""

    record: CommitteeEpoch
    event: CommitteeEpochEvent | None

    @property
    def epoch(self) -> int:
        return self.record.epoch

    @property
    def start_block(self) -> int:
        return self.record.start_block

    @property
    def nodes(self) -> tuple[ChecksumAddress, ...]:
        return self.record.nodes

    @property
    def committee(self) -> Committee:
        return self.record.committee

    def index_of(self, address: str) -> int | None:
        return self.record.committee.index_of(address)


@dataclass(frozen=True, slots=True)
class EpochHistory:
    """Every finalized epoch, oldest first (epochs run 1, 2, 3, ... on chain)."""

    epochs: tuple[FinalizedEpoch, ...]

    @classmethod
    def of(cls, epochs: Iterable[FinalizedEpoch]) -> EpochHistory:
        return cls(tuple(sorted(epochs, key=lambda e: e.epoch)))

    @classmethod
    def single(cls, committee: Committee, *, start_block: int = 0) -> EpochHistory:
        """A market whose only committee is `committee`, epoch 1 from `start_block`."""
        record = CommitteeEpoch(
            epoch=1, ceremony_id=1, start_block=start_block, threshold=committee.threshold,
            committee_key=committee.committee_key, nodes=committee.nodes,
            encryption_keys=(bytes(32),) * committee.size, share_keys=committee.share_keys,
            qualified=(1 << committee.size) - 1, transcript_hash=bytes(32),
        )
        return cls((FinalizedEpoch(record, None),))

    def get(self, epoch: int) -> FinalizedEpoch | None:
        for item in self.epochs:
            if item.epoch == epoch:
                return item
        return None

    def in_force_at(self, block: int) -> FinalizedEpoch | None:
        """The epoch whose committee was current at `block` (None before epoch 1)."""
        found = None
        for item in self.epochs:
            if item.start_block <= block:
                found = item
        return found

    @property
    def current(self) -> FinalizedEpoch | None:
        return self.epochs[-1] if self.epochs else None

    def addresses(self) -> list[ChecksumAddress]:
        """Every node of every epoch, once each: newest epochs' nodes first, by index."""
        seen: dict[str, ChecksumAddress] = {}
        for item in reversed(self.epochs):
            for address in item.nodes:
                seen.setdefault(address.lower(), address)
        return list(seen.values())

    def is_node(self, address: str) -> bool:
        return any(item.index_of(address) is not None for item in self.epochs)

    def label(self, address: str) -> int:
        """The node's index in the newest epoch it belongs to (0 if none): the `node` field
        of its findings, which equals the committee file's index for a current node."""
        for item in reversed(self.epochs):
            index = item.index_of(address)
            if index is not None:
                return index
        return 0

    def memberships(self, address: str) -> Sequence[tuple[int, int]]:
        """(epoch, index) for each epoch the node belongs to."""
        return [(item.epoch, index) for item in self.epochs
                if (index := item.index_of(address)) is not None]
