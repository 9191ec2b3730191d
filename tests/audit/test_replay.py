"""Balance and transition checks on event histories the contract would never emit,
replayed against a fake chain view (a compromised node or a buggy contract)."""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from marketplace.audit.balances import check_balances
from marketplace.audit.history import MarketHistory
from marketplace.audit.transitions import check_transitions
from marketplace.chain.events import (
    DebitConsented,
    DebitRejected,
    DebitRequested,
    DebitRevoked,
    ListingCreated,
    LogRef,
    MarketEvent,
    Withdrawn,
)
from marketplace.chain.types import (
    ETHER,
    Committee,
    Debit,
    DebitId,
    DebitState,
    ListingId,
    VersionRecord,
    Wei,
)

OWNER = to_checksum_address("0x" + "11" * 20)
BUYER = to_checksum_address("0x" + "22" * 20)
PRICE = 1000
DAY = 86_400


def ref(block: int) -> LogRef:
    return LogRef(block, "0x" + "00" * 32, "0x" + "00" * 32, 0)


def listing(block: int = 1) -> ListingCreated:
    return ListingCreated(ref(block), ListingId(1), OWNER, Wei(PRICE), DAY, False, bytes(32), "")


def requested(debit_id: int = 1, amount: int = 2 * PRICE, block: int = 2) -> DebitRequested:
    return DebitRequested(ref(block), DebitId(debit_id), ListingId(1), BUYER, 2, Wei(amount),
                          bytes(32), bytes(32), False, 0, 0)


@dataclass
class FakeChain:
    """A chain view answering from fixed values."""

    debits: dict[int, Debit] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    held: int = 0
    timestamps: dict[int, int] = field(default_factory=dict)
    head: int = 100

    def contract_balance(self, asset: str = ETHER) -> Wei:
        return Wei(self.held)

    def balance_of(self, account: str, asset: str = ETHER) -> Wei:
        return Wei(self.balances.get(account.lower(), 0))

    def debit(self, debit_id: int) -> Debit:
        return self.debits[debit_id]

    def debit_count(self) -> int:
        return len(self.debits)

    def version(self, listing_id: int, version: int) -> VersionRecord:
        raise NotImplementedError

    def version_count(self, listing_id: int) -> int:
        return 0

    def committee(self) -> Committee:
        raise NotImplementedError

    def is_entitled(self, debit_id: int, version: int, block: int) -> bool:
        raise NotImplementedError

    def timestamp(self, block: int) -> int:
        return self.timestamps[block]


def debit(state: DebitState, amount: int = 2 * PRICE, settled: int = 0) -> Debit:
    buyer: ChecksumAddress = BUYER
    return Debit(DebitId(1), ListingId(1), buyer, state, 0, 0, 0, Wei(amount), Wei(settled))


def history(*events: MarketEvent) -> MarketHistory:
    return MarketHistory.from_events(events, head=100)


def test_transitions_pass_aLegalHistory() -> None:
    events = (listing(), requested(), DebitRejected(ref(3), DebitId(1), ListingId(1),
                                                    Wei(2 * PRICE)))
    run = check_transitions(history(*events), FakeChain({1: debit(DebitState.REJECTED)}))
    assert run.violations == [] and run.checked == 2


def test_transitions_catch_aConsentAfterARejection() -> None:
    events = (listing(), requested(),
              DebitRejected(ref(3), DebitId(1), ListingId(1), Wei(2 * PRICE)),
              DebitConsented(ref(4), DebitId(1), ListingId(1), 10, 10 + 2 * DAY))
    run = check_transitions(history(*events), FakeChain({1: debit(DebitState.REJECTED)}))
    assert [v.kind for v in run.violations] == ["illegal_transition"]
    assert "DebitConsented while REJECTED" in run.violations[0].detail


def test_transitions_catch_aStateTheEventsDoNotExplain() -> None:
    run = check_transitions(history(listing(), requested()),
                            FakeChain({1: debit(DebitState.ACTIVE)}))
    assert [v.kind for v in run.violations] == ["state_mismatch"]


def test_transitions_catch_anEventForADebitNeverRequested() -> None:
    events = (listing(), DebitRevoked(ref(3), DebitId(9), ListingId(1), Wei(1), Wei(1)))
    run = check_transitions(history(*events), FakeChain())
    assert [v.kind for v in run.violations] == ["illegal_transition"]


def consented_and_revoked() -> tuple[MarketEvent, ...]:
    # consented at t=0 for 2 days, revoked at t=DAY/2: a quarter accrued
    return (listing(), requested(),
            DebitConsented(ref(3), DebitId(1), ListingId(1), 0, 2 * DAY),
            DebitRevoked(ref(4), DebitId(1), ListingId(1), Wei(500), Wei(1500)))


def honest_chain() -> FakeChain:
    return FakeChain(
        debits={1: debit(DebitState.REVOKED, settled=2 * PRICE)},
        balances={OWNER.lower(): 500, BUYER.lower(): 1500},
        held=2 * PRICE,
        timestamps={4: DAY // 2},
    )


def test_balances_pass_aConsistentLedger() -> None:
    run = check_balances(history(*consented_and_revoked()), honest_chain())
    assert run.violations == [] and run.checked == 4


def test_balances_catch_etherMissingFromTheContract() -> None:
    chain = honest_chain()
    chain.held -= 1
    run = check_balances(history(*consented_and_revoked()), chain)
    assert [v.kind for v in run.violations] == ["balance_invariant"]


def test_balances_catch_aRevokeThatSplitsWrongly() -> None:
    events = (*consented_and_revoked()[:3],
              DebitRevoked(ref(4), DebitId(1), ListingId(1), Wei(900), Wei(1100)))
    chain = honest_chain()
    chain.balances = {OWNER.lower(): 900, BUYER.lower(): 1100}
    run = check_balances(history(*events), chain)
    assert [v.kind for v in run.violations] == ["payment_mismatch"]


def test_balances_catch_aPaymentBelowThePrice() -> None:
    chain = FakeChain({1: debit(DebitState.REQUESTED, amount=PRICE)}, held=PRICE)
    run = check_balances(history(listing(), requested(amount=PRICE)), chain)
    assert [v.kind for v in run.violations] == ["payment_mismatch"]


def test_balances_catch_aWithdrawalOfMoreThanWasCredited() -> None:
    events = (*consented_and_revoked(), Withdrawn(ref(5), OWNER, Wei(600)))
    chain = honest_chain()
    chain.balances = {OWNER.lower(): 0, BUYER.lower(): 1500}
    chain.held = 1400
    run = check_balances(history(*events), chain)
    assert {v.kind for v in run.violations} == {"payment_mismatch", "balance_mismatch"}


def test_balances_catch_aCreditedBalanceTheEventsDoNotExplain() -> None:
    chain = honest_chain()
    chain.balances[BUYER.lower()] = 1501
    run = check_balances(history(*consented_and_revoked()), chain)
    assert [v.kind for v in run.violations] == ["balance_mismatch"]


def test_balances_warnAbout_etherForcedIntoTheContract_withoutAViolation() -> None:
    """Issue 9 item 8: one wei sent by SELFDESTRUCT (no contract can refuse it) failed
    every later audit with `balance_invariant`; a surplus is now a warning."""
    chain = honest_chain()
    chain.held += 1
    run = check_balances(history(*consented_and_revoked()), chain)
    assert run.violations == [] and run.failed == 0
    (warning,) = run.warnings
    assert warning.kind == "balance_surplus" and warning.fields["surplus"] == 1


def test_balances_catch_aDeficit_evenWhenEventsAreConsistent() -> None:
    chain = honest_chain()
    chain.held = 0
    run = check_balances(history(*consented_and_revoked()), chain)
    assert [v.kind for v in run.violations] == ["balance_invariant"] and run.warnings == []
