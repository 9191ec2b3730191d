"""Random sequences of AggregateMarket actions by several actors, checked step by step
against a Python model of cohorts, members, epsilon budgets, aggregate debits and credits.

Every action is predicted by the model first: the exact custom error (with its
arguments) the contract must revert with, or the exact events it must emit. After every
step the chain must agree with the model on every cohort, debit and credited balance, and
the escrow invariant must hold:

    ether held == sum of credited balances + sum of (price - settled) over the debits
               == paid in by requests - paid out by withdrawals.

The clock is deterministic (see tests/chain/test_invariants.py): the model knows each
transaction's block.timestamp before sending it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
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

from marketplace.chain.aggregate import AggregateClient
from marketplace.chain.aggregate_types import (
    ROUND_PARTIALS,
    AggregateDebit,
    AggregateEvent,
    AggregatePayoutFixed,
    AggregateRefunded,
    AggregateRequested,
    AggregateRoundPosted,
    AggregateState,
    AggregateWithdrawn,
    AlreadyClaimed,
    AlreadyContributed,
    AlreadyMember,
    AlreadyRefunded,
    CohortJoined,
    CohortLeft,
    ContributionClaimed,
    ContributionRecorded,
    ContributionsClosed,
    DeadlineNotPassed,
    EnoughContributions,
    EpsilonCapExceeded,
    InvalidDeadline,
    NotContributor,
    NotMember,
    TooFewContributions,
    UnknownAggregate,
    UnknownCohort,
    ZeroEpsilon,
    ZeroPayment,
)
from marketplace.chain.errors import ContractRevert, NotCommitteeNode, NothingToWithdraw
from marketplace.chain.types import Sent
from tests.chain.conftest import ChainEnv, block_time, eth_balance, gas_cost, receipt_of

OPEN, PAYING, REFUNDED = AggregateState.OPEN, AggregateState.PAYING, AggregateState.REFUNDED
QUERY = keccak(b"query")
BUNDLE = bytes([0x01, 0x55, 0x12, 0x20]) + keccak(b"bundle")
EPS = 250_000
#: (k, epsilon cap) of the cohorts every example starts from; id len + 1 never exists.
COHORTS = [(2, 4 * EPS), (1, 2 * EPS), (3, 10 * EPS)]
UNKNOWN_COHORT = len(COHORTS) + 1
PRICES = [1_000_003, 7, 10**15 + 1, 0]
EPSILONS = [EPS, 2 * EPS, 0]
DEADLINES = [60, 300, 20, 0]  # seconds after the request's block; 0 is invalid
ACTOR = st.integers(0, 3)
#: (max_examples, stateful_step_count) per backend; eth-tester writes cost ~30 ms each.
BUDGETS = {"embedded": (10, 30), "anvil": (15, 30)}


@dataclass
class CohortModel:
    k: int
    cap: int
    spent: int = 0
    members: set[int] = field(default_factory=set)


@dataclass
class DebitModel:
    cohort: int
    buyer: int
    price: int
    epsilon: int
    deadline: int
    state: AggregateState = OPEN
    contributors: set[int] = field(default_factory=set)
    claimed: set[int] = field(default_factory=set)

    @property
    def settled(self) -> int:
        if self.state is REFUNDED:
            return self.price
        if self.state is PAYING:
            count = len(self.contributors)
            return self.price % count + self.price // count * len(self.claimed)
        return 0


@dataclass
class Model:
    cohorts: dict[int, CohortModel]
    debits: dict[int, DebitModel] = field(default_factory=dict)
    credit: list[int] = field(default_factory=lambda: [0] * 4)
    paid_in: list[int] = field(default_factory=lambda: [0] * 4)
    paid_out: list[int] = field(default_factory=lambda: [0] * 4)


Expected = tuple[type[ContractRevert], dict[str, Any]]


def _no_ref(e: AggregateEvent) -> AggregateEvent:
    return dataclasses.replace(e, ref=None)  # type: ignore[arg-type]


def _state_machine(
    env: ChainEnv, client: AggregateClient, actors: list[LocalAccount], tick: int
) -> type[RuleBasedStateMachine]:
    addr = [a.address for a in actors]
    node = env.actors.nodes[0]

    class AggregateMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.snapshot = env.dev.snapshot()
            self.model = Model({i: CohortModel(k, cap) for i, (k, cap) in
                                enumerate(COHORTS, start=1)})

        def teardown(self) -> None:
            env.dev.revert(self.snapshot)

        def _send(
            self,
            label: str,
            error: Expected | None,
            action: Callable[[], Sent[Any]],
            apply: Callable[[int], list[AggregateEvent]],
        ) -> Sent[Any] | None:
            """`action` must revert with `error`, or else be mined `tick` seconds on and
            emit exactly the events `apply(time)` returns."""
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
            logs = receipt_of(env, sent)["logs"]
            assert [_no_ref(client.decoder.decode(log)) for log in logs] == expected
            return sent

        def _debit(self, data: st.DataObject, useful: Callable[[DebitModel, bool], bool]
                   ) -> int:
            """Mostly a debit the action can succeed on (`useful(debit, past_deadline)`);
            sometimes any debit, rarely an unknown id. (Hypothesis favours small draws, so
            the usual choice is 0.)"""
            at = env.dev.now() + tick
            ids = sorted(self.model.debits)
            chosen = [i for i in ids if useful(self.model.debits[i],
                                               at >= self.model.debits[i].deadline)]
            pick = data.draw(st.integers(0, 9), label="which debit")
            if pick == 9 or not ids:
                return data.draw(st.sampled_from([0, len(ids) + 1]), label="unknown id")
            if pick >= 7 or not chosen:
                chosen = ids
            return data.draw(st.sampled_from(chosen), label="debit")

        def _answerable(self, d: DebitModel, past: bool) -> bool:
            return past and len(d.contributors) >= self.model.cohorts[d.cohort].k

        # ------------------------------------------------------------ cohorts

        @initialize()
        def members(self) -> None:
            """Actors 0 and 1 start in every cohort, actor 2 in the first."""
            for cohort_id in self.model.cohorts:
                for actor in (0, 1):
                    self._join(actor, cohort_id)
            self._join(2, 1)
            self._request(3, 1, PRICES[0], EPS, 60)
            self._request(2, 2, PRICES[1], EPS, 20)

        @rule(actor=ACTOR, cohort_id=st.integers(1, UNKNOWN_COHORT), join=st.booleans())
        def membership(self, actor: int, cohort_id: int, join: bool) -> None:
            if join:
                self._join(actor, cohort_id)
            else:
                self._leave(actor, cohort_id)

        def _join(self, actor: int, cohort_id: int) -> None:
            cohort = self.model.cohorts.get(cohort_id)
            error: Expected | None = None
            if cohort is None:
                error = UnknownCohort, {"cohortId": cohort_id}
            elif actor in cohort.members:
                error = AlreadyMember, {"cohortId": cohort_id, "owner": addr[actor]}

            def apply(at: int) -> list[AggregateEvent]:
                assert cohort is not None
                cohort.members.add(actor)
                return [CohortJoined(None, cohort_id, addr[actor], len(cohort.members))]  # type: ignore[arg-type]

            self._send("join", error, lambda: client.join_cohort(actors[actor], cohort_id),
                       apply)

        def _leave(self, actor: int, cohort_id: int) -> None:
            cohort = self.model.cohorts.get(cohort_id)
            error: Expected | None = None
            if cohort is None:
                error = UnknownCohort, {"cohortId": cohort_id}
            elif actor not in cohort.members:
                error = NotMember, {"cohortId": cohort_id, "owner": addr[actor]}

            def apply(at: int) -> list[AggregateEvent]:
                assert cohort is not None
                cohort.members.discard(actor)
                return [CohortLeft(None, cohort_id, addr[actor], len(cohort.members))]  # type: ignore[arg-type]

            self._send("leave", error, lambda: client.leave_cohort(actors[actor], cohort_id),
                       apply)

        # ------------------------------------------------------------ debits

        def _few_open(self) -> bool:
            """At most three debits take contributions at once, so that they fill up."""
            at = env.dev.now() + tick
            return sum(at < d.deadline for d in self.model.debits.values()) < 3

        @precondition(_few_open)
        @rule(actor=ACTOR, cohort_id=st.sampled_from([1, 1, 2, 3]),
              price=st.sampled_from(PRICES[:-1]), epsilon=st.sampled_from(EPSILONS[:-1]),
              offset=st.sampled_from(DEADLINES[:-1]), data=st.data())
        def request(self, actor: int, cohort_id: int, price: int, epsilon: int,
                    offset: int, data: st.DataObject) -> None:
            """Mostly a well-formed request; sometimes any."""
            if data.draw(st.integers(0, 3), label="malformed") == 3:
                cohort_id = data.draw(st.sampled_from([cohort_id, UNKNOWN_COHORT]))
                price = data.draw(st.sampled_from([price, 0]), label="price")
                epsilon = data.draw(st.sampled_from([epsilon, 0]), label="epsilon")
                offset = data.draw(st.sampled_from([offset, 0]), label="offset")
            self._request(actor, cohort_id, price, epsilon, offset)

        def _request(self, actor: int, cohort_id: int, price: int, epsilon: int,
                     offset: int) -> None:
            at = env.dev.now() + tick
            deadline = at + offset
            cohort = self.model.cohorts.get(cohort_id)
            error: Expected | None = None
            if cohort is None:
                error = UnknownCohort, {"cohortId": cohort_id}
            elif price == 0:
                error = ZeroPayment, {}
            elif epsilon == 0:
                error = ZeroEpsilon, {}
            elif offset == 0:
                error = InvalidDeadline, {"deadline": deadline}
            elif cohort.spent + epsilon > cohort.cap:
                error = EpsilonCapExceeded, {"cohortId": cohort_id, "spentMicros": cohort.spent,
                                             "requestedMicros": epsilon, "capMicros": cohort.cap}

            def apply(at: int) -> list[AggregateEvent]:
                assert cohort is not None
                debit_id = len(self.model.debits) + 1
                cohort.spent += epsilon
                self.model.debits[debit_id] = DebitModel(cohort_id, actor, price, epsilon,
                                                         deadline)
                self.model.paid_in[actor] += price
                return [AggregateRequested(None, debit_id, cohort_id, addr[actor], price,  # type: ignore[arg-type]
                                           epsilon, deadline, 1, QUERY, "ipfs://q")]

            sent = self._send("request", error, lambda: client.request_aggregate(
                actors[actor], cohort_id, query_hash=QUERY, query_uri="ipfs://q",
                epsilon=epsilon, deadline=deadline, price=price), apply)
            if sent is not None:
                assert sent.value == len(self.model.debits)

        @rule(data=st.data())
        def contribute(self, data: st.DataObject) -> None:
            debit_id = self._debit(data, lambda d, past: not past and bool(
                self.model.cohorts[d.cohort].members - d.contributors))
            debit = self.model.debits.get(debit_id)
            if debit is not None:  # mostly a member of the debit's cohort
                members = self.model.cohorts[debit.cohort].members
                fresh = sorted(members - debit.contributors) or sorted(members)
                if fresh and data.draw(st.integers(0, 3), label="stray") != 3:
                    actor = data.draw(st.sampled_from(fresh), label="member")
                else:
                    actor = data.draw(ACTOR, label="actor")
            else:
                actor = data.draw(ACTOR, label="actor")
            at = env.dev.now() + tick
            error: Expected | None = None
            if debit is None:
                error = UnknownAggregate, {"debitId": debit_id}
            elif at >= debit.deadline:
                error = ContributionsClosed, {"debitId": debit_id, "deadline": debit.deadline}
            elif actor not in self.model.cohorts[debit.cohort].members:
                error = NotMember, {"cohortId": debit.cohort, "owner": addr[actor]}
            elif actor in debit.contributors:
                error = AlreadyContributed, {"debitId": debit_id, "owner": addr[actor]}

            def apply(at: int) -> list[AggregateEvent]:
                assert debit is not None
                debit.contributors.add(actor)
                return [ContributionRecorded(None, debit_id, addr[actor], BUNDLE)]  # type: ignore[arg-type]

            self._send("contribute", error,
                       lambda: client.contribute(actors[actor], debit_id, BUNDLE), apply)

        def _after_deadline_error(self, debit_id: int, debit: DebitModel | None
                                  ) -> Expected | None:
            if debit is None:
                return UnknownAggregate, {"debitId": debit_id}
            if env.dev.now() + tick < debit.deadline:
                return DeadlineNotPassed, {"debitId": debit_id, "deadline": debit.deadline}
            return None

        def _any_past_deadline(self) -> bool:
            at = env.dev.now() + tick
            return any(at >= d.deadline for d in self.model.debits.values())

        @precondition(_any_past_deadline)
        @rule(data=st.data())
        def claim(self, data: st.DataObject) -> None:
            debit_id = self._debit(data, lambda d, past: self._answerable(d, past)
                                   and d.claimed != d.contributors)
            debit = self.model.debits.get(debit_id)
            stray = data.draw(st.integers(0, 3), label="stray") == 3
            if debit is not None and debit.contributors and not stray:
                unpaid = sorted(debit.contributors - debit.claimed) or sorted(debit.contributors)
                actor = data.draw(st.sampled_from(unpaid), label="owner")
            else:
                actor = data.draw(ACTOR, label="actor")
            error = self._after_deadline_error(debit_id, debit)
            if error is None:
                assert debit is not None
                count, k = len(debit.contributors), self.model.cohorts[debit.cohort].k
                if count < k:
                    error = TooFewContributions, {"debitId": debit_id, "contributions": count,
                                                  "minContributors": k}
                elif actor not in debit.contributors:
                    error = NotContributor, {"debitId": debit_id, "caller": addr[actor]}
                elif actor in debit.claimed:
                    error = AlreadyClaimed, {"debitId": debit_id, "owner": addr[actor]}

            def apply(at: int) -> list[AggregateEvent]:
                assert debit is not None
                count = len(debit.contributors)
                share, remainder = divmod(debit.price, count)
                events: list[AggregateEvent] = []
                if debit.state is OPEN:
                    debit.state = PAYING
                    self.model.credit[debit.buyer] += remainder
                    events.append(AggregatePayoutFixed(None, debit_id, addr[debit.buyer],  # type: ignore[arg-type]
                                                       count, share, remainder))
                debit.claimed.add(actor)
                self.model.credit[actor] += share
                events.append(ContributionClaimed(None, debit_id, addr[actor], share))  # type: ignore[arg-type]
                return events

            self._send("claim", error,
                       lambda: client.claim_contribution(actors[actor], debit_id), apply)

        @precondition(_any_past_deadline)
        @rule(data=st.data(), actor=ACTOR)
        def refund(self, data: st.DataObject, actor: int) -> None:
            debit_id = self._debit(data, lambda d, past: past and d.state is OPEN
                                   and not self._answerable(d, past))
            debit = self.model.debits.get(debit_id)
            error = self._after_deadline_error(debit_id, debit)
            if error is None:
                assert debit is not None
                count, k = len(debit.contributors), self.model.cohorts[debit.cohort].k
                if debit.state is REFUNDED:
                    error = AlreadyRefunded, {"debitId": debit_id}
                elif count >= k:
                    error = EnoughContributions, {"debitId": debit_id, "contributions": count,
                                                  "minContributors": k}

            def apply(at: int) -> list[AggregateEvent]:
                assert debit is not None
                debit.state = REFUNDED
                self.model.cohorts[debit.cohort].spent -= debit.epsilon
                self.model.credit[debit.buyer] += debit.price
                return [AggregateRefunded(None, debit_id, addr[debit.buyer], debit.price,  # type: ignore[arg-type]
                                          debit.epsilon)]

            self._send("refund", error, lambda: client.refund(actors[actor], debit_id), apply)

        @precondition(_any_past_deadline)
        @rule(data=st.data(), by_node=st.sampled_from([True, True, False]))
        def post_round(self, data: st.DataObject, by_node: bool) -> None:
            debit_id = self._debit(data, self._answerable)
            debit = self.model.debits.get(debit_id)
            sender = node if by_node else actors[data.draw(ACTOR, label="actor")]
            error: Expected | None
            if debit is None:
                error = UnknownAggregate, {"debitId": debit_id}
            elif not by_node:
                error = NotCommitteeNode, {"caller": sender.address}
            else:
                error = self._after_deadline_error(debit_id, debit)
                count, k = len(debit.contributors), self.model.cohorts[debit.cohort].k
                if error is None and count < k:
                    error = TooFewContributions, {"debitId": debit_id, "contributions": count,
                                                  "minContributors": k}

            def apply(at: int) -> list[AggregateEvent]:
                return [AggregateRoundPosted(None, debit_id, sender.address, ROUND_PARTIALS,  # type: ignore[arg-type]
                                             BUNDLE)]

            self._send("round", error,
                       lambda: client.post_round(sender, debit_id, ROUND_PARTIALS, BUNDLE), apply)

        @precondition(lambda self: any(self.model.credit))
        @rule(data=st.data())
        def withdraw(self, data: st.DataObject) -> None:
            owed = [i for i, c in enumerate(self.model.credit) if c]
            actor = data.draw(st.sampled_from(owed), label="owed")
            if data.draw(st.integers(0, 4), label="stray") == 4:
                actor = data.draw(ACTOR, label="actor")
            amount = self.model.credit[actor]
            error: Expected | None = (NothingToWithdraw, {}) if amount == 0 else None
            before = eth_balance(env, addr[actor])

            def apply(at: int) -> list[AggregateEvent]:
                self.model.credit[actor] = 0
                self.model.paid_out[actor] += amount
                return [AggregateWithdrawn(None, addr[actor], amount)]  # type: ignore[arg-type]

            sent = self._send("withdraw", error, lambda: client.withdraw(actors[actor]), apply)
            if sent is not None:
                assert sent.value == amount
                assert eth_balance(env, addr[actor]) - before == amount - gas_cost(env, sent)

        @rule(seconds=st.sampled_from([15, 1, 60, 400]))
        def time_passes(self, seconds: int) -> None:
            before = env.dev.now()
            assert env.dev.advance(seconds) == before + seconds

        # ------------------------------------------------------------ invariants

        @invariant()
        def escrow_balances(self) -> None:
            model = self.model
            held = client.contract_balance()
            escrow = sum(d.price - d.settled for d in model.debits.values())
            assert held == sum(model.credit) + escrow
            assert held == sum(model.paid_in) - sum(model.paid_out)
            for actor, credit in enumerate(model.credit):
                assert client.balance_of(addr[actor]) == credit

        @invariant()
        def records_match(self) -> None:
            assert client.aggregate_count() == len(self.model.debits)
            for debit_id, d in self.model.debits.items():
                assert client.aggregate(debit_id) == AggregateDebit(
                    debit_id, d.cohort, addr[d.buyer], d.state, d.price, d.settled,  # type: ignore[arg-type]
                    d.epsilon, d.deadline, 1, len(d.contributors), len(d.claimed))
            for cohort_id, c in self.model.cohorts.items():
                on_chain = client.cohort(cohort_id)
                assert (on_chain.epsilon_spent, on_chain.members) == (c.spent, len(c.members))
                assert on_chain.epsilon_spent <= on_chain.epsilon_cap

    return AggregateMachine


@pytest.fixture
def tick(env: ChainEnv) -> Iterator[int]:
    """A deterministic clock (as in tests/chain/test_invariants.py): eth-tester mines each
    block one second after the previous one once the chain is ahead of the wall clock;
    anvil's clock stands still between time-travel jumps with a 0 interval."""
    if env.dev.is_embedded:
        env.dev.advance(10**7)
        yield 1
        return
    env.dev._rpc("anvil_setBlockTimestampInterval", [0])
    try:
        yield 0
    finally:
        env.dev._rpc("anvil_removeBlockTimestampInterval", [])


def test_aggregateMarket_matchesModel_underRandomActions(env: ChainEnv, tick: int) -> None:
    a = env.actors
    actors = [a.owner, a.other_buyer, a.stranger, a.buyer]
    client = AggregateClient.deploy(env.w3, a.deployer, env.market.address).value
    for k, cap in COHORTS:
        client.create_cohort(a.deployer, schema_hash=keccak(b"schema"), schema_uri="ipfs://s",
                             epsilon_cap=cap, min_contributors=k)
    max_examples, steps = BUDGETS[env.backend]
    run_state_machine_as_test(
        _state_machine(env, client, actors, tick),
        settings=settings(max_examples=max_examples, stateful_step_count=steps, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
