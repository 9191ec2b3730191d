"""Check 1: the money adds up, replayed from events and compared with the chain.

Every debit's payment is the listing's price times its periods; claims and revocations
credit exactly what accrued linearly over the term at their block's timestamp; rejections
and cancellations refund everything; a withdrawal pays out the whole credited balance.
At the audited block: each account's credited balance and each debit's amount and settled
part match the contract's views, and Σ credited balances + Σ (amount - settled) equals
Σ paid in - Σ paid out; the ether held must cover it. Held above it is a warning, not a
violation: anyone can force ether into any contract (`SELFDESTRUCT`, a block reward), and
no one can take out what is not credited; held below it means ether is missing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from marketplace.audit.chain_view import ChainView
from marketplace.audit.history import MarketHistory
from marketplace.audit.report import CheckRun
from marketplace.chain.errors import ContractRevert
from marketplace.chain.events import (
    DebitCancelled,
    DebitRejected,
    DebitRequested,
    DebitRevoked,
    EarningsClaimed,
    ListingCreated,
    ListingUpdated,
    MarketEvent,
    Withdrawn,
)

NAME = "balance invariant"


def accrued(amount: int, start: int, end: int, at: int) -> int:
    """What the contract's `_accrued` gives at timestamp `at` (linear, rounded down)."""
    until = min(at, end)
    return amount * (until - start) // (end - start) if end > start else amount


@dataclass
class Ledger:
    """Balances replayed from events."""

    credited: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    settled: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    amounts: dict[int, int] = field(default_factory=dict)
    paid_in: int = 0
    paid_out: int = 0

    @property
    def unsettled(self) -> int:
        return sum(amount - self.settled[d] for d, amount in self.amounts.items())


class _Replay:
    def __init__(self, history: MarketHistory, chain: ChainView, run: CheckRun) -> None:
        self.history = history
        self.chain = chain
        self.run = run
        self.ledger = Ledger()
        self.prices: dict[int, int] = {}
        self.bad_debits: set[int] = set()
        self.bad_accounts: set[str] = set()

    def mismatch(self, detail: str, debit_id: int | None = None, account: str = "") -> None:
        fields: dict[str, int | str] = {}
        if debit_id is not None:
            self.bad_debits.add(debit_id)
            fields["debitId"] = debit_id
        if account:
            self.bad_accounts.add(account.lower())
            fields["account"] = account
        self.run.violation("payment_mismatch", detail, **fields)

    def apply(self, event: MarketEvent) -> None:
        if isinstance(event, ListingCreated | ListingUpdated):
            self.prices[event.listing_id] = event.price_per_period
        elif isinstance(event, DebitRequested):
            self._requested(event)
        elif isinstance(event, EarningsClaimed | DebitRevoked):
            self._accrual(event)
        elif isinstance(event, DebitRejected | DebitCancelled):
            self._refund_all(event)
        elif isinstance(event, Withdrawn):
            self._withdrawn(event)

    def _requested(self, event: DebitRequested) -> None:
        price = self.prices.get(event.listing_id)
        if price is None or event.amount != price * event.periods:
            self.mismatch(
                f"debit {event.debit_id} paid {event.amount} wei, not price {price} x "
                f"{event.periods} periods", event.debit_id,
            )
        self.ledger.amounts[event.debit_id] = event.amount
        self.ledger.paid_in += event.amount

    def _accrual(self, event: EarningsClaimed | DebitRevoked) -> None:
        debit = self.history.debits.get(event.debit_id)
        term = debit.term if debit else None
        if debit is None or term is None:
            return  # an orphan or a never-active debit: the transitions check reports it
        amount = debit.requested.amount
        before = self.ledger.settled[event.debit_id]
        due = accrued(amount, *term, self.chain.timestamp(event.ref.block_number))
        owner = self.history.listings[debit.requested.listing_id].owner
        if isinstance(event, EarningsClaimed):
            earned, refund = event.amount, 0
            if due - before != earned or event.owner.lower() != owner.lower():
                self.mismatch(f"debit {event.debit_id}: claim of {earned} wei, "
                              f"{due - before} had accrued", event.debit_id)
            self.ledger.settled[event.debit_id] = before + earned
        else:
            earned, refund = event.earned, event.refund
            if earned != due - before or refund != amount - due:
                self.mismatch(f"debit {event.debit_id}: revoke split {earned}/{refund} wei, "
                              f"expected {due - before}/{amount - due}", event.debit_id)
            self.ledger.settled[event.debit_id] = amount
            self.ledger.credited[debit.requested.buyer.lower()] += refund
        self.ledger.credited[owner.lower()] += earned

    def _refund_all(self, event: DebitRejected | DebitCancelled) -> None:
        debit = self.history.debits.get(event.debit_id)
        if debit is None:
            return
        amount = debit.requested.amount
        if event.refund != amount - self.ledger.settled[event.debit_id]:
            self.mismatch(f"debit {event.debit_id}: refund {event.refund} of {amount} wei",
                          event.debit_id)
        self.ledger.settled[event.debit_id] = amount
        self.ledger.credited[debit.requested.buyer.lower()] += event.refund

    def _withdrawn(self, event: Withdrawn) -> None:
        account = event.account.lower()
        if event.amount != self.ledger.credited[account]:
            self.mismatch(f"{event.account} withdrew {event.amount} wei, "
                          f"{self.ledger.credited[account]} was credited", account=event.account)
        self.ledger.credited[account] -= event.amount
        self.ledger.paid_out += event.amount


def check_balances(history: MarketHistory, chain: ChainView) -> CheckRun:
    run = CheckRun(NAME)
    replay = _Replay(history, chain, run)
    for event in history.events:
        replay.apply(event)
    ledger = replay.ledger
    _compare_accounts(replay, chain, run)
    _compare_debits(replay, chain, run)
    held = chain.contract_balance()
    credited = sum(ledger.credited.values())
    owed = credited + ledger.unsettled
    holds = owed == ledger.paid_in - ledger.paid_out and held >= owed
    sums = (f"the market holds {held} wei; credited {credited} + unsettled escrow "
            f"{ledger.unsettled} = {owed}; paid in {ledger.paid_in} - paid out "
            f"{ledger.paid_out} = {ledger.paid_in - ledger.paid_out}")
    if not holds:
        run.violation("balance_invariant", sums)
    elif held > owed:
        run.warning("balance_surplus", f"{held - owed} wei more than the market owes (ether "
                    f"forced in, e.g. by SELFDESTRUCT; nobody can withdraw it): {sums}",
                    surplus=held - owed)
    run.count(holds)
    return run


def _compare_accounts(replay: _Replay, chain: ChainView, run: CheckRun) -> None:
    for account, replayed in sorted(replay.ledger.credited.items()):
        on_chain = chain.balance_of(account)
        ok = on_chain == replayed and replayed >= 0
        if not ok:
            run.violation("balance_mismatch",
                          f"{account}: events credit {replayed} wei, the chain {on_chain}",
                          account=account)
        run.count(ok and account not in replay.bad_accounts)


def _compare_debits(replay: _Replay, chain: ChainView, run: CheckRun) -> None:
    ledger = replay.ledger
    for debit_id, amount in sorted(ledger.amounts.items()):
        seen: tuple[int, int]
        try:
            debit = chain.debit(debit_id)
            seen = (debit.amount, debit.settled)
        except ContractRevert:
            seen = (-1, -1)
        ok = seen == (amount, ledger.settled[debit_id])
        if not ok:
            run.violation(
                "settlement_mismatch",
                f"debit {debit_id}: events give amount/settled {amount}/"
                f"{ledger.settled[debit_id]} wei, the chain {seen[0]}/{seen[1]}",
                debitId=debit_id,
            )
        run.count(ok and debit_id not in replay.bad_debits)
