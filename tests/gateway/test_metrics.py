"""`GET /metrics`: each node's Prometheus metrics (README, Operations), read back through
prometheus_client's own parser, against what the node really answered and stored."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from marketplace.chain.errors import ChainUnavailable
from marketplace.committee import NodeKey
from marketplace.eip712 import KeyRequest
from marketplace.gateway.api import ERROR_STATUS, create_app
from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.releaser import SignedRelease
from marketplace.gateway.service import GatewayService, Timing
from marketplace.gateway.state import GatewayState
from tests.gateway.conftest import Stack, code_of

P = "datadebit_gateway_"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient) -> Samples:
    """Every sample of one scrape, keyed by (name, sorted labels); asserts a 200."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((P + name, tuple(sorted(labels.items()))))


def codes(samples: Samples) -> dict[str, float]:
    """The non-zero `keys_requests_total` counts by code."""
    return {
        dict(labels)["code"]: v
        for (name, labels), v in samples.items()
        if name == P + "keys_requests_total" and v
    }


def requests_timed(samples: Samples) -> dict[str, float]:
    """The latency histogram's observation count by outcome."""
    return {
        outcome: value(samples, "keys_request_duration_seconds_count", outcome=outcome) or 0.0
        for outcome in ("released", "refused")
    }


@pytest.fixture
def entitled(stack: Stack) -> int:
    """An auto-approved debit on a listing with one version, indexed by every node."""
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    return debit_id


def test_keys_requests_are_counted_by_their_stable_code_and_timed(
    stack: Stack, entitled: int
) -> None:
    """The code comes from the answer's body, not its status: bad_signature and expired
    are both 401 and are told apart. Every code of the error table is exported from the
    start (at 0), and one node's requests never show in another node's metrics."""
    before = scrape(stack.clients[1])
    assert codes(before) == {}
    exported = {dict(lb)["code"] for name, lb in before if name == P + "keys_requests_total"}
    assert exported == {"ok", *ERROR_STATUS}

    assert stack.ask(1, stack.body(entitled, 1)).status_code == 200
    assert code_of(stack.ask(1, stack.body(entitled, 1, signer=stack.stranger))) == (
        403, "wrong_signer",
    )
    assert code_of(stack.ask(1, {"request": {"debitId": entitled}})) == (422, "malformed")
    assert code_of(stack.ask(1, stack.body(entitled, 1, expiry=1))) == (401, "expired")
    bad = {**stack.body(entitled, 1), "signature": "0x" + "00" * 65}
    assert code_of(stack.ask(1, bad)) == (401, "bad_signature")

    after = scrape(stack.clients[1])
    assert codes(after) == {
        "ok": 1, "wrong_signer": 1, "malformed": 1, "expired": 1, "bad_signature": 1,
    }
    assert requests_timed(after) == {"released": 1, "refused": 4}
    total = value(after, "keys_request_duration_seconds_sum", outcome="released")
    assert total is not None and total > 0
    # the +Inf bucket holds every observation
    assert value(after, "keys_request_duration_seconds_bucket", outcome="refused", le="+Inf") == 4
    assert value(after, "state_store_errors_total") == 0

    untouched = scrape(stack.clients[2])
    assert codes(untouched) == {}
    assert requests_timed(untouched) == {"released": 0, "refused": 0}


def test_other_routes_are_not_counted_as_key_requests(stack: Stack, entitled: int) -> None:
    stack.clients[1].get("/v1/releases")
    stack.clients[1].get("/v1/health")
    assert stack.clients[1].get("/v1/keys").status_code == 405
    samples = scrape(stack.clients[1])
    assert codes(samples) == {}
    assert requests_timed(samples) == {"released": 0, "refused": 0}


def test_answers_from_memory_on_the_event_loop_are_counted(stack: Stack, entitled: int) -> None:
    """A re-served release and a refusal answered from memory (no worker thread) count
    like the others. The node's head stays fresh for the test, so both take that path:
    `handle` (the thread path) runs only for the first release."""
    service = GatewayService(
        market=stack.market,
        state=GatewayState(SqliteDatabase(":memory:")),
        node=NodeKey(stack.dealt.shares[0], stack.node_accounts[0]),
        timing=Timing(head_ttl=3600.0),
    )
    service.tick(anchor=False)
    threaded: list[int] = []
    handle = service.releaser.handle

    def counted_handle(request: KeyRequest, signature: bytes) -> SignedRelease:
        threaded.append(request.debit_id)
        return handle(request, signature)

    service.releaser.handle = counted_handle  # type: ignore[method-assign]
    with TestClient(create_app(service, run_background=False)) as client:
        assert client.post("/v1/keys", json=stack.body(entitled, 1)).status_code == 200
        assert client.post("/v1/keys", json=stack.body(entitled, 1)).status_code == 200
        refused = client.post("/v1/keys", json=stack.body(entitled, 1, signer=stack.stranger))
        assert code_of(refused) == (403, "wrong_signer")
        samples = scrape(client)
    assert threaded == [entitled]  # one first release in a thread, the rest from memory
    assert codes(samples) == {"ok": 2, "wrong_signer": 1}
    assert requests_timed(samples) == {"released": 2, "refused": 1}


def _prepared_rows(stack: Stack, node: int) -> int:
    with stack.services[node].state.db.transaction() as tx:
        row = tx.one("SELECT COUNT(*) FROM prepared")
    assert row is not None
    return int(row[0])


def test_prepared_releases_and_anchor_backlog_follow_the_state(stack: Stack) -> None:
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    samples = scrape(stack.clients[1])
    assert value(samples, "prepared_shares") == _prepared_rows(stack, 1)
    assert value(samples, "releases_total") == 0
    assert value(samples, "anchor_backlog") == 0

    for version in (1, 2):
        assert stack.ask(1, stack.body(debit_id, version)).status_code == 200
    samples = scrape(stack.clients[1])
    assert value(samples, "releases_total") == 2
    assert value(samples, "anchor_backlog") == 2
    assert value(samples, "prepared_shares") == _prepared_rows(stack, 1)

    assert stack.services[1].anchorer.anchor_pending() is not None
    samples = scrape(stack.clients[1])
    assert value(samples, "releases_total") == 2
    assert value(samples, "anchor_backlog") == 0

    other = stack.debit(listing)
    stack.sync()
    assert stack.ask(1, stack.body(other, 1)).status_code == 200
    samples = scrape(stack.clients[1])
    assert value(samples, "releases_total") == 3
    assert value(samples, "anchor_backlog") == 1
    assert value(samples, "prepared_shares") == _prepared_rows(stack, 1)
    assert value(scrape(stack.clients[2]), "releases_total") == 0  # node 2 released nothing


def test_indexing_lag_counts_the_blocks_mined_since_the_last_sync(stack: Stack) -> None:
    """Never indexed: every block from the start block (0) up to the head is lag."""
    head = stack.market.w3.eth.block_number
    assert value(scrape(stack.clients[1]), "indexing_lag_blocks") == head + 1

    stack.sync()
    assert value(scrape(stack.clients[1]), "indexing_lag_blocks") == 0
    stack.dev.mine(5)
    assert value(scrape(stack.clients[1]), "indexing_lag_blocks") == 5
    stack.services[1].tick(anchor=False)
    assert value(scrape(stack.clients[1]), "indexing_lag_blocks") == 0
    assert value(scrape(stack.clients[2]), "indexing_lag_blocks") == 5  # not synced


def test_a_broken_state_database_leaves_metrics_answering_and_counts_errors(
    stack: Stack, entitled: int
) -> None:
    """The gauges that need the database are left out, the lag too (it needs the
    cursor); the scrape error counter and the state-store error counter rise."""
    stack.services[1].state.db.close()
    samples = scrape(stack.clients[1])
    for gauge in ("prepared_shares", "releases_total", "anchor_backlog", "indexing_lag_blocks"):
        assert value(samples, gauge) is None, gauge
    assert value(samples, "scrape_errors_total", source="state") == 1
    assert value(samples, "scrape_errors_total", source="chain") == 0
    assert value(scrape(stack.clients[1]), "scrape_errors_total", source="state") == 2

    assert code_of(stack.ask(1, stack.body(entitled, 1))) == (503, "state_unavailable")
    samples = scrape(stack.clients[1])
    assert value(samples, "state_store_errors_total") == 1
    assert codes(samples) == {"state_unavailable": 1}
    assert value(scrape(stack.clients[2]), "scrape_errors_total", source="state") == 0


def test_a_chain_that_does_not_answer_drops_only_the_lag(
    stack: Stack, entitled: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> int:
        raise ChainUnavailable("http://rpc.invalid", "ConnectionRefusedError")

    monkeypatch.setattr(stack.services[1].watcher.reader, "confirmed_head", down)
    samples = scrape(stack.clients[1])
    assert value(samples, "indexing_lag_blocks") is None
    assert value(samples, "scrape_errors_total", source="chain") == 1
    assert value(samples, "scrape_errors_total", source="state") == 0
    assert value(samples, "releases_total") == 0
    assert value(samples, "prepared_shares") == _prepared_rows(stack, 1)


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(stack: Stack) -> None:
    response = stack.clients[1].get(
        "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert f"# TYPE {P}keys_requests counter" in response.text


def test_metrics_is_not_part_of_the_wire_format_schema(stack: Stack) -> None:
    paths: dict[str, Any] = stack.clients[1].get("/openapi.json").json()["paths"]
    assert "/metrics" not in paths
