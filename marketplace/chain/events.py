"""Typed events of the market contract, read only from its own address.

`EventReader` fetches logs in bounded block ranges (eth-tester and many providers are
slow or refuse wide `eth_getLogs` ranges), filtered by the market's address and by the
topics asked for, and stops at the confirmed head: the latest block minus the
confirmation depth. Decoding refuses a log from any other address, so a look-alike
contract cannot inject events (web3's `process_log` does not check the emitter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from eth_typing import ChecksumAddress
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3._utils.events import get_event_data

from marketplace.chain.errors import ChainError, ChainUnavailable
from marketplace.chain.provider import endpoint_name
from marketplace.chain.types import ETHER, DebitId, ListingId, VersionNumber, Wei


@dataclass(frozen=True, slots=True)
class LogRef:
    """Where a log sits; `key` identifies it across re-reads (and reorgs)."""

    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.block_hash, self.tx_hash, self.log_index)


@dataclass(frozen=True, slots=True)
class ListingCreated:
    ref: LogRef
    listing_id: ListingId
    owner: ChecksumAddress
    price_per_period: Wei
    period_seconds: int
    auto_approve: bool
    terms_hash: bytes
    metadata_uri: str
    asset: ChecksumAddress = ETHER


@dataclass(frozen=True, slots=True)
class ListingUpdated:
    ref: LogRef
    listing_id: ListingId
    price_per_period: Wei
    auto_approve: bool
    open: bool


@dataclass(frozen=True, slots=True)
class VersionPublished:
    ref: LogRef
    listing_id: ListingId
    version: VersionNumber
    cid: bytes
    capsule: bytes


@dataclass(frozen=True, slots=True)
class DebitRequested:
    ref: LogRef
    debit_id: DebitId
    listing_id: ListingId
    buyer: ChecksumAddress
    periods: int
    amount: Wei
    buyer_key: bytes
    purpose_hash: bytes
    auto_approved: bool
    start: int
    end: int
    consent_deadline: int = 0


@dataclass(frozen=True, slots=True)
class DebitConsented:
    ref: LogRef
    debit_id: DebitId
    listing_id: ListingId
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class DebitRejected:
    ref: LogRef
    debit_id: DebitId
    listing_id: ListingId
    refund: Wei


@dataclass(frozen=True, slots=True)
class DebitCancelled:
    ref: LogRef
    debit_id: DebitId
    listing_id: ListingId
    refund: Wei


@dataclass(frozen=True, slots=True)
class DebitRevoked:
    ref: LogRef
    debit_id: DebitId
    listing_id: ListingId
    earned: Wei
    refund: Wei


@dataclass(frozen=True, slots=True)
class EarningsClaimed:
    ref: LogRef
    debit_id: DebitId
    owner: ChecksumAddress
    amount: Wei


@dataclass(frozen=True, slots=True)
class Withdrawn:
    ref: LogRef
    account: ChecksumAddress
    amount: Wei
    asset: ChecksumAddress = ETHER


@dataclass(frozen=True, slots=True)
class ReleasesAnchored:
    ref: LogRef
    node: ChecksumAddress
    seq: int
    root: bytes
    count: int


@dataclass(frozen=True, slots=True)
class CommitteeProposed:
    ref: LogRef
    ceremony_id: int
    epoch: int
    threshold: int
    nodes: tuple[ChecksumAddress, ...]
    encryption_keys: tuple[bytes, ...]
    phase_seconds: int
    not_before: int
    deadline: int


@dataclass(frozen=True, slots=True)
class CommitteeApproved:
    ref: LogRef
    ceremony_id: int
    node: ChecksumAddress
    approvals: int


@dataclass(frozen=True, slots=True)
class CeremonyOpened:
    ref: LogRef
    ceremony_id: int
    opened_at: int


@dataclass(frozen=True, slots=True)
class CeremonyMessage:
    ref: LogRef
    ceremony_id: int
    sender: ChecksumAddress
    kind: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class CommitteeFinalized:
    ref: LogRef
    epoch: int
    ceremony_id: int
    committee_key: bytes
    share_keys: tuple[bytes, ...]
    qualified: int
    transcript_hash: bytes


@dataclass(frozen=True, slots=True)
class GovernorChanged:
    ref: LogRef
    previous: ChecksumAddress
    next: ChecksumAddress


@dataclass(frozen=True, slots=True)
class CeremonyMessageLog:
    """One ceremony message as the ceremony logic orders and times it (chain order is
    (block_number, log_index))."""

    sender: ChecksumAddress
    kind: int
    payload: bytes
    block_number: int
    log_index: int
    block_hash: str

    @classmethod
    def from_event(cls, event: CeremonyMessage) -> CeremonyMessageLog:
        ref = event.ref
        return cls(event.sender, event.kind, event.payload, ref.block_number, ref.log_index,
                   ref.block_hash)


@dataclass(frozen=True, slots=True)
class CommitteeEpochEvent:
    """A `CommitteeFinalized` log: epoch `epoch` became current at `block_number`."""

    epoch: int
    ceremony_id: int
    committee_key: bytes
    share_keys: tuple[bytes, ...]
    qualified: int
    transcript_hash: bytes
    block_number: int

    @classmethod
    def from_event(cls, event: CommitteeFinalized) -> CommitteeEpochEvent:
        return cls(event.epoch, event.ceremony_id, event.committee_key, event.share_keys,
                   event.qualified, event.transcript_hash, event.ref.block_number)


MarketEvent: TypeAlias = (
    ListingCreated
    | ListingUpdated
    | VersionPublished
    | DebitRequested
    | DebitConsented
    | DebitRejected
    | DebitCancelled
    | DebitRevoked
    | EarningsClaimed
    | Withdrawn
    | ReleasesAnchored
    | CommitteeProposed
    | CommitteeApproved
    | CeremonyOpened
    | CeremonyMessage
    | CommitteeFinalized
    | GovernorChanged
)
EventType: TypeAlias = type[MarketEvent]

_Args = Mapping[str, Any]
_BUILDERS: dict[str, tuple[EventType, Callable[[LogRef, _Args], MarketEvent]]] = {
    "ListingCreated": (ListingCreated, lambda r, a: ListingCreated(
        r, ListingId(a["listingId"]), a["owner"], Wei(a["pricePerPeriod"]), a["periodSeconds"],
        a["autoApprove"], bytes(a["termsHash"]), a["metadataURI"], a["asset"])),
    "ListingUpdated": (ListingUpdated, lambda r, a: ListingUpdated(
        r, ListingId(a["listingId"]), Wei(a["pricePerPeriod"]), a["autoApprove"], a["open"])),
    "VersionPublished": (VersionPublished, lambda r, a: VersionPublished(
        r, ListingId(a["listingId"]), VersionNumber(a["version"]), bytes(a["cid"]),
        bytes(a["capsule"]))),
    "DebitRequested": (DebitRequested, lambda r, a: DebitRequested(
        r, DebitId(a["debitId"]), ListingId(a["listingId"]), a["buyer"], a["periods"],
        Wei(a["amount"]), bytes(a["buyerKey"]), bytes(a["purposeHash"]), a["autoApproved"],
        a["start"], a["end"], a["consentDeadline"])),
    "DebitConsented": (DebitConsented, lambda r, a: DebitConsented(
        r, DebitId(a["debitId"]), ListingId(a["listingId"]), a["start"], a["end"])),
    "DebitRejected": (DebitRejected, lambda r, a: DebitRejected(
        r, DebitId(a["debitId"]), ListingId(a["listingId"]), Wei(a["refund"]))),
    "DebitCancelled": (DebitCancelled, lambda r, a: DebitCancelled(
        r, DebitId(a["debitId"]), ListingId(a["listingId"]), Wei(a["refund"]))),
    "DebitRevoked": (DebitRevoked, lambda r, a: DebitRevoked(
        r, DebitId(a["debitId"]), ListingId(a["listingId"]), Wei(a["earned"]), Wei(a["refund"]))),
    "EarningsClaimed": (EarningsClaimed, lambda r, a: EarningsClaimed(
        r, DebitId(a["debitId"]), a["owner"], Wei(a["amount"]))),
    "Withdrawn": (Withdrawn, lambda r, a: Withdrawn(
        r, a["account"], Wei(a["amount"]), a["asset"])),
    "ReleasesAnchored": (ReleasesAnchored, lambda r, a: ReleasesAnchored(
        r, a["node"], a["seq"], bytes(a["root"]), a["count"])),
    "CommitteeProposed": (CommitteeProposed, lambda r, a: CommitteeProposed(
        r, a["ceremonyId"], a["epoch"], a["threshold"],
        tuple(to_checksum_address(n) for n in a["nodes"]),
        tuple(bytes(k) for k in a["encryptionKeys"]), a["phaseSeconds"], a["notBefore"],
        a["deadline"])),
    "CommitteeApproved": (CommitteeApproved, lambda r, a: CommitteeApproved(
        r, a["ceremonyId"], a["node"], a["approvals"])),
    "CeremonyOpened": (CeremonyOpened, lambda r, a: CeremonyOpened(
        r, a["ceremonyId"], a["openedAt"])),
    "CeremonyMessage": (CeremonyMessage, lambda r, a: CeremonyMessage(
        r, a["ceremonyId"], a["sender"], a["kind"], bytes(a["payload"]))),
    "CommitteeFinalized": (CommitteeFinalized, lambda r, a: CommitteeFinalized(
        r, a["epoch"], a["ceremonyId"], bytes(a["committeeKey"]),
        tuple(bytes(k) for k in a["shareKeys"]), a["qualified"], bytes(a["transcriptHash"]))),
    "GovernorChanged": (GovernorChanged, lambda r, a: GovernorChanged(
        r, a["previous"], a["next"])),
}


class ForeignLog(ChainError):
    """A log that did not come from the market contract, or is not one of its events."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        super().__init__(f"refused log from {address}: {reason}")


_Event = TypeVar("_Event")


class ContractEventDecoder(Generic[_Event]):
    """Decodes one contract's logs (and only its own) into typed events, by a table of
    builders keyed by event name (`what` names the contract in refusals)."""

    def __init__(
        self,
        w3: Web3,
        address: str,
        abi: Iterable[dict[str, Any]],
        builders: Mapping[str, tuple[type[_Event], Callable[[LogRef, Any], _Event]]],
        what: str,
    ) -> None:
        self._w3 = w3
        self.address = to_checksum_address(address)
        self._what = what
        self._by_topic: dict[bytes, tuple[dict[str, Any], Callable[[LogRef, Any], _Event]]] = {}
        self._topic_of: dict[type[_Event], bytes] = {}
        for entry in abi:
            if entry.get("type") == "event" and entry["name"] in builders:
                event_type, build = builders[entry["name"]]
                topic = event_abi_to_log_topic(entry)  # type: ignore[arg-type]
                self._by_topic[topic] = (entry, build)
                self._topic_of[event_type] = topic

    def topics(self, kinds: Sequence[type[_Event]] | None) -> list[str]:
        """topic0 values (0x-hex) for the event kinds asked for (all when None)."""
        chosen = kinds if kinds is not None else list(self._topic_of)
        return ["0x" + self._topic_of[k].hex() for k in chosen]

    def decode(self, log: Mapping[str, Any]) -> _Event:
        address = str(log["address"])
        if address.lower() != self.address.lower():
            raise ForeignLog(address, f"not the {self._what} contract")
        topics = log["topics"]
        if not topics or bytes(topics[0]) not in self._by_topic:
            raise ForeignLog(address, f"not {'an' if self._what[0] in 'aeiou' else 'a'} "
                                      f"{self._what} event")
        entry, build = self._by_topic[bytes(topics[0])]
        data = get_event_data(self._w3.codec, entry, log)
        ref = LogRef(
            block_number=int(log["blockNumber"]),
            block_hash="0x" + bytes(log["blockHash"]).hex(),
            tx_hash="0x" + bytes(log["transactionHash"]).hex(),
            log_index=int(log["logIndex"]),
        )
        return build(ref, data["args"])


class EventDecoder(ContractEventDecoder[MarketEvent]):
    """Decodes the market's logs (and only the market's) into typed events."""

    def __init__(self, w3: Web3, market: ChecksumAddress, abi: Iterable[dict[str, Any]]) -> None:
        super().__init__(w3, market, abi, _BUILDERS, "market")

    @property
    def market(self) -> ChecksumAddress:
        return self.address


class EventReader:
    """Reads market events up to the confirmed head, in bounded ranges."""

    def __init__(
        self,
        w3: Web3,
        decoder: EventDecoder,
        *,
        confirmations: int = 0,
        max_block_range: int = 500,
    ) -> None:
        if confirmations < 0 or max_block_range < 1:
            raise ValueError("confirmations must be >= 0 and max_block_range >= 1")
        self._w3 = w3
        self._decoder = decoder
        self.confirmations = confirmations
        self.max_block_range = max_block_range

    def confirmed_head(self) -> int:
        """The newest block deep enough to act on (-1 while the chain is too short)."""
        try:
            return int(self._w3.eth.block_number) - self.confirmations
        except OSError as e:
            raise ChainUnavailable(endpoint_name(self._w3), type(e).__name__) from e

    def read(
        self,
        from_block: int,
        to_block: int | None = None,
        kinds: Sequence[EventType] | None = None,
        indexed: Sequence[bytes | None] = (),
    ) -> list[MarketEvent]:
        """Events in [from_block, to_block] (default: the confirmed head), in chain order.

        `indexed` narrows by the events' indexed arguments, in order, as 32-byte topic
        values (None = any), e.g. `[debit_id.to_bytes(32, "big")]`.
        """
        last = self.confirmed_head() if to_block is None else to_block
        topics: list[Any] = [self._decoder.topics(kinds)]
        topics += [None if t is None else "0x" + t.hex() for t in indexed]
        events: list[MarketEvent] = []
        start = max(from_block, 0)
        while start <= last:
            end = min(start + self.max_block_range - 1, last)
            logs = self._get_logs({
                "address": self._decoder.market,
                "fromBlock": start,
                "toBlock": end,
                "topics": topics,
            })
            events.extend(self._decoder.decode(log) for log in logs)
            start = end + 1
        return events

    def _get_logs(self, query: Any) -> Any:
        try:
            return self._w3.eth.get_logs(query)
        except OSError as e:
            raise ChainUnavailable(endpoint_name(self._w3), type(e).__name__) from e
