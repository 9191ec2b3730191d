"""Check 1: the money adds up, replayed from events and compared with the chain.

Every debit's payment is the listing's price times its periods; claims and revocations
credit exactly what accrued linearly over the term at their block's timestamp; rejections
and cancellations refund everything; a withdrawal pays out the whole credited balance.
At the audited block: each account's credited balance and each debit's amount and settled
part match the contract's views, and Σ credited balances + Σ (amount - settled) equals
Σ paid in - Σ paid out; the ether held must cover it. Held above it is a warning, not a
violation: anyone can force ether into any contract (`SELFDESTRUCT`, a block reward), and
no one can take out what is not credited; held below it means ether is missing.

All of this holds per asset (DESIGN §12): a debit is paid in its listing's asset
(`ListingCreated.asset`), a withdrawal names its own (`Withdrawn.asset`), and what the
market holds of a token is the token's `balanceOf(market)` at the audited block. Ether is
always checked (an ether-only market's report is the same as before tokens); a token is
checked once any listing is priced in it or any withdrawal names it. Tokens sent straight
to the market are a surplus, like forced ether.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from marketplace.audit.chain_view import ChainView
from marketplace.audit.history import MarketHistory
from marketplace.audit.report import CheckRun
from marketplace.chain.errors import ChainError, ContractRevert
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
from marketplace.chain.types import ETHER

NAME = "balance invariant"


def unit(asset: str) -> str:
    """How amounts of `asset` read in findings: "wei", or the token's smallest unit."""
    return "wei" if asset == ETHER else f"units of {asset}"


def _asset_fields(asset: str) -> dict[str, int | str]:
    """An `asset` field on token findings only (ether findings keep their old shape)."""
    return {} if asset == ETHER else {"asset": asset}


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
        #: one ledger per asset, ether's always
        self.ledgers: dict[str, Ledger] = {ETHER: Ledger()}
        self.prices: dict[int, int] = {}
        self.listing_assets: dict[int, str] = {}
        self.debit_assets: dict[int, str] = {}
        self.bad_debits: set[int] = set()
        self.bad_accounts: set[tuple[str, str]] = set()

    def ledger(self, asset: str) -> Ledger:
        return self.ledgers.setdefault(asset, Ledger())

    def debit_ledger(self, debit_id: int) -> tuple[str, Ledger]:
        asset = self.debit_assets.get(debit_id, ETHER)
        return asset, self.ledger(asset)

    def mismatch(self, detail: str, debit_id: int | None = None, account: str = "",
                 asset: str = ETHER) -> None:
        fields: dict[str, int | str] = {}
        if debit_id is not None:
            self.bad_debits.add(debit_id)
            fields["debitId"] = debit_id
        if account:
            self.bad_accounts.add((asset, account.lower()))
            fields["account"] = account
        self.run.violation("payment_mismatch", detail, **fields, **_asset_fields(asset))

    def apply(self, event: MarketEvent) -> None:
        if isinstance(event, ListingCreated):
            self.prices[event.listing_id] = event.price_per_period
            self.listing_assets[event.listing_id] = event.asset
            self.ledger(event.asset)
        elif isinstance(event, ListingUpdated):
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
        asset = self.listing_assets.get(event.listing_id, ETHER)
        self.debit_assets[event.debit_id] = asset
        if price is None or event.amount != price * event.periods:
            self.mismatch(
                f"debit {event.debit_id} paid {event.amount} {unit(asset)}, not price "
                f"{price} x {event.periods} periods", event.debit_id, asset=asset,
            )
        ledger = self.ledger(asset)
        ledger.amounts[event.debit_id] = event.amount
        ledger.paid_in += event.amount

    def _accrual(self, event: EarningsClaimed | DebitRevoked) -> None:
        debit = self.history.debits.get(event.debit_id)
        term = debit.term if debit else None
        if debit is None or term is None:
            return  # an orphan or a never-active debit: the transitions check reports it
        amount = debit.requested.amount
        asset, ledger = self.debit_ledger(event.debit_id)
        before = ledger.settled[event.debit_id]
        due = accrued(amount, *term, self.chain.timestamp(event.ref.block_number))
        owner = self.history.listings[debit.requested.listing_id].owner
        if isinstance(event, EarningsClaimed):
            earned, refund = event.amount, 0
            if due - before != earned or event.owner.lower() != owner.lower():
                self.mismatch(f"debit {event.debit_id}: claim of {earned} {unit(asset)}, "
                              f"{due - before} had accrued", event.debit_id, asset=asset)
            ledger.settled[event.debit_id] = before + earned
        else:
            earned, refund = event.earned, event.refund
            if earned != due - before or refund != amount - due:
                self.mismatch(f"debit {event.debit_id}: revoke split {earned}/{refund} "
                              f"{unit(asset)}, expected {due - before}/{amount - due}",
                              event.debit_id, asset=asset)
            ledger.settled[event.debit_id] = amount
            ledger.credited[debit.requested.buyer.lower()] += refund
        ledger.credited[owner.lower()] += earned

    def _refund_all(self, event: DebitRejected | DebitCancelled) -> None:
        debit = self.history.debits.get(event.debit_id)
        if debit is None:
            return
        amount = debit.requested.amount
        asset, ledger = self.debit_ledger(event.debit_id)
        if event.refund != amount - ledger.settled[event.debit_id]:
            self.mismatch(f"debit {event.debit_id}: refund {event.refund} of {amount} "
                          f"{unit(asset)}", event.debit_id, asset=asset)
        ledger.settled[event.debit_id] = amount
        ledger.credited[debit.requested.buyer.lower()] += event.refund

    def _withdrawn(self, event: Withdrawn) -> None:
        account = event.account.lower()
        asset, ledger = event.asset, self.ledger(event.asset)
        if event.amount != ledger.credited[account]:
            self.mismatch(f"{event.account} withdrew {event.amount} {unit(asset)}, "
                          f"{ledger.credited[account]} was credited", account=event.account,
                          asset=asset)
        ledger.credited[account] -= event.amount
        ledger.paid_out += event.amount


def check_balances(history: MarketHistory, chain: ChainView) -> CheckRun:
    run = CheckRun(NAME)
    replay = _Replay(history, chain, run)
    for event in history.events:
        replay.apply(event)
    assets = [ETHER, *sorted(a for a in replay.ledgers if a != ETHER)]
    for asset in assets:
        _compare_accounts(replay, asset, chain, run)
    _compare_debits(replay, chain, run)
    for asset in assets:
        _check_holdings(replay.ledgers[asset], asset, chain, run)
    return run


def _check_holdings(ledger: Ledger, asset: str, chain: ChainView, run: CheckRun) -> None:
    """Held == credited + unsettled == paid in - paid out, for one asset."""
    units = unit(asset)
    try:
        held: int | None = chain.contract_balance(asset)
    except (ContractRevert, ChainError) as e:
        # a token whose `balanceOf` reverts or answers garbage: the sums cannot be checked
        if asset == ETHER:
            raise
        held, why = None, f"{type(e).__name__}: {e}"
    credited = sum(ledger.credited.values())
    owed = credited + ledger.unsettled
    sums = (f"the market holds {held} {units}; credited {credited} + unsettled escrow "
            f"{ledger.unsettled} = {owed}; paid in {ledger.paid_in} - paid out "
            f"{ledger.paid_out} = {ledger.paid_in - ledger.paid_out}")
    if held is None:
        run.violation("balance_invariant", f"the market's holdings of {asset} could not be "
                      f"read ({why}): {sums}", asset=asset)
        run.count(False)
        return
    holds = owed == ledger.paid_in - ledger.paid_out and held >= owed
    if not holds:
        run.violation("balance_invariant", sums, **_asset_fields(asset))
    elif held > owed:
        forced = ("ether forced in, e.g. by SELFDESTRUCT" if asset == ETHER
                  else "tokens transferred straight to the market")
        run.warning("balance_surplus", f"{held - owed} {units} more than the market owes "
                    f"({forced}; nobody can withdraw it): {sums}",
                    surplus=held - owed, **_asset_fields(asset))
    run.count(holds)


def _compare_accounts(replay: _Replay, asset: str, chain: ChainView, run: CheckRun) -> None:
    for account, replayed in sorted(replay.ledgers[asset].credited.items()):
        on_chain = chain.balance_of(account, asset)
        ok = on_chain == replayed and replayed >= 0
        if not ok:
            run.violation("balance_mismatch",
                          f"{account}: events credit {replayed} {unit(asset)}, the chain "
                          f"{on_chain}", account=account, **_asset_fields(asset))
        run.count(ok and (asset, account) not in replay.bad_accounts)


def _compare_debits(replay: _Replay, chain: ChainView, run: CheckRun) -> None:
    amounts = {d: (asset, ledger) for asset, ledger in replay.ledgers.items()
               for d in ledger.amounts}
    for debit_id, (asset, ledger) in sorted(amounts.items()):
        amount = ledger.amounts[debit_id]
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
                f"{ledger.settled[debit_id]} {unit(asset)}, the chain {seen[0]}/{seen[1]}",
                debitId=debit_id, **_asset_fields(asset),
            )
        run.count(ok and debit_id not in replay.bad_debits)
