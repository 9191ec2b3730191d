"""Values, custom errors and typed events of the AggregateMarket contract (issue 14).

Errors whose name and arguments are the DataMarket's (`MalformedCid`, `NoCommittee`,
`NotCommitteeNode`, `PaymentTooLarge`, `NothingToWithdraw`) decode to the classes of
`marketplace.chain.errors`; the rest are defined here, registered by name the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from typing import Any, NewType, TypeAlias

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from web3 import Web3

from marketplace.chain.errors import ContractRevert
from marketplace.chain.events import ContractEventDecoder, LogRef
from marketplace.chain.types import Wei

CohortId = NewType("CohortId", int)
AggregateId = NewType("AggregateId", int)
#: Epsilon in micro-units (1e-6), as the contract counts it.
EpsilonMicros = NewType("EpsilonMicros", int)

MICROS_PER_EPSILON = 1_000_000
#: Round numbers of `postAggregateRound` (docs/protocol.md §20).
ROUND_SHARINGS, ROUND_OPENINGS, ROUND_PARTIALS = 1, 2, 3


def epsilon_micros(value: str | Decimal | int) -> EpsilonMicros:
    """An epsilon ("0.5", Decimal("0.5"), 2) in micro-units, exactly; refuses more than six
    decimals, non-positive values and values beyond the contract's 64 bits."""
    try:
        amount = Decimal(value) * MICROS_PER_EPSILON
    except (InvalidOperation, ValueError) as e:
        raise ValueError(f"not an epsilon: {value!r}") from e
    if not amount.is_finite() or amount != amount.to_integral_value():
        raise ValueError(f"epsilon {value} has more than six decimals (or is not finite)")
    micros = int(amount)
    if not 0 < micros < 2**64:
        raise ValueError(f"epsilon {value} is out of range (0, 18446744073709.551615]")
    return EpsilonMicros(micros)


class AggregateState(IntEnum):
    """Mirrors `IAggregateMarket.AggregateState`; NONE marks an id never created."""

    NONE = 0
    OPEN = 1
    PAYING = 2
    REFUNDED = 3


@dataclass(frozen=True, slots=True)
class Cohort:
    cohort_id: CohortId
    admin: ChecksumAddress
    schema_hash: bytes
    epsilon_cap: EpsilonMicros
    epsilon_spent: EpsilonMicros
    min_contributors: int
    members: int

    @property
    def epsilon_left(self) -> EpsilonMicros:
        return EpsilonMicros(self.epsilon_cap - self.epsilon_spent)


@dataclass(frozen=True, slots=True)
class AggregateDebit:
    """`IAggregateMarket.AggregateDebit`; the contract holds `price - settled` for it."""

    debit_id: AggregateId
    cohort_id: CohortId
    buyer: ChecksumAddress
    state: AggregateState
    price: Wei
    settled: Wei
    epsilon: EpsilonMicros
    deadline: int
    epoch: int
    contributions: int
    claims: int

    @classmethod
    def from_view(cls, debit_id: int, values: Sequence[Any]) -> AggregateDebit:
        (cohort_id, buyer, state, price, settled, epsilon, deadline, epoch, contributions,
         claims) = values
        return cls(AggregateId(debit_id), CohortId(cohort_id), to_checksum_address(buyer),
                   AggregateState(state), Wei(price), Wei(settled), EpsilonMicros(epsilon),
                   deadline, epoch, contributions, claims)

    def is_open_at(self, timestamp: int) -> bool:
        """Whether a member may still contribute at `timestamp`."""
        return self.state is AggregateState.OPEN and timestamp < self.deadline


# ---------------------------------------------------------------- custom errors


class NotAMarket(ContractRevert, ValueError):
    """The market address has no code (it must be a deployed DataMarket)."""


class UnknownCohort(ContractRevert, LookupError):
    """No cohort has this id."""


class UnknownAggregate(ContractRevert, LookupError):
    """No aggregate debit has this id."""


class ZeroEpsilonCap(ContractRevert, ValueError):
    """A cohort's epsilon cap must be positive."""


class ZeroMinContributors(ContractRevert, ValueError):
    """A cohort needs at least one contributor per query (k >= 1)."""


class AlreadyMember(ContractRevert):
    """The owner is already a member of the cohort."""


class NotMember(ContractRevert, PermissionError):
    """The owner is not a member of the cohort."""


class ZeroEpsilon(ContractRevert, ValueError):
    """A query's epsilon must be positive."""


class EpsilonCapExceeded(ContractRevert):
    """The query would take the cohort's spent epsilon over its cap."""


class ZeroPayment(ContractRevert, ValueError):
    """An aggregate debit must be paid for (msg.value > 0)."""


class InvalidDeadline(ContractRevert, ValueError):
    """A contribution deadline must be in the future and fit 40 bits."""


class ContributionsClosed(ContractRevert):
    """Contributions are closed: the deadline has passed."""


class DeadlineNotPassed(ContractRevert):
    """The deadline has not passed yet (rounds, claims and refunds come after it)."""


class AlreadyContributed(ContractRevert):
    """The owner already contributed to this debit."""


class TooFewContributions(ContractRevert):
    """Fewer than k owners contributed: no rounds, no payouts (refund instead)."""


class EnoughContributions(ContractRevert):
    """At least k owners contributed: the debit is paid out, not refunded."""


class NotContributor(ContractRevert, PermissionError):
    """The caller did not contribute to this debit."""


class AlreadyClaimed(ContractRevert):
    """The contributor already claimed its share of this debit."""


class AlreadyRefunded(ContractRevert):
    """The debit was already refunded."""


class InvalidRound(ContractRevert, ValueError):
    """Round numbers are 1 SHARINGS, 2 OPENINGS, 3 PARTIALS."""


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class CohortCreated:
    ref: LogRef
    cohort_id: CohortId
    admin: ChecksumAddress
    schema_hash: bytes
    schema_uri: str
    epsilon_cap: EpsilonMicros
    min_contributors: int


@dataclass(frozen=True, slots=True)
class CohortJoined:
    ref: LogRef
    cohort_id: CohortId
    owner: ChecksumAddress
    members: int


@dataclass(frozen=True, slots=True)
class CohortLeft:
    ref: LogRef
    cohort_id: CohortId
    owner: ChecksumAddress
    members: int


@dataclass(frozen=True, slots=True)
class AggregateRequested:
    ref: LogRef
    debit_id: AggregateId
    cohort_id: CohortId
    buyer: ChecksumAddress
    price: Wei
    epsilon: EpsilonMicros
    deadline: int
    epoch: int
    query_hash: bytes
    query_uri: str


@dataclass(frozen=True, slots=True)
class ContributionRecorded:
    ref: LogRef
    debit_id: AggregateId
    owner: ChecksumAddress
    bundle_cid: bytes


@dataclass(frozen=True, slots=True)
class AggregateRoundPosted:
    ref: LogRef
    debit_id: AggregateId
    node: ChecksumAddress
    round: int
    cid: bytes


@dataclass(frozen=True, slots=True)
class AggregatePayoutFixed:
    ref: LogRef
    debit_id: AggregateId
    buyer: ChecksumAddress
    contributions: int
    share: Wei
    remainder: Wei


@dataclass(frozen=True, slots=True)
class ContributionClaimed:
    ref: LogRef
    debit_id: AggregateId
    owner: ChecksumAddress
    amount: Wei


@dataclass(frozen=True, slots=True)
class AggregateRefunded:
    ref: LogRef
    debit_id: AggregateId
    buyer: ChecksumAddress
    refund: Wei
    epsilon: EpsilonMicros


@dataclass(frozen=True, slots=True)
class AggregateWithdrawn:
    """The contract's `Withdrawn(account, amount)` (ether only, unlike the DataMarket's)."""

    ref: LogRef
    account: ChecksumAddress
    amount: Wei


AggregateEvent: TypeAlias = (
    CohortCreated
    | CohortJoined
    | CohortLeft
    | AggregateRequested
    | ContributionRecorded
    | AggregateRoundPosted
    | AggregatePayoutFixed
    | ContributionClaimed
    | AggregateRefunded
    | AggregateWithdrawn
)
AggregateEventType: TypeAlias = type[AggregateEvent]

_Args = Mapping[str, Any]
_BUILDERS: dict[str, tuple[AggregateEventType, Callable[[LogRef, _Args], AggregateEvent]]] = {
    "CohortCreated": (CohortCreated, lambda r, a: CohortCreated(
        r, CohortId(a["cohortId"]), a["admin"], bytes(a["schemaHash"]), a["schemaURI"],
        EpsilonMicros(a["epsilonCapMicros"]), a["minContributors"])),
    "CohortJoined": (CohortJoined, lambda r, a: CohortJoined(
        r, CohortId(a["cohortId"]), a["owner"], a["members"])),
    "CohortLeft": (CohortLeft, lambda r, a: CohortLeft(
        r, CohortId(a["cohortId"]), a["owner"], a["members"])),
    "AggregateRequested": (AggregateRequested, lambda r, a: AggregateRequested(
        r, AggregateId(a["debitId"]), CohortId(a["cohortId"]), a["buyer"], Wei(a["price"]),
        EpsilonMicros(a["epsilonMicros"]), a["deadline"], a["epoch"], bytes(a["queryHash"]),
        a["queryURI"])),
    "ContributionRecorded": (ContributionRecorded, lambda r, a: ContributionRecorded(
        r, AggregateId(a["debitId"]), a["owner"], bytes(a["bundleCid"]))),
    "AggregateRoundPosted": (AggregateRoundPosted, lambda r, a: AggregateRoundPosted(
        r, AggregateId(a["debitId"]), a["node"], a["round"], bytes(a["cid"]))),
    "AggregatePayoutFixed": (AggregatePayoutFixed, lambda r, a: AggregatePayoutFixed(
        r, AggregateId(a["debitId"]), a["buyer"], a["contributions"], Wei(a["share"]),
        Wei(a["remainder"]))),
    "ContributionClaimed": (ContributionClaimed, lambda r, a: ContributionClaimed(
        r, AggregateId(a["debitId"]), a["owner"], Wei(a["amount"]))),
    "AggregateRefunded": (AggregateRefunded, lambda r, a: AggregateRefunded(
        r, AggregateId(a["debitId"]), a["buyer"], Wei(a["refund"]),
        EpsilonMicros(a["epsilonMicros"]))),
    "Withdrawn": (AggregateWithdrawn, lambda r, a: AggregateWithdrawn(
        r, a["account"], Wei(a["amount"]))),
}


class AggregateEventDecoder(ContractEventDecoder[AggregateEvent]):
    """Decodes the AggregateMarket's logs (and only its own) into typed events."""

    def __init__(self, w3: Web3, address: str, abi: Iterable[dict[str, Any]]) -> None:
        super().__init__(w3, address, abi, _BUILDERS, "aggregate market")
