"""The aggregate-debit application layer against the real gateways: a LocalNetwork's
in-process gateway services aggregate for its AggregateMarket (marketplace.gateway.
aggregation), and the buyer's `result` asks their `POST /v1/partials` through the same
`PartialsClient` the CLI uses. Cohort, agents, query and result all go through
marketplace.app.aggregate; the noise is the real OpenDP noise, so the answer is checked
against the exact histogram within the calibrated bound."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from marketplace.aggregate import Query
from marketplace.aggregate.query_document import CohortDocument
from marketplace.app.aggregate import (
    AgentPolicy,
    AggregateBuyer,
    CohortApp,
    OwnerAgent,
    PartialsClient,
    ResultNotReady,
    read_records,
)
from marketplace.chain.aggregate import AggregateClient
from marketplace.documents import FieldSpec
from marketplace.gateway.aggregation import noise_plan
from marketplace.localnet import LocalNetwork

AGES = Query("histogram", "age", 1.0, 1e-6, bins=(0, 30, 60, 120))
#: A cell's noise stays within this many deviations (false failure < 1e-30 per cell).
NOISE_BOUND_SIGMAS = 12
POLICY = """fields = ["age"]
max_epsilon = 2
max_total_epsilon = 10
min_price_per_contribution = 1000
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    network = LocalNetwork.start(tmp_path_factory.mktemp("agg-gw") / "store")  # 2-of-3
    yield network
    network.close()


def test_cohort_agents_query_and_result_through_the_gateways(
    net: LocalNetwork, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = net.aggregator
    assert isinstance(client, AggregateClient)
    admin = net.account()
    schema = CohortDocument(title="Ages", fields=[FieldSpec(name="age", type="integer")])
    cohort_id, _ = CohortApp(client, net.store, admin).create(schema, "5", 3)
    buyer = AggregateBuyer(client, net.market, net.store, net.account())
    debit = buyer.query(cohort_id, AGES, deadline_seconds=600, price=10**15).debit
    ages = ["12.25", "40", "45", "70.5", "29"]
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    for i, age in enumerate(ages):
        owner = net.account()
        CohortApp(client, net.store, owner).join(cohort_id)
        records = tmp_path / f"owner-{i}.csv"
        records.write_text(f"age,notes\n99,old\n{age},latest\n", encoding="utf-8")
        agent = OwnerAgent(client, net.market, net.store, owner,
                           AgentPolicy.from_toml(policy), read_records(records),
                           tmp_path / f"owner-{i}.state.json", [cohort_id])
        assert [d.action for d in agent.run_once()] == ["contributed"]
    buyer.partials_client_factory = lambda: PartialsClient(
        buyer.domain, dict(net.clients), now=net.clock)
    net.sync()
    with pytest.raises(ResultNotReady, match="contributions are open"):
        buyer.result(int(debit.debit_id))
    net.dev.advance(601)
    for _ in range(4):  # rounds 1 and 2 close once every node has posted
        net.sync()
    got = buyer.result(int(debit.debit_id))
    assert got.used_nodes == (1, 2, 3) and got.faults == {}
    assert got.result.contributors == 5 and got.excluded == ()
    assert got.dealers == (1, 2, 3)
    sigma = noise_plan(AGES, 3, 2).total_sigma(3)
    assert got.result.noise_sigma == pytest.approx(sigma)
    exact = np.array([2, 2, 1])  # 12, 29 | 40, 45 | 70.5
    assert np.all(np.abs(np.array(got.result.values) - exact) <= NOISE_BOUND_SIGMAS * sigma)
    # the records' values never reach a log line
    for age in ("12.25", "70.5"):
        assert age not in caplog.text
    # the contributors are paid
    assert client.aggregate(debit.debit_id).contributions == 5


def test_result_with_one_gateway_down_uses_the_other_two(
    net: LocalNetwork, tmp_path: Path
) -> None:
    client = net.aggregator
    assert isinstance(client, AggregateClient)
    schema = CohortDocument(title="Ages", fields=[FieldSpec(name="age", type="integer")])
    cohort_id, _ = CohortApp(client, net.store, net.account()).create(schema, "5", 2)
    buyer = AggregateBuyer(client, net.market, net.store, net.account())
    debit = buyer.query(cohort_id, AGES, deadline_seconds=600, price=10**15).debit
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    for i, age in enumerate(["10", "80"]):
        owner = net.account()
        CohortApp(client, net.store, owner).join(cohort_id)
        records = tmp_path / f"down-{i}.csv"
        records.write_text(f"age\n{age}\n", encoding="utf-8")
        OwnerAgent(client, net.market, net.store, owner, AgentPolicy.from_toml(policy),
                   read_records(records), tmp_path / f"down-{i}.json", [cohort_id]).run_once()
    net.dev.advance(601)
    for _ in range(4):
        net.sync()
    live = {i: c for i, c in net.clients.items() if i != 2}
    buyer.partials_client_factory = lambda: PartialsClient(buyer.domain, live, now=net.clock)
    got = buyer.result(int(debit.debit_id))
    assert got.used_nodes == (1, 3) and got.result.contributors == 2


def test_rounds_count_from_the_first_block_after_the_deadline(
    net: LocalNetwork, tmp_path: Path
) -> None:
    """A chain that mines only when sent a transaction (anvil without a block time) may
    make its first block after the deadline much later than the deadline. Rounds counted
    from the deadline had then closed before any node could post (every node answered
    aggregation_failed: "0 nodes dealt in round 1"); they count from that block."""
    client = net.aggregator
    assert isinstance(client, AggregateClient)
    schema = CohortDocument(title="Ages", fields=[FieldSpec(name="age", type="integer")])
    cohort_id, _ = CohortApp(client, net.store, net.account()).create(schema, "5", 2)
    buyer = AggregateBuyer(client, net.market, net.store, net.account())
    debit = buyer.query(cohort_id, AGES, deadline_seconds=600, price=10**15,
                        round_seconds=30).debit
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    for i, age in enumerate(["10", "80"]):
        owner = net.account()
        CohortApp(client, net.store, owner).join(cohort_id)
        records = tmp_path / f"late-{i}.csv"
        records.write_text(f"age\n{age}\n", encoding="utf-8")
        OwnerAgent(client, net.market, net.store, owner, AgentPolicy.from_toml(policy),
                   read_records(records), tmp_path / f"late-{i}.json", [cohort_id]).run_once()
    net.dev.advance(600 + 10_000)  # the first block after the deadline: ~3 hours late
    for _ in range(4):
        net.sync()
    buyer.partials_client_factory = lambda: PartialsClient(buyer.domain, dict(net.clients),
                                                           now=net.clock)
    got = buyer.result(int(debit.debit_id))
    assert got.dealers == (1, 2, 3) and got.result.contributors == 2
