"""Domain values of the market contract: ids, units and the records its views return."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Generic, NewType, TypeVar

from eth_typing import ChecksumAddress

ListingId = NewType("ListingId", int)
DebitId = NewType("DebitId", int)
VersionNumber = NewType("VersionNumber", int)
Wei = NewType("Wei", int)

T = TypeVar("T")


class DebitState(IntEnum):
    """Mirrors `IDataMarket.DebitState`; NONE marks an id that was never created."""

    NONE = 0
    REQUESTED = 1
    ACTIVE = 2
    REJECTED = 3
    CANCELLED = 4
    REVOKED = 5


@dataclass(frozen=True, slots=True)
class Committee:
    """The key-release committee fixed at deployment; node i is at position i - 1."""

    committee_key: bytes
    threshold: int
    nodes: tuple[ChecksumAddress, ...]
    share_keys: tuple[bytes, ...]

    @property
    def size(self) -> int:
        return len(self.nodes)

    def index_of(self, node: str) -> int | None:
        """1-based index of a node address, or None when it is not a member."""
        lowered = node.lower()
        for i, address in enumerate(self.nodes, start=1):
            if address.lower() == lowered:
                return i
        return None


@dataclass(frozen=True, slots=True)
class Listing:
    listing_id: ListingId
    owner: ChecksumAddress
    price_per_period: Wei
    period_seconds: int
    version_count: int
    auto_approve: bool
    open: bool


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """What the contract keeps of a version: when, and a 27-byte keccak256(cid) prefix."""

    listing_id: ListingId
    version: VersionNumber
    published_at: int
    cid_digest: bytes


@dataclass(frozen=True, slots=True)
class Debit:
    debit_id: DebitId
    listing_id: ListingId
    buyer: ChecksumAddress
    state: DebitState
    start: int
    end: int
    duration: int
    amount: Wei
    settled: Wei

    def is_running_at(self, timestamp: int) -> bool:
        """Active and not yet expired at `timestamp`."""
        return self.state is DebitState.ACTIVE and timestamp < self.end


@dataclass(frozen=True, slots=True)
class Sent(Generic[T]):
    """A mined transaction's result: its decoded return value and what it cost."""

    value: T
    tx_hash: str
    block_number: int
    gas_used: int
