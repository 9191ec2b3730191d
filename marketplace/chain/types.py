"""Domain values of the market contract: ids, units and the records its views return."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Generic, NewType, TypeVar

from eth_typing import ChecksumAddress, HexAddress, HexStr
from eth_utils.address import to_checksum_address

ListingId = NewType("ListingId", int)
DebitId = NewType("DebitId", int)
VersionNumber = NewType("VersionNumber", int)
Wei = NewType("Wei", int)

#: The asset of a listing priced in native ether (any other asset is an ERC-20 address).
ETHER = ChecksumAddress(HexAddress(HexStr("0x" + "00" * 20)))

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
    """A key-release committee (the current epoch's, or any final one's); node i is at
    position i - 1."""

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
class Roster:
    """A proposed committee: node i's address and X25519 key at position i - 1, threshold t."""

    nodes: tuple[ChecksumAddress, ...]
    encryption_keys: tuple[bytes, ...]
    threshold: int

    @property
    def size(self) -> int:
        return len(self.nodes)


class CeremonyStatus(IntEnum):
    """Mirrors `IDataMarket.CeremonyStatus`; FAILED = deadline passed before finalization."""

    NONE = 0
    PENDING = 1
    FINALIZED = 2
    FAILED = 3


@dataclass(frozen=True, slots=True)
class CeremonyInfo:
    """`IDataMarket.Ceremony` plus its id; `opened_at` is 0 until it takes messages."""

    ceremony_id: int
    epoch: int
    threshold: int
    phase_seconds: int
    proposed_at: int
    not_before: int
    opened_at: int
    deadline: int
    approvals: int
    status: CeremonyStatus
    roster: Roster

    @property
    def is_reshare(self) -> bool:
        return self.epoch > 1


@dataclass(frozen=True, slots=True)
class CommitteeEpoch:
    """`IDataMarket.CommitteeEpoch`: a final epoch's roster and DKG/reshare result."""

    epoch: int
    ceremony_id: int
    start_block: int
    threshold: int
    committee_key: bytes
    nodes: tuple[ChecksumAddress, ...]
    encryption_keys: tuple[bytes, ...]
    share_keys: tuple[bytes, ...]
    qualified: int
    transcript_hash: bytes

    @property
    def committee(self) -> Committee:
        return Committee(self.committee_key, self.threshold, self.nodes, self.share_keys)

    @property
    def roster(self) -> Roster:
        return Roster(self.nodes, self.encryption_keys, self.threshold)


@dataclass(frozen=True, slots=True)
class Listing:
    listing_id: ListingId
    owner: ChecksumAddress
    price_per_period: Wei
    period_seconds: int
    version_count: int
    auto_approve: bool
    open: bool
    #: What buyers pay in: `ETHER`, or an ERC-20 token's address.
    asset: ChecksumAddress = ETHER

    @property
    def is_ether(self) -> bool:
        return self.asset == ETHER


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
    #: The buyer's consent deadline (0: none) while never Active; 0 once Active.
    consent_deadline: int = 0

    @classmethod
    def from_view(cls, debit_id: int, values: Sequence[Any]) -> Debit:
        """From `getDebit`'s returned tuple (listingId, buyer, state, start, end,
        duration, amount, settled, consentDeadline), whichever client decoded it."""
        listing_id, buyer, state, start, end, duration, amount, settled, deadline = values
        return cls(
            debit_id=DebitId(debit_id),
            listing_id=ListingId(listing_id),
            buyer=to_checksum_address(buyer),
            state=DebitState(state),
            start=start,
            end=end,
            duration=duration,
            amount=Wei(amount),
            settled=Wei(settled),
            consent_deadline=deadline,
        )

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
