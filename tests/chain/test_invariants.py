"""Random sequences of market actions by several actors, checked step by step against a
Python model of listings, debits and the streaming escrow, in three assets at once: ether,
an OpenZeppelin ERC20Permit token and a USDT-style token whose `transfer`s return nothing.

Every action is predicted by the model first: either the exact custom error (with its
arguments) the contract must revert with, or the exact events it must emit. After every
step the chain must agree with the model on each debit, each credited balance and the
market's holdings, and the escrow invariant must hold for every asset on its own:

    held (ether balance, or the token's balanceOf(market))
        == sum of credited balances + sum of (amount - settled) over the asset's debits
        == paid in by requests - paid out by withdrawals (both in that asset).

The clock is deterministic, so the model knows each transaction's `block.timestamp`
before sending it: on eth-tester every block is one second after the previous one; on
anvil time stands still between time-travel jumps. (The client surfaces reverts at gas
estimation, which eth-tester runs on the pending block and anvil on the latest one; with
these clocks both see the timestamp the transaction is then mined with.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from web3.contract import Contract

from marketplace.chain.errors import (
    ContractRevert,
    DebitExpired,
    InvalidDebitState,
    ListingClosed,
    NotDebitBuyer,
    NothingToClaim,
    NothingToWithdraw,
    NotListingOwner,
    UnknownDebit,
    UnknownListing,
    WrongPayment,
    ZeroBuyerKey,
    ZeroPeriods,
)
from marketplace.chain.events import (
    DebitCancelled,
    DebitConsented,
    DebitRejected,
    DebitRequested,
    DebitRevoked,
    EarningsClaimed,
    ListingUpdated,
    MarketEvent,
    Withdrawn,
)
from marketplace.chain.types import ETHER, Debit, DebitState, Sent
from tests.chain.conftest import (
    BUYER_KEY,
    PURPOSE,
    ChainEnv,
    CompiledContract,
    accrued,
    block_time,
    deploy_contract,
    eth_balance,
    gas_cost,
    receipt_of,
    send_call,
)

REQUESTED, ACTIVE = DebitState.REQUESTED, DebitState.ACTIVE
REJECTED, CANCELLED, REVOKED = DebitState.REJECTED, DebitState.CANCELLED, DebitState.REVOKED

#: The assets listings are priced in: ether, then the test tokens of these contracts
#: (tests/chain/contracts/TestTokens.sol), deployed per test.
ETH, PERMIT, NO_RETURN = 0, 1, 2
TOKENS = ["PermitToken", "NoReturnToken"]
#: Tokens minted to (and approved to the market by) every actor: more than any example pays.
MINTED = 10**30

#: (owner actor, price per period, period seconds, auto-approve, asset) of the listings
#: every example starts from; listing id len + 1 never exists.
LISTINGS = [
    (0, 1_000_003, 60, True, ETH),
    (0, 777_777, 45, False, PERMIT),
    (1, 10**15 + 1, 100, False, NO_RETURN),
    (1, 5, 7, True, PERMIT),
    (1, 999, 30, False, ETH),
    (0, 4_001, 20, True, NO_RETURN),
]
UNKNOWN_LISTING = len(LISTINGS) + 1
PRICES = [0, 3, 1_000_003, 10**15 + 7]
ACTOR = st.integers(0, 3)  # owner, stranger (owner of listings 3 and 4), buyer, other buyer

#: (max_examples, stateful_step_count) per backend; eth-tester writes cost ~30 ms each.
BUDGETS = {"embedded": (25, 25), "anvil": (10, 20)}


@dataclass
class ListingModel:
    owner: int
    price: int
    period: int
    auto: bool
    asset: int
    open: bool = True


@dataclass
class DebitModel:
    listing: int
    buyer: int
    state: DebitState
    start: int
    end: int
    duration: int
    amount: int
    settled: int = 0


@dataclass
class Ledger:
    """One asset of one actor as the market sees it."""

    paid_in: int = 0  # what its requests paid (msg.value, or the tokens pulled)
    refunded: int = 0  # refunds credited to it (reject, cancel, revoke)
    earned: int = 0  # earnings credited to it (claim, revoke)
    paid_out: int = 0  # withdrawn
    credit: int = 0  # credited, not yet withdrawn


@dataclass
class Model:
    listings: dict[int, ListingModel]
    debits: dict[int, DebitModel] = field(default_factory=dict)
    #: ledgers[actor][asset]
    ledgers: list[list[Ledger]] = field(
        default_factory=lambda: [[Ledger() for _ in range(1 + len(TOKENS))] for _ in range(4)])

    def escrow(self, asset: int) -> int:
        return sum(d.amount - d.settled for i, d in self.debits.items()
                   if self.asset_of(i) == asset)

    def credited(self, asset: int) -> int:
        return sum(ledgers[asset].credit for ledgers in self.ledgers)

    def owner_of(self, debit_id: int) -> int:
        return self.listings[self.debits[debit_id].listing].owner

    def asset_of(self, debit_id: int) -> int:
        return self.listings[self.debits[debit_id].listing].asset

    def ledger(self, actor: int, debit_id: int) -> Ledger:
        """The actor's ledger in the debit's asset."""
        return self.ledgers[actor][self.asset_of(debit_id)]


Expected = tuple[type[ContractRevert], dict[str, Any]]


def _no_ref(event: MarketEvent) -> MarketEvent:
    return dataclasses.replace(event, ref=None)  # type: ignore[arg-type]


def _market_events(env: ChainEnv, sent: Sent[Any]) -> list[MarketEvent]:
    """The market's own events of a transaction (a token's Transfer logs skipped)."""
    return [env.market.decoder.decode(log) for log in receipt_of(env, sent)["logs"]
            if log["address"] == env.market.address]


def _state_machine(
    env: ChainEnv, actors: list[LocalAccount], tick: int, tokens: list[Contract]
) -> type[RuleBasedStateMachine]:
    """The machine; each transaction is mined `tick` seconds after the latest block."""
    market = env.market
    addr = [a.address for a in actors]
    asset_addr = [ETHER, *(t.address for t in tokens)]

    def holdings(asset: int, address: str) -> int:
        if asset == ETH:
            return eth_balance(env, address)
        return int(tokens[asset - 1].functions.balanceOf(address).call())

    class MarketMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.snapshot = env.dev.snapshot()
            self.model = Model({i: ListingModel(*spec)
                                for i, spec in enumerate(LISTINGS, start=1)})

        def teardown(self) -> None:
            env.dev.revert(self.snapshot)

        # ------------------------------------------------------------ plumbing

        def _send(
            self,
            label: str,
            error: Expected | None,
            action: Callable[[], Sent[Any]],
            apply: Callable[[int], list[MarketEvent]],
        ) -> Sent[Any] | None:
            """Run `action`: it must revert with `error`, or else succeed in the next
            block (`tick` seconds on) and emit exactly the events `apply(time)` returns."""
            at = env.dev.now() + tick
            event(f"{label}: {error[0].__name__ if error else 'ok'}")
            if error is not None:
                kind, fields = error
                with pytest.raises(kind) as caught:
                    action()
                assert caught.value.fields == fields
                return None
            sent = action()
            assert block_time(env, sent) == at
            expected = apply(at)
            assert [_no_ref(e) for e in _market_events(env, sent)] == expected
            return sent

        def _actor(self, data: st.DataObject, preferred: int | None) -> int:
            """Mostly the actor who may act (`preferred`), sometimes anyone."""
            if preferred is not None and data.draw(st.integers(0, 3), label="stray") != 0:
                return preferred
            return data.draw(ACTOR, label="actor")

        def _owned_debit_error(self, actor: int, debit_id: int, needed: DebitState
                               ) -> Expected | None:
            debit = self.model.debits[debit_id]
            if self.model.owner_of(debit_id) != actor:
                return NotListingOwner, {"listingId": debit.listing, "caller": addr[actor]}
            if debit.state is not needed:
                return InvalidDebitState, {"debitId": debit_id, "state": debit.state}
            return None

        def _refund_all(self, debit_id: int, outcome: DebitState) -> int:
            debit = self.model.debits[debit_id]
            refund = debit.amount - debit.settled
            debit.settled = debit.amount
            debit.state = outcome
            ledger = self.model.ledger(debit.buyer, debit_id)
            ledger.refunded += refund
            ledger.credit += refund
            return refund

        # ------------------------------------------------------------ rules

        @initialize()
        def open_debits(self) -> None:
            """Every example starts with an auto-approved and a requested debit."""
            self._request(2, 1, 2, 0, False)
            self._request(3, 3, 1, 0, False)

        @rule(actor=st.sampled_from([2, 3, 2, 3, 0, 1]),
              listing_id=st.integers(1, len(LISTINGS)),
              periods=st.integers(1, 4), data=st.data())
        def request(self, actor: int, listing_id: int, periods: int, data: st.DataObject
                    ) -> None:
            """Mostly a request paying the exact price; sometimes a malformed one."""
            delta, zero_key = 0, False
            if data.draw(st.integers(0, 3), label="malformed") == 0:
                listing_id = data.draw(st.sampled_from([listing_id, UNKNOWN_LISTING]))
                periods = data.draw(st.sampled_from([periods, 0]), label="periods")
                delta = data.draw(st.sampled_from([0, 1, -1]), label="delta")
                zero_key = data.draw(st.booleans(), label="zero key")
            self._request(actor, listing_id, periods, delta, zero_key)

        def _request(self, actor: int, listing_id: int, periods: int, delta: int,
                     zero_key: bool) -> None:
            listing = self.model.listings.get(listing_id)
            amount = listing.price * periods if listing else 0
            # ether: the price (give or take `delta`); a token: no ether (or a stray wei)
            ether = listing is None or listing.asset == ETH
            expected = amount if ether else 0
            value = max(0, expected + delta)
            error: Expected | None = None
            if listing is None:
                error = UnknownListing, {"listingId": listing_id}
            elif not listing.open:
                error = ListingClosed, {"listingId": listing_id}
            elif periods == 0:
                error = ZeroPeriods, {}
            elif zero_key:
                error = ZeroBuyerKey, {}
            elif value != expected:
                error = WrongPayment, {"expected": expected, "sent": value}

            def apply(at: int) -> list[MarketEvent]:
                assert listing is not None
                debit_id = len(self.model.debits) + 1
                duration = listing.period * periods
                start, end = (at, at + duration) if listing.auto else (0, 0)
                self.model.debits[debit_id] = DebitModel(
                    listing_id, actor, ACTIVE if listing.auto else REQUESTED, start, end,
                    duration, amount)
                self.model.ledgers[actor][listing.asset].paid_in += amount
                return [DebitRequested(None, debit_id, listing_id, addr[actor], periods,  # type: ignore[arg-type]
                                       amount, BUYER_KEY, PURPOSE, listing.auto, start, end)]

            label = "request (auto)" if listing and listing.auto else "request (manual)"
            if listing is not None:
                label += f" asset {listing.asset}"
            before = holdings(listing.asset, addr[actor]) if listing and not ether else 0
            sent = self._send(label, error, lambda: market.request_debit(
                actors[actor], listing_id, periods=periods,
                buyer_key=bytes(32) if zero_key else BUYER_KEY, purpose_hash=PURPOSE,
                value=value), apply)
            if sent is not None:
                assert sent.value == len(self.model.debits)
                if listing is not None and not ether:  # exactly the price was pulled
                    assert before - holdings(listing.asset, addr[actor]) == amount

        @precondition(lambda self: self.model.debits)
        @rule(data=st.data())
        def debit_action(self, data: st.DataObject) -> None:
            """Mostly what the debit's state allows, by the party allowed to do it;
            sometimes any action by anyone."""
            now = env.dev.now()
            live = [i for i, d in self.model.debits.items()
                    if d.state is REQUESTED or (d.state is ACTIVE and now < d.end)]
            if not live or data.draw(st.integers(0, 4), label="any debit") == 0:
                live = sorted(self.model.debits)
            debit_id = data.draw(st.sampled_from(live), label="debit")
            debit = self.model.debits[debit_id]
            likely = {REQUESTED: ["consent", "consent", "reject", "cancel"],
                      ACTIVE: ["revoke", "claim", "claim"]}.get(debit.state)
            stray = likely is None or data.draw(st.integers(0, 4), label="stray") == 0
            action = data.draw(st.sampled_from(
                ["consent", "reject", "cancel", "revoke", "claim"] if stray else likely),
                label="action")
            owner = self.model.owner_of(debit_id)
            right = debit.buyer if action == "cancel" else owner
            actor = data.draw(ACTOR, label="actor") if stray else right
            if action == "claim":  # with up to two more debits, mostly the claimant's own
                owned = [i for i in self.model.debits if self.model.owner_of(i) == actor]
                if not owned or data.draw(st.integers(0, 4), label="stray") == 0:
                    owned = list(self.model.debits)
                more = data.draw(st.lists(st.sampled_from(owned), max_size=2), label="more")
                self._claim(actor, [debit_id, *more])
            else:
                getattr(self, "_" + action)(actor, debit_id)

        def _consent(self, actor: int, debit_id: int) -> None:
            error = self._owned_debit_error(actor, debit_id, REQUESTED)

            def apply(at: int) -> list[MarketEvent]:
                debit = self.model.debits[debit_id]
                debit.state, debit.start, debit.end = ACTIVE, at, at + debit.duration
                return [DebitConsented(None, debit_id, debit.listing, debit.start, debit.end)]  # type: ignore[arg-type]

            self._send("consent", error, lambda: market.consent(actors[actor], debit_id), apply)

        def _reject(self, actor: int, debit_id: int) -> None:
            error = self._owned_debit_error(actor, debit_id, REQUESTED)

            def apply(at: int) -> list[MarketEvent]:
                refund = self._refund_all(debit_id, REJECTED)
                listing = self.model.debits[debit_id].listing
                return [DebitRejected(None, debit_id, listing, refund)]  # type: ignore[arg-type]

            self._send("reject", error, lambda: market.reject(actors[actor], debit_id), apply)

        def _cancel(self, actor: int, debit_id: int) -> None:
            debit = self.model.debits[debit_id]
            error: Expected | None = None
            if debit.buyer != actor:
                error = NotDebitBuyer, {"debitId": debit_id, "caller": addr[actor]}
            elif debit.state is not REQUESTED:
                error = InvalidDebitState, {"debitId": debit_id, "state": debit.state}

            def apply(at: int) -> list[MarketEvent]:
                refund = self._refund_all(debit_id, CANCELLED)
                return [DebitCancelled(None, debit_id, debit.listing, refund)]  # type: ignore[arg-type]

            self._send("cancel", error, lambda: market.cancel(actors[actor], debit_id), apply)

        def _revoke(self, actor: int, debit_id: int) -> None:
            error = self._owned_debit_error(actor, debit_id, ACTIVE)
            if error is None and env.dev.now() + tick >= self.model.debits[debit_id].end:
                error = DebitExpired, {"debitId": debit_id}

            def apply(at: int) -> list[MarketEvent]:
                debit = self.model.debits[debit_id]
                total = accrued(debit.amount, debit.start, debit.end, at)
                earned, refund = total - debit.settled, debit.amount - total
                debit.settled, debit.state = debit.amount, REVOKED
                owner = self.model.ledger(actor, debit_id)
                owner.earned += earned
                owner.credit += earned
                buyer = self.model.ledger(debit.buyer, debit_id)
                buyer.refunded += refund
                buyer.credit += refund
                return [DebitRevoked(None, debit_id, debit.listing, earned, refund)]  # type: ignore[arg-type]

            self._send("revoke", error, lambda: market.revoke(actors[actor], debit_id), apply)

        @rule(data=st.data())
        def listing_or_unknown_debit(self, data: st.DataObject) -> None:
            """Rarer actions: change a listing's terms, or act on a debit id that does not
            exist (0 or the next one)."""
            if data.draw(st.booleans(), label="update listing"):
                self._update_listing(data)
                return
            actor = data.draw(ACTOR, label="actor")
            action = data.draw(st.sampled_from(["consent", "reject", "cancel", "revoke",
                                                "claim"]), label="action")
            debit_id = data.draw(st.sampled_from([0, len(self.model.debits) + 1]), label="id")
            error: Expected = UnknownDebit, {"debitId": debit_id}
            if action == "claim":
                owned = [i for i in self.model.debits if self.model.owner_of(i) == actor]
                self._claim(actor, [*owned[:1], debit_id])
                return
            send = getattr(market, action)
            self._send(action, error, lambda: send(actors[actor], debit_id), lambda at: [])

        def _update_listing(self, data: st.DataObject) -> None:
            listing_id = data.draw(st.integers(1, UNKNOWN_LISTING), label="listing")
            price = data.draw(st.sampled_from(PRICES), label="price")
            auto = data.draw(st.booleans(), label="auto")
            is_open = data.draw(st.sampled_from([True, True, False]), label="open")
            listing = self.model.listings.get(listing_id)
            actor = self._actor(data, listing.owner if listing else None)
            error: Expected | None = None
            if listing is None:
                error = UnknownListing, {"listingId": listing_id}
            elif listing.owner != actor:
                error = NotListingOwner, {"listingId": listing_id, "caller": addr[actor]}

            def apply(at: int) -> list[MarketEvent]:
                assert listing is not None
                listing.price, listing.auto, listing.open = price, auto, is_open
                return [ListingUpdated(None, listing_id, price, auto, is_open)]  # type: ignore[arg-type]

            self._send("update", error, lambda: market.update_listing(
                actors[actor], listing_id, price_per_period=price, auto_approve=auto,
                open=is_open), apply)

        def _claim(self, actor: int, ids: list[int]) -> None:
            now = env.dev.now()
            for debit_id in set(ids) & set(self.model.debits):  # the view agrees beforehand
                d = self.model.debits[debit_id]
                due = accrued(d.amount, d.start, d.end, now) - d.settled if d.state is ACTIVE else 0
                assert market.claimable(debit_id) == due
            at = now + tick
            error: Expected | None = None
            total = 0
            settled = {i: d.settled for i, d in self.model.debits.items()}
            for debit_id in ids:
                if debit_id not in self.model.debits:
                    error = UnknownDebit, {"debitId": debit_id}
                    break
                debit = self.model.debits[debit_id]
                if self.model.owner_of(debit_id) != actor:
                    error = NotListingOwner, {"listingId": debit.listing, "caller": addr[actor]}
                    break
                if debit.state is ACTIVE:
                    now_accrued = accrued(debit.amount, debit.start, debit.end, at)
                    total += now_accrued - settled[debit_id]
                    settled[debit_id] = now_accrued
            if error is None and total == 0:
                error = NothingToClaim, {}

            def apply(at: int) -> list[MarketEvent]:
                events: list[MarketEvent] = []
                for debit_id in ids:
                    debit = self.model.debits[debit_id]
                    if debit.state is not ACTIVE:
                        continue
                    due = accrued(debit.amount, debit.start, debit.end, at) - debit.settled
                    if due:
                        debit.settled += due
                        ledger = self.model.ledger(actor, debit_id)  # in the debit's asset
                        ledger.earned += due
                        ledger.credit += due
                        events.append(EarningsClaimed(None, debit_id, addr[actor], due))  # type: ignore[arg-type]
                return events

            sent = self._send("claim", error, lambda: market.claim(actors[actor], ids), apply)
            if sent is not None:
                assert sent.value == total

        @precondition(lambda self: any(ledger.credit for ledgers in self.model.ledgers
                                       for ledger in ledgers))
        @rule(data=st.data())
        def withdraw(self, data: st.DataObject) -> None:
            """Mostly an actor with a credit in the asset; sometimes anyone, in any asset."""
            owed_pairs = [(i, a) for i, ledgers in enumerate(self.model.ledgers)
                          for a, ledger in enumerate(ledgers) if ledger.credit]
            preferred, asset = data.draw(st.sampled_from(owed_pairs), label="owed")
            actor = self._actor(data, preferred)
            if data.draw(st.integers(0, 4), label="stray asset") == 0:
                asset = data.draw(st.sampled_from([ETH, PERMIT, NO_RETURN]), label="asset")
            ledger = self.model.ledgers[actor][asset]
            owed = ledger.credit
            error: Expected | None = (NothingToWithdraw, {}) if owed == 0 else None
            before = holdings(asset, addr[actor])

            def apply(at: int) -> list[MarketEvent]:
                ledger.paid_out += owed
                ledger.credit = 0
                return [Withdrawn(None, addr[actor], owed, asset_addr[asset])]  # type: ignore[arg-type]

            sent = self._send(f"withdraw asset {asset}", error,
                              lambda: market.withdraw(actors[actor], asset_addr[asset]), apply)
            if sent is not None:
                assert sent.value == owed
                gas = gas_cost(env, sent) if asset == ETH else 0
                assert holdings(asset, addr[actor]) - before == owed - gas

        @rule(seconds=st.sampled_from([1, 20, 300, 1_000, 5_000]))
        def time_passes(self, seconds: int) -> None:
            before = env.dev.now()
            assert env.dev.advance(seconds) == before + seconds

        # ------------------------------------------------------------ invariants

        @invariant()
        def escrow_balances(self) -> None:
            """Per asset: held == credited + unsettled == paid in - paid out."""
            model = self.model
            for asset, address in enumerate(asset_addr):
                held = market.contract_balance(address)
                assert held == holdings(asset, market.address)
                assert held == model.credited(asset) + model.escrow(asset)
                paid_in = sum(ledgers[asset].paid_in for ledgers in model.ledgers)
                paid_out = sum(ledgers[asset].paid_out for ledgers in model.ledgers)
                assert held == paid_in - paid_out
                for actor, ledgers in enumerate(model.ledgers):
                    ledger = ledgers[asset]
                    assert market.balance_of(addr[actor], address) == ledger.credit
                    # nobody takes out more than they put in plus what they earned
                    assert ledger.refunded <= ledger.paid_in
                    assert ledger.paid_out + ledger.credit == ledger.refunded + ledger.earned
                    assert ledger.paid_out <= ledger.paid_in + ledger.earned

        @invariant()
        def debits_match(self) -> None:
            assert market.debit_count() == len(self.model.debits)
            for debit_id, d in self.model.debits.items():
                assert market.debit(debit_id) == Debit(
                    debit_id=debit_id, listing_id=d.listing, buyer=addr[d.buyer], state=d.state,
                    start=d.start, end=d.end, duration=d.duration, amount=d.amount,
                    settled=d.settled,
                )

    return MarketMachine


@pytest.fixture
def tick(env: ChainEnv) -> Iterator[int]:
    """A deterministic clock; yields the seconds between a block and the next one.

    eth-tester mines each block one second after the previous one while the chain is
    ahead of the wall clock. anvil follows the wall clock unless given a block-timestamp
    interval: 0 stops its clock between time-travel jumps.
    """
    if env.dev.is_embedded:
        env.dev.advance(10**7)
        yield 1
        return
    env.dev._rpc("anvil_setBlockTimestampInterval", [0])
    try:
        yield 0
    finally:
        env.dev._rpc("anvil_removeBlockTimestampInterval", [])


def test_market_matchesModel_underRandomActions(
    env: ChainEnv, tick: int, helper_contracts: dict[str, CompiledContract]
) -> None:
    a = env.actors
    actors = [a.owner, a.stranger, a.buyer, a.other_buyer]
    tokens = [deploy_contract(env, helper_contracts[name]) for name in TOKENS]
    for token in tokens:
        for actor in actors:
            send_call(env, a.deployer, token.functions.mint(actor.address, MINTED))
            send_call(env, actor, token.functions.approve(env.market.address, MINTED))
    assets = [ETHER, *(t.address for t in tokens)]
    for owner, price, period, auto, asset in LISTINGS:
        env.market.create_listing(actors[owner], price_per_period=price, period_seconds=period,
                                  auto_approve=auto, asset=assets[asset])
    assert env.market.listing_count() == len(LISTINGS)
    max_examples, steps = BUDGETS[env.backend]
    run_state_machine_as_test(
        _state_machine(env, actors, tick, tokens),
        settings=settings(max_examples=max_examples, stateful_step_count=steps, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
