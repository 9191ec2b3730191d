"""A gateway whose chain node is gone refuses with `chain_unavailable` (503)."""

from __future__ import annotations

import pytest

from marketplace.chain.provider import connect
from marketplace.keyclient import KeyFetchFailed
from scripts.servers.anvil import start_anvil
from tests.gateway.conftest import build_stack, code_of

pytestmark = pytest.mark.integration


def test_requests_get_503_once_the_chain_is_gone() -> None:
    with start_anvil() as url:
        stack = build_stack(connect(url))
        listing = stack.listing(auto_approve=True)
        published = stack.publish(listing)
        debit_id = stack.debit(listing)
        stack.sync()
        assert stack.clients[1].get("/v1/health").status_code == 200
    # anvil is dead; the gateways still hold their index and prepared shares
    assert stack.services[1].state.prepared(debit_id, 1) is not None

    response = stack.ask(1, stack.body(debit_id, 1))
    assert code_of(response) == (503, "chain_unavailable")
    assert "127.0.0.1" not in response.json()["message"]
    assert stack.services[1].state.releases_after(0) == []

    # a debit the node has not indexed needs the chain too
    assert code_of(stack.ask(2, stack.body(debit_id + 1, 1))) == (503, "chain_unavailable")

    health = stack.clients[1].get("/v1/health")
    assert health.status_code == 503
    assert (health.json()["status"], health.json()["chain"]) == ("degraded", "unavailable")

    with pytest.raises(KeyFetchFailed) as failed:
        stack.fetch(published, debit_id)
    assert failed.value.faults == {
        i: "refused with chain_unavailable (HTTP 503)" for i in (1, 2, 3)
    }
