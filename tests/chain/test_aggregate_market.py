"""AggregateMarket (issue 14, DESIGN §10): cohorts, aggregate debits paid into escrow,
one contribution per member before the deadline, committee rounds after it, equal pull
payouts or a refund that returns the epsilon. Every custom error is triggered and every
state change's event checked, on the embedded chain and on anvil."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import solcx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract

from marketplace.chain.aggregate import AggregateClient
from marketplace.chain.aggregate_types import (
    ROUND_OPENINGS,
    ROUND_PARTIALS,
    ROUND_SHARINGS,
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
    Cohort,
    CohortCreated,
    CohortJoined,
    CohortLeft,
    ContributionClaimed,
    ContributionRecorded,
    ContributionsClosed,
    DeadlineNotPassed,
    EnoughContributions,
    EpsilonCapExceeded,
    InvalidDeadline,
    InvalidRound,
    NotAMarket,
    NotContributor,
    NotMember,
    TooFewContributions,
    UnknownAggregate,
    UnknownCohort,
    ZeroEpsilon,
    ZeroEpsilonCap,
    ZeroMinContributors,
    ZeroPayment,
    epsilon_micros,
)
from marketplace.chain.artifacts import load_artifact
from marketplace.chain.errors import (
    FailedCall,
    MalformedCid,
    NoCommittee,
    NotCommitteeNode,
    NothingToWithdraw,
    PaymentTooLarge,
    ReentrancyGuardReentrantCall,
)
from marketplace.chain.events import ForeignLog
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain
from marketplace.chain.types import Sent
from scripts.compile_contracts import WRAPPER
from tests.chain.conftest import (
    ChainEnv,
    eth_balance,
    gas_cost,
    make_committee,
    receipt_of,
    send_call,
)
from tests.chain.test_committee_epochs import _open_reshare, accounts, result_for, roster, sigs

SCHEMA = keccak(b"schema: heart rate v1")
SCHEMA_URI = "ipfs://bafkreischema"
QUERY = keccak(b"query: histogram of resting heart rate")
QUERY_URI = "ipfs://bafkreiquery"
HOUR = 3_600
PRICE = 10**15 + 1  # not a multiple of 3: a remainder for the buyer
EPS = 500_000  # 0.5
CAP = 2_000_000  # 2.0


def cid(tag: bytes) -> bytes:
    """A binary CIDv1 (raw, sha2-256) of `tag`."""
    return bytes([0x01, 0x55, 0x12, 0x20]) + keccak(tag)


@dataclass
class Agg:
    env: ChainEnv
    client: AggregateClient
    admin: LocalAccount
    buyer: LocalAccount
    owners: list[LocalAccount]
    nodes: list[LocalAccount]

    def events(self, sent: Sent[Any]) -> list[AggregateEvent]:
        """Every log of the transaction, decoded (a foreign log fails the test)."""
        events = [self.client.decoder.decode(log) for log in receipt_of(self.env, sent)["logs"]]
        for event in events:
            assert (event.ref.tx_hash, event.ref.block_number) == (sent.tx_hash,
                                                                   sent.block_number)
        return events

    def cohort(self, *, k: int = 2, cap: int = CAP, join: int = 3) -> int:
        cohort_id = self.client.create_cohort(
            self.admin, schema_hash=SCHEMA, schema_uri=SCHEMA_URI, epsilon_cap=cap,
            min_contributors=k).value
        for owner in self.owners[:join]:
            self.client.join_cohort(owner, cohort_id)
        return cohort_id

    def request(self, cohort_id: int, *, epsilon: int = EPS, price: int = PRICE,
                deadline: int | None = None, buyer: LocalAccount | None = None) -> int:
        return self.client.request_aggregate(
            buyer or self.buyer, cohort_id, query_hash=QUERY, query_uri=QUERY_URI,
            epsilon=epsilon, deadline=deadline or self.env.dev.now() + HOUR, price=price).value

    def past_deadline(self, debit_id: int) -> None:
        deadline = self.client.aggregate(debit_id).deadline
        self.env.dev.advance(max(1, deadline - self.env.dev.now()))
        assert self.env.dev.now() >= deadline

    def assert_invariant(self, debit_ids: list[int], accounts: list[str]) -> None:
        """held == credited + unsettled escrow."""
        credited = sum(self.client.balance_of(a) for a in set(accounts))
        escrow = 0
        for debit_id in debit_ids:
            debit = self.client.aggregate(debit_id)
            escrow += debit.price - debit.settled
        assert self.client.contract_balance() == credited + escrow


@pytest.fixture
def agg(env: ChainEnv) -> Agg:
    client = AggregateClient.deploy(env.w3, env.actors.deployer, env.market.address).value
    a = env.actors
    return Agg(env, client, a.deployer, a.buyer, [a.owner, a.other_buyer, a.stranger],
               a.nodes)


# ---------------------------------------------------------------- deployment


def test_deploy_readsCommitteeFromItsMarket(agg: Agg) -> None:
    assert agg.client.market_address() == agg.env.market.address
    assert (agg.client.cohort_count(), agg.client.aggregate_count()) == (0, 0)


def test_deploy_revertsWhen_marketHasNoCode(env: ChainEnv) -> None:
    with pytest.raises(NotAMarket) as e:
        AggregateClient.deploy(env.w3, env.actors.deployer, env.actors.stranger.address)
    assert e.value.fields == {"market": env.actors.stranger.address}


def test_decoder_refusesLogsOfAnotherContract(agg: Agg) -> None:
    sent = agg.env.market.create_listing(agg.env.actors.owner, price_per_period=1,
                                         period_seconds=1, auto_approve=True)
    (log,) = receipt_of(agg.env, sent)["logs"]
    with pytest.raises(ForeignLog):
        agg.client.decoder.decode(log)


# ---------------------------------------------------------------- cohorts


def test_createCohort_recordsAndEmits(agg: Agg) -> None:
    sent = agg.client.create_cohort(agg.admin, schema_hash=SCHEMA, schema_uri=SCHEMA_URI,
                                    epsilon_cap=CAP, min_contributors=7)
    assert sent.value == 1 and agg.client.cohort_count() == 1
    (event,) = agg.events(sent)
    assert event == CohortCreated(event.ref, 1, agg.admin.address, SCHEMA, SCHEMA_URI, CAP, 7)  # type: ignore[arg-type]
    assert agg.client.cohort(1) == Cohort(1, agg.admin.address, SCHEMA, CAP, 0, 7, 0)  # type: ignore[arg-type]
    assert agg.client.cohort(1).epsilon_left == CAP


def test_createCohort_revertsWhen_zeroCapOrZeroK(agg: Agg) -> None:
    with pytest.raises(ZeroEpsilonCap):
        agg.client.create_cohort(agg.admin, schema_hash=SCHEMA, schema_uri="", epsilon_cap=0,
                                 min_contributors=1)
    with pytest.raises(ZeroMinContributors):
        agg.client.create_cohort(agg.admin, schema_hash=SCHEMA, schema_uri="", epsilon_cap=1,
                                 min_contributors=0)
    assert agg.client.cohort_count() == 0


def test_joinAndLeave_countMembersAndEmit(agg: Agg) -> None:
    cohort_id = agg.cohort(join=0)
    first, second = agg.owners[:2]
    joined = agg.client.join_cohort(first, cohort_id)
    assert agg.events(joined) == [CohortJoined(agg.events(joined)[0].ref, cohort_id,  # type: ignore[arg-type]
                                               first.address, 1)]
    agg.client.join_cohort(second, cohort_id)
    assert agg.client.cohort(cohort_id).members == 2
    assert agg.client.is_member(cohort_id, first.address)
    left = agg.client.leave_cohort(first, cohort_id)
    (event,) = agg.events(left)
    assert event == CohortLeft(event.ref, cohort_id, first.address, 1)  # type: ignore[arg-type]
    assert not agg.client.is_member(cohort_id, first.address)
    assert agg.client.is_member(cohort_id, second.address)
    agg.client.join_cohort(first, cohort_id)  # rejoining is allowed
    assert agg.client.cohort(cohort_id).members == 2


def test_joinCohort_revertsWhen_alreadyMemberOrUnknownCohort(agg: Agg) -> None:
    cohort_id = agg.cohort(join=1)
    owner = agg.owners[0]
    with pytest.raises(AlreadyMember) as e:
        agg.client.join_cohort(owner, cohort_id)
    assert e.value.fields == {"cohortId": cohort_id, "owner": owner.address}
    for unknown in (0, cohort_id + 1):
        with pytest.raises(UnknownCohort) as e2:
            agg.client.join_cohort(owner, unknown)
        assert e2.value.fields == {"cohortId": unknown}
    with pytest.raises(UnknownCohort):
        agg.client.leave_cohort(owner, cohort_id + 1)
    with pytest.raises(UnknownCohort):
        agg.client.cohort(cohort_id + 1)
    with pytest.raises(UnknownCohort):
        agg.client.is_member(cohort_id + 1, owner.address)


def test_leaveCohort_revertsWhen_notMember(agg: Agg) -> None:
    cohort_id = agg.cohort(join=1)
    stranger = agg.owners[1]
    with pytest.raises(NotMember) as e:
        agg.client.leave_cohort(stranger, cohort_id)
    assert e.value.fields == {"cohortId": cohort_id, "owner": stranger.address}
    agg.client.leave_cohort(agg.owners[0], cohort_id)
    with pytest.raises(NotMember):
        agg.client.leave_cohort(agg.owners[0], cohort_id)


# ---------------------------------------------------------------- requests


def test_requestAggregate_escrowsPriceAndSpendsEpsilon(agg: Agg) -> None:
    cohort_id = agg.cohort()
    deadline = agg.env.dev.now() + HOUR
    sent = agg.client.request_aggregate(agg.buyer, cohort_id, query_hash=QUERY,
                                        query_uri=QUERY_URI, epsilon=EPS, deadline=deadline,
                                        price=PRICE)
    assert sent.value == 1 and agg.client.aggregate_count() == 1
    (event,) = agg.events(sent)
    assert event == AggregateRequested(event.ref, 1, cohort_id, agg.buyer.address, PRICE,  # type: ignore[arg-type]
                                       EPS, deadline, 1, QUERY, QUERY_URI)
    assert agg.client.aggregate(1) == AggregateDebit(
        1, cohort_id, agg.buyer.address, AggregateState.OPEN, PRICE, 0, EPS, deadline, 1,  # type: ignore[arg-type]
        0, 0)
    assert agg.client.cohort(cohort_id).epsilon_spent == EPS
    assert agg.client.contract_balance() == PRICE
    assert agg.client.aggregate(1).is_open_at(deadline - 1)
    assert not agg.client.aggregate(1).is_open_at(deadline)


def test_requestAggregate_spendsUpToTheCapExactly(agg: Agg) -> None:
    cohort_id = agg.cohort(cap=3 * EPS)
    agg.request(cohort_id)
    agg.request(cohort_id, epsilon=2 * EPS)  # spent == cap: allowed
    with pytest.raises(EpsilonCapExceeded) as e:
        agg.request(cohort_id, epsilon=1)
    assert e.value.fields == {"cohortId": cohort_id, "spentMicros": 3 * EPS,
                              "requestedMicros": 1, "capMicros": 3 * EPS}
    assert agg.client.cohort(cohort_id).epsilon_spent == 3 * EPS


def test_requestAggregate_revertsWhen_epsilonOverflowsTheCap(agg: Agg) -> None:
    cohort_id = agg.cohort(cap=2**64 - 1)
    agg.request(cohort_id, epsilon=2**64 - 2)
    with pytest.raises(EpsilonCapExceeded):  # spent + epsilon > 2^64: no wrap-around
        agg.request(cohort_id, epsilon=2**64 - 1)


def test_requestAggregate_revertsWhen_badInput(agg: Agg) -> None:
    cohort_id = agg.cohort()
    now = agg.env.dev.now()
    with pytest.raises(UnknownCohort) as e:
        agg.request(cohort_id + 1)
    assert e.value.fields == {"cohortId": cohort_id + 1}
    with pytest.raises(ZeroPayment):
        agg.request(cohort_id, price=0)
    with pytest.raises(ZeroEpsilon):
        agg.request(cohort_id, epsilon=0)
    for deadline in (now - 1, 2**40):  # in the past; beyond 40 bits
        with pytest.raises(InvalidDeadline) as e2:
            agg.request(cohort_id, deadline=deadline)
        assert e2.value.fields == {"deadline": deadline}
    assert agg.client.aggregate_count() == 0
    assert agg.client.cohort(cohort_id).epsilon_spent == 0


def test_requestAggregate_revertsWhen_paymentTooLarge(env: ChainEnv, agg: Agg) -> None:
    """A price over 96 bits is more ether than exists: the buyer is given it (anvil's
    setBalance; on eth-tester a chain of its own whose genesis funds the buyer)."""
    if env.backend == "anvil":
        env.dev._rpc("anvil_setBalance", [agg.buyer.address, hex(2**97)])
        client, rich, cohort_id = agg.client, agg.buyer, agg.cohort()
    else:
        client, rich, cohort_id = _rich_embedded_chain()
    with pytest.raises(PaymentTooLarge) as e:
        client.request_aggregate(rich, cohort_id, query_hash=QUERY, query_uri="",
                                 epsilon=EPS, deadline=DevChain(client.w3).now() + HOUR,
                                 price=2**96)
    assert e.value.fields == {"amount": 2**96}
    assert client.request_aggregate(  # the largest price that fits
        rich, cohort_id, query_hash=QUERY, query_uri="", epsilon=EPS,
        deadline=DevChain(client.w3).now() + HOUR, price=2**96 - 1).value == 1


def _rich_embedded_chain() -> tuple[AggregateClient, LocalAccount, int]:
    """A fresh eth-tester chain whose genesis accounts hold 2^100 wei each, with a market
    (a dealt committee), an AggregateMarket and a cohort; returns a rich account."""
    from eth_tester import EthereumTester, PyEVMBackend  # noqa: PLC0415 - eth-tester only

    genesis = PyEVMBackend.generate_genesis_state(overrides={"balance": 2**100}, num_accounts=4)
    backend = PyEVMBackend(genesis_state=genesis)
    w3 = Web3(EthereumTesterProvider(EthereumTester(backend)))
    rich, *nodes = [Account.from_key(k.to_bytes()) for k in backend.account_keys]
    market = MarketClient.deploy_dealt(w3, rich, make_committee(nodes), nodes).value
    client = AggregateClient.deploy(w3, rich, market.address).value
    cohort_id = client.create_cohort(rich, schema_hash=SCHEMA, schema_uri="", epsilon_cap=CAP,
                                     min_contributors=1).value
    return client, rich, cohort_id


def test_requestAggregate_revertsWhen_marketHasNoCommitteeYet(env: ChainEnv, agg: Agg) -> None:
    nodes = accounts(env, 2)
    pending = MarketClient.deploy(env.w3, env.actors.deployer, roster(nodes, 2)).value
    client = AggregateClient.deploy(env.w3, env.actors.deployer, pending.address).value
    cohort_id = client.create_cohort(agg.admin, schema_hash=SCHEMA, schema_uri="",
                                     epsilon_cap=CAP, min_contributors=1).value
    with pytest.raises(NoCommittee):
        client.request_aggregate(agg.buyer, cohort_id, query_hash=QUERY, query_uri="",
                                 epsilon=EPS, deadline=env.dev.now() + HOUR, price=1)


# ---------------------------------------------------------------- contributions


def test_contribute_recordsOnceAndEmitsTheCid(agg: Agg) -> None:
    cohort_id = agg.cohort()
    debit_id = agg.request(cohort_id)
    owner = agg.owners[0]
    assert agg.client.contribution_of(debit_id, owner.address) == (False, False)
    sent = agg.client.contribute(owner, debit_id, cid(b"bundle 0"))
    (event,) = agg.events(sent)
    assert event == ContributionRecorded(event.ref, debit_id, owner.address, cid(b"bundle 0"))  # type: ignore[arg-type]
    assert agg.client.contribution_of(debit_id, owner.address) == (True, False)
    assert agg.client.aggregate(debit_id).contributions == 1
    with pytest.raises(AlreadyContributed) as e:
        agg.client.contribute(owner, debit_id, cid(b"bundle 0 again"))
    assert e.value.fields == {"debitId": debit_id, "owner": owner.address}
    second = agg.client.contribute(agg.owners[1], debit_id, cid(b"bundle 1"))
    assert agg.client.aggregate(debit_id).contributions == 2
    found = agg.client.contributions(debit_id, sent.block_number)
    assert [(e.owner, e.bundle_cid) for e in found] == [
        (owner.address, cid(b"bundle 0")), (agg.owners[1].address, cid(b"bundle 1"))]
    assert found[1].ref.tx_hash == second.tx_hash


def test_contribute_gasWithinBudget(agg: Agg) -> None:
    """DESIGN §8: an aggregate contribution <= 70k gas, the first of a bitmap word (a
    zero-to-non-zero write) and a later one."""
    debit_id = agg.request(agg.cohort())
    first = agg.client.contribute(agg.owners[0], debit_id, cid(b"a")).gas_used
    later = agg.client.contribute(agg.owners[1], debit_id, cid(b"b")).gas_used
    assert later < first <= 70_000
    assert first - later > 15_000  # the later one writes a warm non-zero slot


def test_contribute_revertsWhen_notAMemberNow(agg: Agg) -> None:
    cohort_id = agg.cohort(join=2)
    debit_id = agg.request(cohort_id)
    outsider, leaver = agg.owners[2], agg.owners[1]
    with pytest.raises(NotMember) as e:
        agg.client.contribute(outsider, debit_id, cid(b"x"))
    assert e.value.fields == {"cohortId": cohort_id, "owner": outsider.address}
    agg.client.leave_cohort(leaver, cohort_id)
    with pytest.raises(NotMember):
        agg.client.contribute(leaver, debit_id, cid(b"x"))
    agg.client.join_cohort(outsider, cohort_id)  # joined after the request: a member now
    agg.client.contribute(outsider, debit_id, cid(b"late joiner"))
    assert agg.client.aggregate(debit_id).contributions == 1


def test_contribute_leaveAndRejoinCannotContributeTwice(agg: Agg) -> None:
    """The contribution bit sits at the owner's permanent position in the cohort."""
    cohort_id = agg.cohort()
    debit_id = agg.request(cohort_id)
    owner = agg.owners[0]
    agg.client.contribute(owner, debit_id, cid(b"once"))
    agg.client.leave_cohort(owner, cohort_id)
    agg.client.join_cohort(owner, cohort_id)
    with pytest.raises(AlreadyContributed):
        agg.client.contribute(owner, debit_id, cid(b"twice"))
    assert agg.client.aggregate(debit_id).contributions == 1


def test_contribute_revertsWhen_deadlinePassedOrUnknownDebit(agg: Agg) -> None:
    debit_id = agg.request(agg.cohort())
    deadline = agg.client.aggregate(debit_id).deadline
    agg.past_deadline(debit_id)
    with pytest.raises(ContributionsClosed) as e:
        agg.client.contribute(agg.owners[0], debit_id, cid(b"late"))
    assert e.value.fields == {"debitId": debit_id, "deadline": deadline}
    for unknown in (0, debit_id + 1):
        with pytest.raises(UnknownAggregate) as e2:
            agg.client.contribute(agg.owners[0], unknown, cid(b"x"))
        assert e2.value.fields == {"debitId": unknown}
    with pytest.raises(UnknownAggregate):
        agg.client.aggregate(debit_id + 1)
    with pytest.raises(UnknownAggregate):
        agg.client.contribution_of(debit_id + 1, agg.owners[0].address)


@pytest.mark.parametrize("bad", [b"", b"\x00" + cid(b"v0")[1:], b"\x01" * 129])
def test_contribute_revertsWhen_cidMalformed(agg: Agg, bad: bytes) -> None:
    debit_id = agg.request(agg.cohort())
    with pytest.raises(MalformedCid) as e:
        agg.client.contribute(agg.owners[0], debit_id, bad)
    assert e.value.fields == {"length": len(bad)}
    agg.client.contribute(agg.owners[0], debit_id, b"\x01" * 128)  # the longest accepted


def test_contribute_bitmapAcrossWords(agg: Agg) -> None:
    """129 members: positions 128 and 129 sit in different bitmap words, and position
    129's bits do not alias position 1's."""
    cohort_id = agg.cohort(k=3, join=1)
    members = _join_many(agg, cohort_id, 128)
    assert agg.client.cohort(cohort_id).members == 129
    debit_id = agg.request(cohort_id)
    first, at_128, at_129 = agg.owners[0], members[126], members[127]
    for owner in (at_129, at_128):
        agg.client.contribute(owner, debit_id, cid(owner.address.encode()))
    assert agg.client.contribution_of(debit_id, first.address) == (False, False)
    assert agg.client.contribution_of(debit_id, members[0].address) == (False, False)
    agg.client.contribute(first, debit_id, cid(b"first"))
    agg.past_deadline(debit_id)
    agg.client.claim_contribution(at_129, debit_id)
    assert agg.client.contribution_of(debit_id, at_129.address) == (True, True)
    assert agg.client.contribution_of(debit_id, first.address) == (True, False)
    assert agg.client.contribution_of(debit_id, at_128.address) == (True, False)
    with pytest.raises(NotContributor):
        agg.client.claim_contribution(members[0], debit_id)


def _join_many(agg: Agg, cohort_id: int, count: int) -> list[LocalAccount]:
    """`count` new members, joined in order (sent without gas estimates or receipt waits:
    this is set-up, asserted afterwards by the member count)."""
    w3 = agg.env.w3
    members = [Account.create() for _ in range(count)]
    funder = w3.eth.accounts[0]
    for member in members:
        w3.eth.send_transaction({"from": funder, "to": member.address, "value": 10**17})
    fees = {"maxFeePerGas": 2 * int(w3.eth.get_block("latest")["baseFeePerGas"]) + 10**9,
            "maxPriorityFeePerGas": 10**9, "chainId": w3.eth.chain_id, "nonce": 0,
            "gas": 100_000}
    last = b""
    for member in members:
        tx = agg.client.contract.functions.joinCohort(cohort_id).build_transaction(
            {"from": member.address, **fees})  # type: ignore[typeddict-item]
        last = w3.eth.send_raw_transaction(member.sign_transaction(tx).raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(last)["status"] == 1
    return members


# ---------------------------------------------------------------- committee rounds


def _answerable(agg: Agg, *, k: int = 2, contributors: int = 2) -> int:
    debit_id = agg.request(agg.cohort(k=k))
    for i, owner in enumerate(agg.owners[:contributors]):
        agg.client.contribute(owner, debit_id, cid(b"bundle %d" % i))
    agg.past_deadline(debit_id)
    return debit_id


def test_postAggregateRound_byNodesAfterDeadline_emitsOnly(agg: Agg) -> None:
    debit_id = _answerable(agg)
    posted = []
    for round_number in (ROUND_SHARINGS, ROUND_OPENINGS, ROUND_PARTIALS):
        for node in agg.nodes:
            sent = agg.client.post_round(node, debit_id, round_number, cid(b"r%d" % round_number))
            (event,) = agg.events(sent)
            assert event == AggregateRoundPosted(event.ref, debit_id, node.address,  # type: ignore[arg-type]
                                                 round_number, cid(b"r%d" % round_number))
            posted.append(event)
    assert agg.client.rounds(debit_id, posted[0].ref.block_number) == posted
    assert agg.client.contract_balance() == PRICE  # nothing moved


def test_postAggregateRound_revertsWhen_notANodeOrBadRound(agg: Agg) -> None:
    debit_id = _answerable(agg)
    stranger = agg.env.actors.stranger
    with pytest.raises(NotCommitteeNode) as e:
        agg.client.post_round(stranger, debit_id, ROUND_SHARINGS, cid(b"r"))
    assert e.value.fields == {"caller": stranger.address}
    for bad in (0, 4):
        with pytest.raises(InvalidRound) as e2:
            agg.client.post_round(agg.nodes[0], debit_id, bad, cid(b"r"))
        assert e2.value.fields == {"round": bad}
    with pytest.raises(MalformedCid):
        agg.client.post_round(agg.nodes[0], debit_id, ROUND_SHARINGS, b"")
    with pytest.raises(UnknownAggregate):
        agg.client.post_round(agg.nodes[0], debit_id + 1, ROUND_SHARINGS, cid(b"r"))


def test_postAggregateRound_revertsWhen_beforeDeadlineOrTooFew(agg: Agg) -> None:
    early = agg.request(agg.cohort())
    deadline = agg.client.aggregate(early).deadline
    with pytest.raises(DeadlineNotPassed) as e:
        agg.client.post_round(agg.nodes[0], early, ROUND_SHARINGS, cid(b"r"))
    assert e.value.fields == {"debitId": early, "deadline": deadline}
    few = _answerable(agg, k=3, contributors=2)
    with pytest.raises(TooFewContributions) as e2:
        agg.client.post_round(agg.nodes[0], few, ROUND_SHARINGS, cid(b"r"))
    assert e2.value.fields == {"debitId": few, "contributions": 2, "minContributors": 3}


def test_postAggregateRound_usesTheCommitteeEpochOfTheRequest(env: ChainEnv, agg: Agg) -> None:
    """Owners sealed their shares to the nodes of the epoch current at the request: those
    nodes post its rounds after a reshare, and the new epoch's newcomers do not."""
    cohort_id = agg.cohort()
    before = agg.request(cohort_id, deadline=env.dev.now() + 5 * HOUR)
    market, old = env.market, env.actors.nodes
    newcomers = accounts(env, 2)
    ceremony = _open_reshare(env, market, newcomers, 2, old[:2])
    result = result_for(ceremony, 2, 2, qualified=0b011)
    market.finalize_committee(env.actors.stranger, ceremony, result,
                              sigs(market, newcomers, result), sigs(market, old[:2], result))
    assert market.current_epoch() == 2
    after = agg.request(cohort_id, deadline=env.dev.now() + 5 * HOUR)
    assert (agg.client.aggregate(before).epoch, agg.client.aggregate(after).epoch) == (1, 2)
    for debit_id in (before, after):
        for owner in agg.owners[:2]:
            agg.client.contribute(owner, debit_id, cid(b"b"))
    agg.past_deadline(after)
    agg.client.post_round(old[2], before, ROUND_SHARINGS, cid(b"r"))
    with pytest.raises(NotCommitteeNode):
        agg.client.post_round(newcomers[0], before, ROUND_SHARINGS, cid(b"r"))
    agg.client.post_round(newcomers[0], after, ROUND_SHARINGS, cid(b"r"))
    with pytest.raises(NotCommitteeNode):
        agg.client.post_round(old[2], after, ROUND_SHARINGS, cid(b"r"))


# ---------------------------------------------------------------- payouts


def test_claimContribution_paysEqualSharesAndTheRemainderToTheBuyer(agg: Agg) -> None:
    debit_id = _answerable(agg, k=2, contributors=3)
    share, remainder = divmod(PRICE, 3)
    assert remainder != 0
    first = agg.client.claim_contribution(agg.owners[0], debit_id)
    fixed, claimed = agg.events(first)
    assert fixed == AggregatePayoutFixed(fixed.ref, debit_id, agg.buyer.address, 3, share,  # type: ignore[arg-type]
                                         remainder)
    assert claimed == ContributionClaimed(claimed.ref, debit_id, agg.owners[0].address, share)  # type: ignore[arg-type]
    assert first.value == share
    assert agg.client.balance_of(agg.buyer.address) == remainder
    debit = agg.client.aggregate(debit_id)
    assert (debit.state, debit.claims, debit.settled) == (AggregateState.PAYING, 1,
                                                          share + remainder)
    second = agg.client.claim_contribution(agg.owners[1], debit_id)
    assert [type(e) for e in agg.events(second)] == [ContributionClaimed]  # remainder once
    agg.client.claim_contribution(agg.owners[2], debit_id)
    assert agg.client.balance_of(agg.buyer.address) == remainder
    for owner in agg.owners:
        assert agg.client.balance_of(owner.address) == share
        assert agg.client.contribution_of(debit_id, owner.address) == (True, True)
    debit = agg.client.aggregate(debit_id)
    assert (debit.settled, debit.claims) == (PRICE, 3)
    agg.assert_invariant([debit_id], [agg.buyer.address, *(o.address for o in agg.owners)])


def test_claimContribution_byOwnerWhoLeftAfterContributing(agg: Agg) -> None:
    debit_id = agg.request(agg.cohort(k=1))
    owner = agg.owners[0]
    agg.client.contribute(owner, debit_id, cid(b"b"))
    agg.client.leave_cohort(owner, agg.client.aggregate(debit_id).cohort_id)
    agg.past_deadline(debit_id)
    assert agg.client.claim_contribution(owner, debit_id).value == PRICE


def test_claimContribution_revertsWhen_notAllowed(agg: Agg) -> None:
    early = agg.request(agg.cohort())
    agg.client.contribute(agg.owners[0], early, cid(b"b"))
    with pytest.raises(DeadlineNotPassed):
        agg.client.claim_contribution(agg.owners[0], early)
    debit_id = _answerable(agg, k=2, contributors=2)
    member, stranger = agg.owners[2], agg.env.actors.deployer  # never joined
    for caller in (member, stranger):
        with pytest.raises(NotContributor) as e:
            agg.client.claim_contribution(caller, debit_id)
        assert e.value.fields == {"debitId": debit_id, "caller": caller.address}
    agg.client.claim_contribution(agg.owners[0], debit_id)
    with pytest.raises(AlreadyClaimed) as e2:
        agg.client.claim_contribution(agg.owners[0], debit_id)
    assert e2.value.fields == {"debitId": debit_id, "owner": agg.owners[0].address}
    few = _answerable(agg, k=3, contributors=2)
    with pytest.raises(TooFewContributions):
        agg.client.claim_contribution(agg.owners[0], few)
    with pytest.raises(UnknownAggregate):
        agg.client.claim_contribution(agg.owners[0], few + 1)


def test_refundAggregate_returnsPriceAndEpsilon(agg: Agg) -> None:
    cohort_id = agg.cohort(k=3)
    debit_id = agg.request(cohort_id)
    agg.client.contribute(agg.owners[0], debit_id, cid(b"alone"))
    assert agg.client.cohort(cohort_id).epsilon_spent == EPS
    with pytest.raises(DeadlineNotPassed):
        agg.client.refund(agg.env.actors.stranger, debit_id)
    agg.past_deadline(debit_id)
    sent = agg.client.refund(agg.env.actors.stranger, debit_id)  # anyone may trigger it
    (event,) = agg.events(sent)
    assert event == AggregateRefunded(event.ref, debit_id, agg.buyer.address, PRICE, EPS)  # type: ignore[arg-type]
    assert sent.value == PRICE
    assert agg.client.cohort(cohort_id).epsilon_spent == 0
    assert agg.client.balance_of(agg.buyer.address) == PRICE
    debit = agg.client.aggregate(debit_id)
    assert (debit.state, debit.settled) == (AggregateState.REFUNDED, PRICE)
    with pytest.raises(AlreadyRefunded) as e:
        agg.client.refund(agg.buyer, debit_id)
    assert e.value.fields == {"debitId": debit_id}
    with pytest.raises(TooFewContributions):  # fewer than k: no payout either
        agg.client.claim_contribution(agg.owners[0], debit_id)
    agg.assert_invariant([debit_id], [agg.buyer.address, agg.owners[0].address])


def test_refundAggregate_withNoContributionAtAll(agg: Agg) -> None:
    debit_id = agg.request(agg.cohort(k=1))
    agg.past_deadline(debit_id)
    assert agg.client.refund(agg.buyer, debit_id).value == PRICE


def test_refundAggregate_revertsWhen_enoughContributed(agg: Agg) -> None:
    debit_id = _answerable(agg, k=2, contributors=2)
    with pytest.raises(EnoughContributions) as e:
        agg.client.refund(agg.buyer, debit_id)
    assert e.value.fields == {"debitId": debit_id, "contributions": 2, "minContributors": 2}
    with pytest.raises(UnknownAggregate):
        agg.client.refund(agg.buyer, debit_id + 1)


def test_withdraw_paysCreditedBalanceOnce(agg: Agg) -> None:
    debit_id = _answerable(agg, k=1, contributors=1)
    owner = agg.owners[0]
    agg.client.claim_contribution(owner, debit_id)
    before = eth_balance(agg.env, owner.address)
    sent = agg.client.withdraw(owner)
    (event,) = agg.events(sent)
    assert event == AggregateWithdrawn(event.ref, owner.address, PRICE)  # type: ignore[arg-type]
    assert eth_balance(agg.env, owner.address) == before + PRICE - gas_cost(agg.env, sent)
    assert agg.client.balance_of(owner.address) == 0
    assert agg.client.contract_balance() == 0
    with pytest.raises(NothingToWithdraw):
        agg.client.withdraw(owner)


# ---------------------------------------------------------------- re-entrancy

ATTACKER = """
// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// A buyer contract whose receive hook re-enters `withdraw` (mode 0: lets the failure
/// bubble; 1: swallows it and keeps the payment; 2: refuses the payment).
contract AggregateAttacker {
    address public immutable target;
    uint8 public mode;
    uint256 public reentries;
    uint256 public reentriesSucceeded;

    constructor(address target_) { target = target_; }

    function setMode(uint8 mode_) external { mode = mode_; }

    function run(bytes calldata data) external payable {
        (bool ok, bytes memory out) = target.call{value: msg.value}(data);
        if (!ok) assembly { revert(add(out, 32), mload(out)) }
    }

    receive() external payable {
        if (msg.sender != target) return;
        if (mode == 2) revert();
        ++reentries;
        (bool ok, bytes memory out) = target.call(abi.encodeWithSignature("withdraw()"));
        if (ok) ++reentriesSucceeded;
        if (!ok && mode == 0) assembly { revert(add(out, 32), mload(out)) }
    }
}
"""


@pytest.fixture(scope="module")
def attacker_compiled() -> tuple[list[dict[str, Any]], str]:
    output = solcx.compile_standard(
        {"language": "Solidity", "sources": {"Attacker.sol": {"content": ATTACKER}},
         "settings": {"evmVersion": "cancun", "optimizer": {"enabled": True, "runs": 200},
                      "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}}},
        solc_binary=WRAPPER, allow_empty=False,
    )
    compiled = output["contracts"]["Attacker.sol"]["AggregateAttacker"]
    return compiled["abi"], "0x" + compiled["evm"]["bytecode"]["object"]


def _attacker(agg: Agg, compiled: tuple[list[dict[str, Any]], str]) -> Contract:
    """An attacker credited PRICE by a refund, next to another buyer's escrow."""
    env, (abi, bytecode) = agg.env, compiled
    factory = env.w3.eth.contract(abi=abi, bytecode=bytecode)
    address = send_call(env, env.actors.deployer, factory.constructor(agg.client.address),
                        abi=abi)["contractAddress"]
    assert address is not None
    attacker = env.w3.eth.contract(address=address, abi=abi)
    cohort_id = agg.cohort(k=3)
    agg.request(cohort_id, price=5 * PRICE, buyer=agg.env.actors.other_buyer)  # a victim
    data = agg.client.contract.encode_abi("requestAggregate", [
        cohort_id, QUERY, QUERY_URI, EPS, env.dev.now() + HOUR])
    send_call(env, env.actors.stranger, attacker.functions.run(data), value=PRICE, abi=abi)
    own = agg.client.aggregate_count()
    assert agg.client.aggregate(own).buyer == attacker.address
    agg.past_deadline(own)
    agg.client.refund(env.actors.stranger, own)
    assert agg.client.balance_of(attacker.address) == PRICE
    assert agg.client.contract_balance() == 6 * PRICE
    return attacker


def _withdraw_via(agg: Agg, attacker: Contract, mode: int) -> None:
    env, abi = agg.env, [*attacker.abi, *agg.client.artifact.abi]
    send_call(env, env.actors.stranger, attacker.functions.setMode(mode), abi=abi)
    data = agg.client.contract.encode_abi("withdraw", [])
    send_call(env, env.actors.stranger, attacker.functions.run(data), abi=abi)


def test_withdraw_reentryBubbles_revertsWholeWithdrawal(
    agg: Agg, attacker_compiled: tuple[list[dict[str, Any]], str]
) -> None:
    attacker = _attacker(agg, attacker_compiled)
    with pytest.raises(ReentrancyGuardReentrantCall):
        _withdraw_via(agg, attacker, 0)
    assert agg.client.balance_of(attacker.address) == PRICE
    assert agg.client.contract_balance() == 6 * PRICE


def test_withdraw_reentrySwallowed_paysOnlyOnce(
    agg: Agg, attacker_compiled: tuple[list[dict[str, Any]], str]
) -> None:
    attacker = _attacker(agg, attacker_compiled)
    _withdraw_via(agg, attacker, 1)
    assert attacker.functions.reentries().call() == 1
    assert attacker.functions.reentriesSucceeded().call() == 0
    assert eth_balance(agg.env, attacker.address) == PRICE
    assert agg.client.contract_balance() == 5 * PRICE
    assert agg.client.balance_of(attacker.address) == 0


def test_withdraw_revertsWhen_recipientRefuses(
    agg: Agg, attacker_compiled: tuple[list[dict[str, Any]], str]
) -> None:
    attacker = _attacker(agg, attacker_compiled)
    with pytest.raises(FailedCall):
        _withdraw_via(agg, attacker, 2)
    assert agg.client.balance_of(attacker.address) == PRICE


# ---------------------------------------------------------------- epsilon units


@pytest.mark.parametrize(("text", "micros"), [("0.5", 500_000), ("2", 2_000_000),
                                              ("0.000001", 1), ("1e-6", 1)])
def test_epsilonMicros_exact(text: str, micros: int) -> None:
    assert epsilon_micros(text) == micros


@pytest.mark.parametrize("bad", ["0", "-1", "0.0000001", "nan", "inf", "x", "18446744073710"])
def test_epsilonMicros_refusesWhatTheContractCannotHold(bad: str) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        epsilon_micros(bad)


# ---------------------------------------------------------------- docs/protocol.md §20


def _canonical(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_canonical(c) for c in param["components"]) + ")" + kind[5:]
    return kind


@pytest.mark.parametrize("kind", ["function", "event", "error"])
def test_protocolDoc_listsEveryAbiItemWithItsSelector(kind: str) -> None:
    """docs/protocol.md §20 names every function, event and error of the committed
    AggregateMarket ABI with its selector (topic0 for events) and indexed fields."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    start = doc.index("## 20. Aggregate debits")
    end = doc.find("\n## ", start + 1)
    text = doc[start:end if end != -1 else len(doc)]
    items = [i for i in load_artifact("AggregateMarket").abi if i["type"] == kind]
    assert items
    for item in items:
        signature = f"{item['name']}({','.join(_canonical(p) for p in item['inputs'])})"
        digest = keccak(signature.encode())
        selector = digest if kind == "event" else digest[:4]
        row = next((line for line in text.splitlines() if f"| `{signature}` |" in line), None)
        assert row is not None, f"{signature} is not in docs/protocol.md §20"
        assert f"`0x{selector.hex()}`" in row
        if kind == "event":
            indexed = [p["name"] for p in item["inputs"] if p["indexed"]]
            assert re.findall(r"\*\*(\w+)\*\*", row) == indexed
