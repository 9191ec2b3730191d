"""The aggregate-debit application layer on the embedded chain: cohorts, the owner agent
(policy refusals, idempotence, crash safety, nothing printed) and the buyer's query and
result.

The buyer's result here is served by `FakeCommittee`: the pure `marketplace.aggregate.session`
functions run for every node of the debit's committee (the same rounds the gateways run),
answering `POST /v1/partials` per the wire format of docs/protocol.md §20 through httpx
MockTransports, with receipts signed by the node accounts. It adds no noise, so results are
exact. tests/app/test_aggregate_gateways.py runs the same flow on the real gateways.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from eth_account import Account as LocalNetworkAccount
from eth_account.signers.local import LocalAccount

from marketplace.aggregate import (
    ContributionContext,
    NoisePlan,
    Partial,
    Query,
    deal_round1,
    decide,
    dimension,
    make_opening,
    open_round1,
    open_share,
    partial,
    seal_partial,
)
from marketplace.aggregate.query_document import (
    CohortDocument,
    QueryDocument,
    QueryHashMismatch,
    encode,
    load_query_document,
    put_query_document,
)
from marketplace.app.aggregate import (
    AgentPolicy,
    AgentState,
    AggregateBuyer,
    CohortApp,
    EpsilonAboveBudget,
    NotYourAggregate,
    OwnerAgent,
    PartialsClient,
    PolicyError,
    RecordsError,
    ResultFailed,
    ResultNotReady,
    TooFewContributions,
    aggregation_for,
    read_records,
)
from marketplace.chain.aggregate import AggregateClient
from marketplace.chain.aggregate_types import AggregateState
from marketplace.committee import node_encryption_secret
from marketplace.documents import DocumentCidMismatch, FieldSpec
from marketplace.eip712 import Eip712Domain, PartialReceipt, PartialRequest, recover_signer, sign
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.localnet import LocalNetwork
from storage.cid import Cid
from storage.errors import StoreResponseError

GWEI = 10**9
BINS = (0, 18, 30, 45, 65, 120)
POLICY = """fields = ["age", "smoker"]
max_epsilon = 1.0
max_total_epsilon = 1.5
min_price_per_contribution = "1000gwei"
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """2-of-4: four partials let the buyer name a wrong one (t + 2)."""
    network = LocalNetwork.start(tmp_path_factory.mktemp("agg") / "store", size=4, threshold=2)
    yield network
    network.close()


@pytest.fixture(scope="module")
def aggregator(net: LocalNetwork) -> AggregateClient:
    assert net.deployer is not None
    return AggregateClient.deploy(net.market.w3, net.deployer, net.market.address).value


@dataclass
class Cohort:
    cohort_id: int
    admin: LocalAccount
    owners: list[LocalAccount] = field(default_factory=list)


def make_cohort(net: LocalNetwork, client: AggregateClient, owners: int, k: int,
                cap: str = "10") -> Cohort:
    admin = net.account()
    doc = CohortDocument(title="Heart study", fields=[FieldSpec(name="age", type="integer"),
                                                      FieldSpec(name="smoker", type="boolean")])
    cohort_id, _ = CohortApp(client, net.store, admin).create(doc, cap, k)
    cohort = Cohort(cohort_id, admin)
    for _ in range(owners):
        owner = net.account()
        CohortApp(client, net.store, owner).join(cohort_id)
        cohort.owners.append(owner)
    return cohort


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def agent_for(net: LocalNetwork, client: AggregateClient, owner: LocalAccount, cohort: int,
              tmp: Path, age: str = "41", policy: str = POLICY) -> OwnerAgent:
    records = write(tmp / f"{owner.address}.csv", f"age,smoker\n12,0\n{age},1\n")
    return OwnerAgent(client, net.market, net.store, owner,
                      AgentPolicy.from_toml(write(tmp / "policy.toml", policy)),
                      read_records(records), tmp / f"{owner.address}.state.json", [cohort])


def histogram(epsilon: float = 0.5) -> Query:
    return Query("histogram", "age", epsilon, 1e-6, bins=BINS)


# ---------------------------------------------------------------- fake committee


class FakeCommittee:
    """Every node of the debit's committee, run with the pure session functions (no
    noise), behind one MockTransport per node answering `POST /v1/partials`."""

    def __init__(self, net: LocalNetwork, client: AggregateClient, buyer: AggregateBuyer,
                 debit_id: int) -> None:
        self.net, self.client, self.debit_id = net, client, debit_id
        debit = client.aggregate(debit_id)
        requested = buyer.requested(debit_id)
        doc = load_query_document(net.store, requested.query_uri, requested.query_hash)
        self.epoch = net.market.committee_at(debit.epoch)
        contributions = client.contributions(debit_id, requested.ref.block_number)
        self.agg = aggregation_for(net.market.chain_id, client.address, debit_id, doc.parsed,
                                   self.epoch, contributions)
        self.buyer_key = doc.buyer_key_bytes
        accounts = {a.address: a for a in net.node_accounts}
        self.accounts = [accounts[address] for address in self.epoch.nodes]
        self.partials = self._run(contributions)
        self.domain = Eip712Domain(net.market.chain_id, client.address)
        #: node -> a function that replaces its answer (status, JSON)
        self.override: dict[int, Callable[[], tuple[int, object]]] = {}
        self.seen: list[dict[str, object]] = []
        self.buyer = debit.buyer

    def _run(self, contributions: list) -> dict[int, Partial]:  # type: ignore[type-arg]
        agg, n = self.agg, self.agg.n
        keys = [node_encryption_secret(a) for a in self.accounts]
        shares = {}
        for i in range(1, n + 1):
            rows = []
            for c in contributions:
                bundle = b"".join(self.net.store.stream(Cid.parse(c.bundle_cid)))
                ctx = ContributionContext(agg.chain_id, agg.aggregator, agg.debit_id,
                                          bytes.fromhex(c.owner[2:]), dimension(agg.query))
                rows.append(open_share(bundle, i, keys[i - 1], ctx))
            shares[i] = np.asarray(rows, dtype=np.int64).reshape(agg.count, -1)
        # the test-only plan: no noise, so results are exact (the buyer's plan is the real one)
        quiet = replace(agg, plan=NoisePlan.without_noise_for_tests(agg.plan.dimension, n, agg.t))
        round1 = {j: deal_round1(quiet, j, list(self.epoch.encryption_keys))
                  for j in range(1, n + 1)}
        received = {i: {j: open_round1(agg, round1[j], j, i, keys[i - 1]) for j in round1}
                    for i in range(1, n + 1)}
        seed = hashlib.blake2b(b"fake seed", digest_size=32).digest()
        openings = {i: make_opening(agg, seed, shares[i], (), received[i])
                    for i in range(1, n + 1)}
        valid = decide(agg, openings)
        return {i: Partial(i, partial(agg, shares[i], valid, received[i]), int(valid.sum()), n)
                for i in range(1, n + 1)}

    def answer(self, node: int) -> tuple[int, object]:
        """The honest answer of `node` (`override` aside)."""
        part = self.partials[node]
        sealed = seal_partial(self.agg, part, self.buyer_key)
        receipt = PartialReceipt(self.debit_id, node, hashlib.sha256(sealed).digest(), 1,
                                 self.epoch.epoch)
        return 200, {
            "node": node, "debitId": self.debit_id,
            "sealedPartial": base64.b64encode(sealed).decode(), "counted": part.counted,
            "dealers": list(range(1, self.agg.n + 1)), "excluded": [],
            "receipt": receipt.to_message(),
            "receiptSignature": "0x" + sign(self.accounts[node - 1], self.domain,
                                            receipt).hex(),
        }

    def clients(self) -> dict[int, httpx.Client]:
        def handler_for(node: int) -> Callable[[httpx.Request], httpx.Response]:
            def handle(request: httpx.Request) -> httpx.Response:
                assert request.url.path == "/v1/partials"
                body = json.loads(request.content)
                signed = PartialRequest.from_message(body["request"])
                signature = bytes.fromhex(body["signature"][2:])
                # no chain call here: these run in the client's threads, eth-tester is not
                # thread-safe
                assert recover_signer(self.domain, signed, signature) == self.buyer
                self.seen.append(body)
                status, payload = self.override.get(node, lambda: self.answer(node))()
                return httpx.Response(status, json=payload)
            return handle

        return {i: httpx.Client(transport=httpx.MockTransport(handler_for(i)),
                                base_url=f"http://node-{i}") for i in range(1, self.agg.n + 1)}


def buyer_for(net: LocalNetwork, client: AggregateClient,
              wallet: LocalAccount | None = None) -> AggregateBuyer:
    return AggregateBuyer(client, net.market, net.store, wallet or net.account())


def with_fake(buyer: AggregateBuyer, fake: FakeCommittee) -> AggregateBuyer:
    buyer.partials_client_factory = lambda: PartialsClient(fake.domain, fake.clients(),
                                                           now=fake.net.dev.now)
    return buyer


def run_query(net: LocalNetwork, client: AggregateClient, tmp: Path, ages: list[str],
              k: int = 2, query: Query | None = None) -> tuple[AggregateBuyer, int, Cohort]:
    cohort = make_cohort(net, client, len(ages), k)
    buyer = buyer_for(net, client)
    requested = buyer.query(cohort.cohort_id, query or histogram(), deadline_seconds=3600,
                            price=len(ages) * 10_000 * GWEI)
    debit_id = int(requested.debit.debit_id)
    for owner, age in zip(cohort.owners, ages, strict=True):
        decisions = agent_for(net, client, owner, cohort.cohort_id, tmp, age).run_once()
        assert [d.action for d in decisions] == ["contributed"]
    return buyer, debit_id, cohort


# ---------------------------------------------------------------- documents and cohorts


def test_query_document_is_bound_to_its_hash(net: LocalNetwork, tmp_path: Path) -> None:
    doc = QueryDocument.build(histogram(), bytes(range(1, 33)), 30, "lab", "heart study")
    query_hash, uri = put_query_document(net.store, doc)
    assert query_hash == hashlib.sha256(encode(doc)).digest()
    assert load_query_document(net.store, uri, query_hash) == doc
    with pytest.raises(QueryHashMismatch):
        load_query_document(net.store, uri, bytes(32))
    other = QueryDocument.build(histogram(0.7), bytes(range(1, 33)), 30, "lab", "x")
    other_hash, other_uri = put_query_document(net.store, other)
    with pytest.raises(QueryHashMismatch):  # a URI swapped for another document's
        load_query_document(net.store, other_uri, query_hash)
    # a store answering other bytes for the CID is refused
    path = net.store._block_path(Cid.parse(uri.removeprefix("ipfs://")))
    saved = path.read_bytes()
    path.write_bytes(saved.replace(b"heart", b"HEART"))
    try:
        with pytest.raises(DocumentCidMismatch):
            load_query_document(net.store, uri, query_hash)
    finally:
        path.write_bytes(saved)
    assert other_hash != query_hash


def test_cohort_create_join_show_leave(net: LocalNetwork, aggregator: AggregateClient) -> None:
    cohort = make_cohort(net, aggregator, 2, 2, cap="2.5")
    view = CohortApp(aggregator, net.store, cohort.admin).show(cohort.cohort_id)
    assert view.cohort.epsilon_cap == 2_500_000 and view.cohort.min_contributors == 2
    assert view.cohort.members == 2 and view.problem is None
    assert view.document is not None and view.document.fields[0].name == "age"
    CohortApp(aggregator, net.store, cohort.owners[0]).leave(cohort.cohort_id)
    assert aggregator.cohort(cohort.cohort_id).members == 1
    assert not aggregator.is_member(cohort.cohort_id, cohort.owners[0].address)


# ---------------------------------------------------------------- the owner agent


def test_agent_contributes_once_and_reruns_are_idempotent(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    cohort = make_cohort(net, aggregator, 1, 1)
    owner = cohort.owners[0]
    debit = buyer_for(net, aggregator).query(cohort.cohort_id, histogram(), price=GWEI * 10**4,
                                              deadline_seconds=600).debit
    agent = agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path, age="37.123")
    first = agent.run_once()
    assert [(d.debit_id, d.action) for d in first] == [(debit.debit_id, "contributed")]
    assert aggregator.contribution_of(debit.debit_id, owner.address) == (True, False)
    again = agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path, age="37.123")
    assert [d.action for d in again.run_once()] == ["skipped"]
    assert aggregator.aggregate(debit.debit_id).contributions == 1
    state = json.loads((tmp_path / f"{owner.address}.state.json").read_text())
    assert state["spentMicros"] == 500_000
    assert state["debits"][str(debit.debit_id)]["status"] == "contributed"
    # nothing of the record reached a log line or the terminal
    out = capsys.readouterr()
    assert "37.123" not in caplog.text + out.out + out.err
    assert "37.123" not in json.dumps(state)


def test_agent_with_lost_state_asks_the_chain(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path
) -> None:
    cohort = make_cohort(net, aggregator, 1, 1)
    owner = cohort.owners[0]
    buyer_for(net, aggregator).query(cohort.cohort_id, histogram(), price=GWEI * 10**4,
                                     deadline_seconds=600)
    agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path).run_once()
    (tmp_path / f"{owner.address}.state.json").unlink()
    decisions = agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path).run_once()
    assert [(d.action, d.rule) for d in decisions] == [("skipped", "already_contributed")]


def test_agent_crash_after_the_transaction_counts_epsilon_once(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cohort = make_cohort(net, aggregator, 1, 1)
    owner = cohort.owners[0]
    debit = buyer_for(net, aggregator).query(cohort.cohort_id, histogram(), price=GWEI * 10**4,
                                              deadline_seconds=600).debit
    agent = agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path)
    real = aggregator.contribute

    def contribute_then_crash(*args: object) -> None:
        real(*args)  # type: ignore[arg-type]
        raise KeyboardInterrupt("killed after the transaction")

    monkeypatch.setattr(aggregator, "contribute", contribute_then_crash)
    with pytest.raises(KeyboardInterrupt):
        agent.run_once()
    monkeypatch.undo()
    state_path = tmp_path / f"{owner.address}.state.json"
    pending = json.loads(state_path.read_text())
    assert pending["debits"][str(debit.debit_id)]["status"] == "pending"
    assert pending["spentMicros"] == 500_000  # reserved before the transaction
    decisions = agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path).run_once()
    assert [d.action for d in decisions] == ["skipped"]
    after = json.loads(state_path.read_text())
    assert after["spentMicros"] == 500_000
    assert after["debits"][str(debit.debit_id)]["status"] == "contributed"
    assert aggregator.aggregate(debit.debit_id).contributions == 1


@pytest.mark.parametrize(
    ("query", "price", "rule"),
    [
        (Query("histogram", "income", 0.5, 1e-6, bins=(0, 10, 20)), 10**16, "field_not_allowed"),
        (histogram(1.2), 10**16, "epsilon_above_max"),
        (histogram(0.5), 500 * GWEI, "price_too_low"),
    ],
    ids=["field", "epsilon", "price"],
)
def test_agent_refuses_by_policy_with_a_logged_reason(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, query: Query, price: int, rule: str,
) -> None:
    caplog.set_level(logging.INFO, logger="marketplace.app.aggregate")
    cohort = make_cohort(net, aggregator, 1, 1)
    owner = cohort.owners[0]
    debit = buyer_for(net, aggregator).query(cohort.cohort_id, query, price=price,
                                              deadline_seconds=600).debit
    decisions = agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path).run_once()
    assert [(d.action, d.rule) for d in decisions] == [("refused", rule)]
    assert f"aggregate debit {debit.debit_id} refused ({rule})" in caplog.text
    assert aggregator.contribution_of(debit.debit_id, owner.address) == (False, False)
    assert not (tmp_path / f"{owner.address}.state.json").exists() or json.loads(
        (tmp_path / f"{owner.address}.state.json").read_text())["spentMicros"] == 0


def test_agent_refuses_past_its_total_epsilon(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="marketplace.app.aggregate")
    cohort = make_cohort(net, aggregator, 1, 1)
    owner = cohort.owners[0]
    buyer = buyer_for(net, aggregator)
    first = buyer.query(cohort.cohort_id, histogram(1.0), price=10**16, deadline_seconds=600)
    second = buyer.query(cohort.cohort_id, histogram(0.6), price=10**16, deadline_seconds=600)
    decisions = agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path).run_once()
    assert [(d.debit_id, d.action, d.rule) for d in decisions] == [
        (first.debit.debit_id, "contributed", "ok"),
        (second.debit.debit_id, "refused", "total_epsilon_exceeded"),
    ]
    assert "total_epsilon_exceeded" in caplog.text


def test_agent_gives_back_the_epsilon_of_a_refunded_debit(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path
) -> None:
    cohort = make_cohort(net, aggregator, 1, 2)  # k = 2, one owner: it will be refunded
    owner = cohort.owners[0]
    buyer = buyer_for(net, aggregator)
    debit = buyer.query(cohort.cohort_id, histogram(), price=10**16, deadline_seconds=60).debit
    agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path).run_once()
    net.dev.advance(61)
    buyer.refund(debit.debit_id)
    agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path).run_once()
    state = json.loads((tmp_path / f"{owner.address}.state.json").read_text())
    assert state["spentMicros"] == 0
    assert state["debits"][str(debit.debit_id)]["status"] == "refunded"


def test_agent_inputs_are_checked(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="unknown key"):
        AgentPolicy.from_toml(write(tmp_path / "p.toml", POLICY + "max_eps = 1\n"))
    with pytest.raises(PolicyError, match="min_price_per_contribution"):
        AgentPolicy.from_toml(write(tmp_path / "p.toml", POLICY.replace('"1000gwei"', '"lots"')))
    with pytest.raises(PolicyError, match="max_epsilon"):
        AgentPolicy.from_toml(write(tmp_path / "p.toml", POLICY.replace("= 1.0", "= 0")))
    with pytest.raises(RecordsError, match="at least one record row"):
        read_records(write(tmp_path / "r.csv", "age,smoker\n"))
    assert read_records(write(tmp_path / "r.csv", "age,smoker\n30,1\n52,0\n\n")) == {
        "age": "52", "smoker": "0"}
    state = AgentState(tmp_path / "s.json", "0x" + "11" * 20, "0x" + "22" * 20)
    state.save()
    with pytest.raises(Exception, match="another AggregateMarket or owner"):
        AgentState.load(tmp_path / "s.json", "0x" + "11" * 20, "0x" + "33" * 20)


# ---------------------------------------------------------------- the buyer


def test_query_above_the_cohort_budget_is_refused_before_paying(
    net: LocalNetwork, aggregator: AggregateClient
) -> None:
    cohort = make_cohort(net, aggregator, 0, 1, cap="0.4")
    buyer = buyer_for(net, aggregator)
    before = net.market.w3.eth.get_balance(buyer.wallet.address)
    with pytest.raises(EpsilonAboveBudget):
        buyer.query(cohort.cohort_id, histogram(0.5), price=10**16, deadline_seconds=60)
    assert net.market.w3.eth.get_balance(buyer.wallet.address) == before


def test_result_combines_the_partials_exactly(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path
) -> None:
    ages = ["17", "25", "29", "70", "44.9"]
    buyer, debit_id, _ = run_query(net, aggregator, tmp_path, ages, k=3)
    with pytest.raises(ResultNotReady, match="contributions are open"):
        buyer.result(debit_id)
    net.dev.advance(3601)
    fake = FakeCommittee(net, aggregator, buyer, debit_id)
    got = with_fake(buyer, fake).result(debit_id)
    assert got.result.values == (1.0, 2.0, 0.0, 1.0, 1.0)  # 44.9 rounds to 45
    assert got.result.contributors == 5 and got.candidates == 5
    assert got.used_nodes == (1, 2, 3, 4) and got.faults == {}
    # sigma is what the gateways' plan gives for the dealers whose noise is in it
    assert got.result.noise_sigma == pytest.approx(fake.agg.plan.total_sigma(4))
    low, high = got.result.intervals[0]
    assert low < 1.0 < high
    assert len(fake.seen) == 4 and len({json.dumps(b) for b in fake.seen}) == 1


def test_result_names_a_node_whose_partial_disagrees(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path
) -> None:
    buyer, debit_id, _ = run_query(net, aggregator, tmp_path, ["20", "50"])
    net.dev.advance(3601)
    fake = FakeCommittee(net, aggregator, buyer, debit_id)
    bad = fake.partials[3]
    fake.partials[3] = Partial(3, (bad.values + 1) % (2**31 - 1), bad.counted, bad.dealers)
    got = with_fake(buyer, fake).result(debit_id)
    assert got.result.values == (0.0, 1.0, 0.0, 1.0, 0.0)
    assert "disagrees" in got.faults[3] and 3 not in got.used_nodes


def test_result_with_t_plus_one_partials_detects_but_cannot_name(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path
) -> None:
    buyer, debit_id, _ = run_query(net, aggregator, tmp_path, ["20", "50"])
    net.dev.advance(3601)
    fake = FakeCommittee(net, aggregator, buyer, debit_id)
    bad = fake.partials[2]
    fake.partials[2] = Partial(2, (bad.values + 5) % (2**31 - 1), bad.counted, bad.dealers)
    fake.override[4] = lambda: (503, {"code": "unavailable", "message": "down"})
    with pytest.raises(ResultFailed, match="cannot be told"):
        with_fake(buyer, fake).result(debit_id)


def test_result_refuses_forged_receipts_and_foreign_boxes(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path
) -> None:
    buyer, debit_id, _ = run_query(net, aggregator, tmp_path, ["20", "50"])
    net.dev.advance(3601)
    fake = FakeCommittee(net, aggregator, buyer, debit_id)
    honest = fake.answer

    def signed_by_node_1(node: int) -> Callable[[], tuple[int, object]]:
        def forged() -> tuple[int, object]:
            status, payload = honest(node)
            assert isinstance(payload, dict)
            receipt = PartialReceipt.from_message(payload["receipt"])
            payload["receiptSignature"] = "0x" + sign(fake.accounts[0], fake.domain,
                                                      receipt).hex()
            return status, payload
        return forged

    def sealed_to_another_key() -> tuple[int, object]:
        other = BuyerSecretKey.from_account(net.account(), net.market.domain).public_key().key
        sealed = seal_partial(fake.agg, fake.partials[3], other)
        receipt = PartialReceipt(debit_id, 3, hashlib.sha256(sealed).digest(), 1,
                                 fake.epoch.epoch)
        status, payload = honest(3)
        assert isinstance(payload, dict)
        payload |= {"sealedPartial": base64.b64encode(sealed).decode(),
                    "receipt": receipt.to_message(),
                    "receiptSignature": "0x" + sign(fake.accounts[2], fake.domain,
                                                    receipt).hex()}
        return status, payload

    fake.override[2] = signed_by_node_1(2)
    fake.override[3] = sealed_to_another_key
    fake.override[4] = lambda: (200, {"node": 4, "debitId": debit_id, "sealedPartial": "!!"})
    with pytest.raises(ResultFailed) as failed:
        with_fake(buyer, fake).result(debit_id)
    faults = failed.value.faults
    assert "not signed by node 2" in faults[2]
    assert "sealed to another key" in faults[3]
    assert "sealedPartial" in faults[4]
    del fake.override[2]
    got = with_fake(buyer, fake).result(debit_id)  # nodes 1 and 2 suffice
    assert got.used_nodes == (1, 2) and set(got.faults) == {3, 4}


def test_result_not_ready_and_too_few(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path
) -> None:
    buyer, debit_id, _ = run_query(net, aggregator, tmp_path, ["20", "50"])
    net.dev.advance(3601)
    fake = FakeCommittee(net, aggregator, buyer, debit_id)
    for node in (1, 2, 3):
        fake.override[node] = lambda: (409, {"code": "not_ready", "message": "round 2",
                                             "retryAfter": 7})
    with pytest.raises(ResultNotReady) as early:
        with_fake(buyer, fake).result(debit_id)
    assert early.value.retry_after == 7
    # fewer than k contributors: no partials are asked for, the refund is offered
    cohort = make_cohort(net, aggregator, 1, 2)
    debit = buyer.query(cohort.cohort_id, histogram(), price=10**16, deadline_seconds=60).debit
    agent_for(net, aggregator, cohort.owners[0], cohort.cohort_id, tmp_path).run_once()
    net.dev.advance(61)
    with pytest.raises(TooFewContributions, match="refund-aggregate"):
        buyer.result(int(debit.debit_id))
    assert buyer.refund(int(debit.debit_id)) == 10**16
    assert aggregator.aggregate(debit.debit_id).state is AggregateState.REFUNDED


def test_result_of_another_buyers_debit_is_refused(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path
) -> None:
    _buyer, debit_id, _ = run_query(net, aggregator, tmp_path, ["20", "50"])
    with pytest.raises(NotYourAggregate):
        buyer_for(net, aggregator).result(debit_id)


def test_agent_reports_a_failed_debit_and_still_decides_the_others(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cohort = make_cohort(net, aggregator, 1, 1)
    owner = cohort.owners[0]
    buyer = buyer_for(net, aggregator)
    first = buyer.query(cohort.cohort_id, histogram(), price=10**16, deadline_seconds=600).debit
    second = buyer.query(cohort.cohort_id, histogram(), price=10**16, deadline_seconds=600).debit
    real_put, calls = net.store.put, []

    def put_fails_once(source: io.BytesIO) -> Cid:
        calls.append(1)
        if len(calls) == 1:
            raise StoreResponseError("http://store", "add", "down")
        return real_put(source)

    monkeypatch.setattr(net.store, "put", put_fails_once)
    decisions = agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path).run_once()
    assert [(d.debit_id, d.action) for d in decisions] == [
        (first.debit_id, "failed"), (second.debit_id, "contributed")]
    monkeypatch.undo()
    # the failed one is still open: the next run contributes it, the other is not redone
    decisions = agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path).run_once()
    assert [(d.debit_id, d.action) for d in decisions] == [
        (first.debit_id, "contributed"), (second.debit_id, "skipped")]
    state = json.loads((tmp_path / f"{owner.address}.state.json").read_text())
    assert state["spentMicros"] == 1_000_000


def test_partials_client_turns_hostile_answers_into_faults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each gateway's answer is parsed defensively: deep nesting (which overflows the C
    stack of json.loads once eth_account raised the recursion limit), not JSON, not an
    object, too large, a refusal code carrying terminal escapes, a wild retryAfter."""
    monkeypatch.setattr("marketplace.app.aggregate.MAX_PARTIAL_ANSWER", 4096)
    bodies: dict[int, tuple[int, bytes]] = {
        1: (200, b"[" * 4000),
        2: (200, b"not json"),
        3: (200, b"[1, 2]"),
        4: (200, b'{"x": "' + b"a" * 10_000 + b'"}'),
        5: (403, b'{"code": "\\u001b[2Jwrong", "message": "x"}'),
        6: (409, b'{"code": "not_ready", "retryAfter": 10000000000}'),
    }

    def client(node: int) -> httpx.Client:
        status, raw = bodies[node]
        return httpx.Client(base_url=f"http://node-{node}", transport=httpx.MockTransport(
            lambda request: httpx.Response(status, content=raw)))

    wallet = LocalNetworkAccount.create()
    domain = Eip712Domain(1, "0x" + "11" * 20)
    answers = PartialsClient(domain, {i: client(i) for i in bodies}).collect(wallet, 7)
    text = {i: str(a) for i, a in answers.items()}
    assert all(isinstance(a, Exception) for a in answers.values()), text
    assert "not JSON" in text[1] and "not JSON" in text[2]
    assert "not a JSON object" in text[3]
    assert "larger than 4096 bytes" in text[4]
    assert text[5] == "refused with ? (HTTP 403)"
    assert "retry after 5 s" in text[6]


def test_agent_refuses_documents_the_chain_does_not_vouch_for(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A query URI whose document is not the on-chain hash, a document whose ε is not the
    paid ε, and a record without a usable value are refused (and nothing is contributed)."""
    caplog.set_level(logging.INFO, logger="marketplace.app.aggregate")
    cohort = make_cohort(net, aggregator, 1, 1)
    owner = cohort.owners[0]
    buyer = buyer_for(net, aggregator)
    key = buyer.buyer_secret().public_key().key
    doc = QueryDocument.build(histogram(0.5), key, 30, "lab", "ages")
    query_hash, uri = put_query_document(net.store, doc)
    deadline = net.dev.now() + 600
    swapped = aggregator.request_aggregate(
        buyer.wallet, cohort.cohort_id, query_hash=hashlib.sha256(b"other").digest(),
        query_uri=uri, epsilon=500_000, deadline=deadline, price=10**16).value
    underpaid = aggregator.request_aggregate(
        buyer.wallet, cohort.cohort_id, query_hash=query_hash, query_uri=uri,
        epsilon=100_000, deadline=deadline, price=10**16).value
    honest = aggregator.request_aggregate(
        buyer.wallet, cohort.cohort_id, query_hash=query_hash, query_uri=uri,
        epsilon=500_000, deadline=deadline, price=10**16).value
    agent = agent_for(net, aggregator, owner, cohort.cohort_id, tmp_path, age="forty-one")
    decisions = {d.debit_id: d.rule for d in agent.run_once()}
    assert decisions == {swapped: "bad_query", underpaid: "epsilon_mismatch",
                         honest: "no_value"}
    assert "forty-one" not in caplog.text
    for debit_id in (swapped, underpaid, honest):
        assert aggregator.contribution_of(debit_id, owner.address) == (False, False)


def test_agent_given_a_new_cohort_reads_its_older_requests(
    net: LocalNetwork, aggregator: AggregateClient, tmp_path: Path
) -> None:
    """Each cohort keeps its own cursor: a cohort added on a later run is read from the
    start, not from where the other cohort's reading had got to."""
    first = make_cohort(net, aggregator, 1, 1)
    second = make_cohort(net, aggregator, 0, 1)
    owner = first.owners[0]
    CohortApp(aggregator, net.store, owner).join(second.cohort_id)
    buyer = buyer_for(net, aggregator)
    older = buyer.query(second.cohort_id, histogram(), price=10**16, deadline_seconds=600).debit
    newer = buyer.query(first.cohort_id, histogram(), price=10**16, deadline_seconds=600).debit
    agent = agent_for(net, aggregator, owner, first.cohort_id, tmp_path)
    assert [d.debit_id for d in agent.run_once()] == [newer.debit_id]
    both = agent_for(net, aggregator, owner, first.cohort_id, tmp_path)
    both.cohorts = (first.cohort_id, second.cohort_id)
    decisions = {d.debit_id: d.action for d in both.run_once()}
    assert decisions == {older.debit_id: "contributed", newer.debit_id: "skipped"}
