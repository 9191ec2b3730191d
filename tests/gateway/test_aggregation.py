"""Aggregate debits run by real gateway services on the embedded chain (DESIGN §10).

Every gateway of a `LocalNetwork` aggregates for the network's AggregateMarket on each
`net.sync()`; the chain's clock is the gateways' clock, so the deadline and the round
cut-offs pass by `net.dev.advance(...)`. Owners contribute with `seal_contribution` and
`AggregateClient.contribute`; the buyer asks `POST /v1/partials` and combines.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nacl.public
import numpy as np
import pytest
from eth_account.signers.local import LocalAccount

from marketplace.aggregate import (
    Aggregation,
    ContributionContext,
    Query,
    combine,
    dimension,
    encode,
    open_partial,
    seal_contribution,
)
from marketplace.aggregate.field import centered
from marketplace.aggregate.query_document import (
    QueryDocument,
    epsilon_to_micros,
    put_query_document,
)
from marketplace.eip712 import Eip712Domain, PartialReceipt, PartialRequest, recover_signer, sign
from marketplace.gateway.aggregate_state import AggregateState
from marketplace.gateway.aggregation import AggregationService, noise_plan
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.localnet import LocalNetwork
from storage.cid import Cid, Codec

AGES = Query("histogram", "age", 1.0, 1e-6, bins=(0, 30, 60, 120))
ROUND_SECONDS = 30
#: A cell's noise stays within this many deviations (false failure < 1e-30 per cell).
NOISE_BOUND_SIGMAS = 12


@dataclass
class Debit:
    net: LocalNetwork
    debit_id: int
    deadline: int
    buyer: LocalAccount
    buyer_key: nacl.public.PrivateKey
    owners: list[LocalAccount] = field(default_factory=list)
    bundles: list[bytes] = field(default_factory=list)

    @property
    def client(self) -> Any:
        assert self.net.aggregator is not None
        return self.net.aggregator

    @property
    def domain(self) -> Eip712Domain:
        return Eip712Domain(self.net.market.chain_id, self.client.address)

    def contribute(self, owner: LocalAccount, vector: np.ndarray, *, stored: bool = True) -> None:
        committee = self.net.market.committee_at(1)
        context = ContributionContext(
            self.net.market.chain_id, bytes.fromhex(self.client.address[2:]), self.debit_id,
            bytes.fromhex(owner.address[2:]), dimension(AGES),
        )
        bundle = seal_contribution(context, vector, committee.encryption_keys,
                                   committee.threshold)
        # unstored: a CID nobody can fetch
        cid = self.net.store.put(io.BytesIO(bundle)) if stored else Cid.of_block(Codec.RAW, bundle)
        self.client.contribute(owner, self.debit_id, cid.binary)
        self.owners.append(owner)
        self.bundles.append(bundle)

    def close_contributions(self) -> None:
        self.net.dev.advance(self.deadline - self.net.dev.now() + 1)

    def body(self, *, signer: LocalAccount | None = None, nonce: bytes | None = None,
             expiry: int | None = None, debit_id: int | None = None) -> dict[str, Any]:
        request = PartialRequest(
            self.debit_id if debit_id is None else debit_id,
            int(self.net.clock()) + 300 if expiry is None else expiry,
            secrets.token_bytes(32) if nonce is None else nonce,
        )
        signature = sign(signer or self.buyer, self.domain, request)
        return {"request": request.to_message(), "signature": "0x" + signature.hex()}

    def ask(self, node: int, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.net.clients[node].post("/v1/partials", json=body or self.body())

    def aggregation(self, candidates: list[LocalAccount]) -> Aggregation:
        committee = self.net.market.committee_at(1)
        n, t = len(committee.nodes), committee.threshold
        return Aggregation(
            self.net.market.chain_id, bytes.fromhex(self.client.address[2:]), self.debit_id,
            AGES, n, t, tuple(bytes.fromhex(o.address[2:]) for o in candidates),
            noise_plan(AGES, n, t),
        )

    def combined(self, answers: dict[int, dict[str, Any]]) -> np.ndarray:
        agg = self.aggregation(self.owners)
        partials = {
            node: open_partial(agg, base64.b64decode(a["sealedPartial"]), node, self.buyer_key)
            .values
            for node, a in answers.items()
        }
        return centered(combine(partials, agg.t))


def start(tmp_path: Path, n: int, t: int) -> LocalNetwork:
    return LocalNetwork.start(tmp_path / "store", size=n, threshold=t)


def open_debit(net: LocalNetwork, *, k: int = 2) -> Debit:
    assert net.aggregator is not None and net.deployer is not None
    cohort = net.aggregator.create_cohort(
        net.deployer, schema_hash=bytes(32), schema_uri="ipfs://cohort",
        epsilon_cap=epsilon_to_micros(100.0), min_contributors=k,
    ).value
    buyer = net.account()
    secret = BuyerSecretKey.from_account(buyer, net.domain)
    buyer_key = nacl.public.PrivateKey(secret.to_secret_bytes())
    document = QueryDocument.build(AGES, bytes(buyer_key.public_key), ROUND_SECONDS,
                                   "test buyer", "ages of the cohort")
    query_hash, uri = put_query_document(net.store, document)
    deadline = net.dev.now() + 600
    debit_id = net.aggregator.request_aggregate(
        buyer, cohort, query_hash=query_hash, query_uri=uri,
        epsilon=epsilon_to_micros(AGES.epsilon), deadline=deadline, price=10**15,
    ).value
    debit = Debit(net, debit_id, deadline, buyer, buyer_key)
    debit.cohort = cohort  # type: ignore[attr-defined]
    return debit


def member(net: LocalNetwork, debit: Debit) -> LocalAccount:
    owner = net.account()
    assert net.aggregator is not None
    net.aggregator.join_cohort(owner, debit.cohort)  # type: ignore[attr-defined]
    return owner


def run_rounds(net: LocalNetwork, rounds: int = 4) -> None:
    for _ in range(rounds):
        net.sync()


def answers_of(debit: Debit, nodes: list[int]) -> dict[int, dict[str, Any]]:
    out = {}
    for node in nodes:
        response = debit.ask(node)
        assert response.status_code == 200, response.json()
        out[node] = response.json()
    return out


def code_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


@pytest.fixture
def networks() -> Iterator[list[LocalNetwork]]:
    started: list[LocalNetwork] = []
    yield started
    for net in started:
        net.close()


def within_noise(estimate: np.ndarray, exact: list[int], n: int, t: int, *, dealers: int) -> bool:
    """Every cell within NOISE_BOUND_SIGMAS noise deviations of the exact count."""
    bound = NOISE_BOUND_SIGMAS * noise_plan(AGES, n, t).total_sigma(dealers)
    return bool(np.all(np.abs(estimate - np.array(exact)) <= bound))


def one_hot(value: int) -> np.ndarray:
    return encode(AGES, value)


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3)])
def test_committee_aggregates_and_buyer_gets_the_noisy_histogram(
    tmp_path: Path, networks: list[LocalNetwork], n: int, t: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    net = start(tmp_path, n, t)
    networks.append(net)
    debit = open_debit(net)
    ages = [12, 40, 45, 70]
    for age in ages:
        debit.contribute(member(net, debit), one_hot(age))
    cheat = member(net, debit)
    debit.contribute(cheat, np.array([1, 1, 0]))  # two-hot: sums to 2
    # before the deadline: not ready, with a retry hint
    early = debit.ask(1)
    assert code_of(early) == (409, "not_ready")
    assert early.json()["retryAfter"] >= 1
    debit.close_contributions()
    run_rounds(net)
    answers = answers_of(debit, list(range(1, n + 1)))
    for node, answer in answers.items():
        assert answer["node"] == node and answer["debitId"] == debit.debit_id
        assert answer["counted"] == len(ages)
        assert answer["dealers"] == list(range(1, n + 1))
        assert answer["excluded"] == [{"owner": cheat.address, "reason": "invalid"}]
        receipt = PartialReceipt.from_message(answer["receipt"])
        signature = bytes.fromhex(answer["receiptSignature"][2:])
        signer = recover_signer(debit.domain, receipt, signature)
        assert signer == net.node_accounts[node - 1].address
        assert receipt.epoch == 1
    estimate = debit.combined({node: answers[node] for node in list(answers)[:t]})
    assert within_noise(estimate, [1, 2, 1], n, t, dealers=n)  # 12 | 40, 45 | 70
    # every extra partial is consistent with the first t
    assert np.array_equal(debit.combined(answers), estimate)
    # the logs never carry a share, a sealed box or a partial
    text = caplog.text
    for bundle in debit.bundles:
        for box in json.loads(bundle)["shares"].values():
            assert box[:24] not in text
    for answer in answers.values():
        assert answer["sealedPartial"][:24] not in text


def test_node_down_after_round_2_leaves_t_partials(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    net = start(tmp_path, 5, 3)
    networks.append(net)
    debit = open_debit(net)
    for age in (5, 35, 95):
        debit.contribute(member(net, debit), one_hot(age))
    debit.close_contributions()
    run_rounds(net, 2)  # round 1 dealt by all, round 2 posted by all
    assert net.aggregator is not None
    posts = net.aggregator.rounds(debit.debit_id, 0)
    assert sorted(p.round for p in posts) == [1] * 5 + [2] * 5
    net.down |= {4, 5}
    run_rounds(net, 1)
    answers = answers_of(debit, [1, 2, 3])
    assert within_noise(debit.combined(answers), [1, 1, 1], 5, 3, dealers=5)


def test_a_node_that_never_dealt_is_excluded_from_dealers_by_all(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    net = start(tmp_path, 3, 2)
    networks.append(net)
    debit = open_debit(net)
    for age in (5, 35):
        debit.contribute(member(net, debit), one_hot(age))
    debit.close_contributions()
    net.down.add(3)
    run_rounds(net, 1)  # nodes 1 and 2 deal
    net.dev.advance(ROUND_SECONDS + 1)  # round 1 closes without node 3
    net.down.clear()
    run_rounds(net)
    answers = answers_of(debit, [1, 2, 3])
    assert {tuple(a["dealers"]) for a in answers.values()} == {(1, 2)}
    assert all(a["counted"] == 2 for a in answers.values())
    assert within_noise(debit.combined(answers), [1, 1, 0], 3, 2, dealers=2)


def test_an_unretrievable_bundle_is_excluded_by_every_node_alike(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    net = start(tmp_path, 3, 2)
    networks.append(net)
    debit = open_debit(net)
    for age in (5, 35):
        debit.contribute(member(net, debit), one_hot(age))
    lost = member(net, debit)
    debit.contribute(lost, one_hot(95), stored=False)
    debit.close_contributions()
    run_rounds(net)
    answers = answers_of(debit, [1, 2, 3])
    for answer in answers.values():
        assert answer["excluded"] == [{"owner": lost.address, "reason": "unopened"}]
        assert answer["counted"] == 2
    assert within_noise(debit.combined(answers), [1, 1, 0], 3, 2, dealers=3)


def test_fewer_than_k_contributions_give_no_partial(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    net = start(tmp_path, 3, 2)
    networks.append(net)
    debit = open_debit(net, k=3)
    for age in (5, 35):
        debit.contribute(member(net, debit), one_hot(age))
    assert code_of(debit.ask(1)) == (409, "not_ready")
    debit.close_contributions()
    run_rounds(net)
    assert net.aggregator is not None
    assert net.aggregator.rounds(debit.debit_id, 0) == []  # nobody ran a round
    for node in (1, 2, 3):
        assert code_of(debit.ask(node)) == (409, "too_few_contributions")
        service = net.gateways[node].aggregation
        assert service is not None and service.state.release_for(debit.debit_id) is None


def test_refusals_wrong_signer_replayed_nonce_unknown_debit_and_bad_bodies(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    net = start(tmp_path, 3, 2)
    networks.append(net)
    debit = open_debit(net)
    for age in (5, 35):
        debit.contribute(member(net, debit), one_hot(age))
    debit.close_contributions()
    run_rounds(net)
    assert code_of(debit.ask(1, debit.body(signer=net.account()))) == (403, "wrong_signer")
    assert code_of(debit.ask(1, debit.body(debit_id=debit.debit_id + 5))) == (
        404, "unknown_aggregate")
    assert code_of(debit.ask(1, debit.body(expiry=int(net.clock()) - 1))) == (401, "expired")
    assert code_of(debit.ask(1, debit.body(expiry=int(net.clock()) + 3600))) == (
        401, "expiry_too_far")
    nonce = secrets.token_bytes(32)
    first = debit.ask(1, debit.body(nonce=nonce))
    assert first.status_code == 200
    again = debit.body(nonce=nonce, expiry=int(net.clock()) + 299)  # another request
    assert code_of(debit.ask(1, again)) == (409, "nonce_reused")
    # the same partial and receipt are served again to a fresh request
    repeat = debit.ask(1)
    assert repeat.json()["sealedPartial"] == first.json()["sealedPartial"]
    assert repeat.json()["receipt"] == first.json()["receipt"]
    good = debit.body()
    for bad in (
        {"request": good["request"]},
        {**good, "extra": 1},
        {"request": {**good["request"], "debitId": "1"}, "signature": good["signature"]},
        {"request": {**good["request"], "debitId": True}, "signature": good["signature"]},
        {"request": {**good["request"], "nonce": "0x12"}, "signature": good["signature"]},
        [1, 2],
    ):
        assert code_of(debit.ask(1, bad)) == (422, "malformed")  # type: ignore[arg-type]
    assert code_of(debit.ask(1, {**good, "signature": "0x00"})) == (401, "bad_signature")
    raw = net.clients[1].post("/v1/partials", content=b"[" * 5000,
                              headers={"content-type": "application/json"})
    assert code_of(raw) == (422, "malformed")


def test_a_restarted_node_resumes_from_the_chain(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    net = start(tmp_path, 3, 2)
    networks.append(net)
    debit = open_debit(net)
    for age in (5, 35, 65):
        debit.contribute(member(net, debit), one_hot(age))
    debit.close_contributions()
    run_rounds(net, 1)  # everyone dealt
    gateway = net.gateways[2]
    old = gateway.aggregation
    assert old is not None and net.aggregator is not None
    # a new process on the same state: nothing in memory
    gateway.aggregation = AggregationService(
        net.aggregator, net.market, AggregateState(old.state.db), gateway.state,
        net.node_accounts[1], net.store, now=gateway.now,
    )
    run_rounds(net)
    posts = net.aggregator.rounds(debit.debit_id, 0)
    assert sorted(p.round for p in posts) == [1, 1, 1, 2, 2, 2]  # no round posted twice
    answers = answers_of(debit, [1, 2, 3])
    assert all(a["counted"] == 3 for a in answers.values())
    debit.combined(answers)  # consistent: raises if node 2's partial were off
