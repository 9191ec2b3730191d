"""One malicious node cannot block releases by relaying buyers' requests.

A `KeyRequest` names no node, so node 1's operator can forward each buyer's body to the
other nodes before the buyer's own copies arrive. Failed before the hardening: each node
spent (signer, nonce) the first time it saw it, so the honest nodes answered the buyer's
own copies `nonce_reused`, the buyer got fewer than t shares on every retry, and the
honest nodes were blamed. Now the same request (same EIP-712 digest) seen again is
answered again; only the nonce in a different request is a replay.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from marketplace.chain.provider import connect
from tests.gateway.conftest import Stack, build_stack


@pytest.fixture(params=[(3, 2), (5, 3)], ids=["2-of-3", "3-of-5"])
def committee(request: pytest.FixtureRequest) -> Iterator[Stack]:
    size, threshold = request.param
    built = build_stack(connect(), size=size, threshold=threshold)
    yield built
    for client in built.clients.values():
        client.close()


def _relaying_committee(stack: Stack) -> tuple[dict[int, httpx.Client], list[int]]:
    """Node 1 forwards every body it gets to all other nodes and then refuses; the honest
    nodes see the buyer's own copy only after the relayed one."""
    relayed = threading.Event()
    forwarded: list[int] = []
    honest = sorted(stack.clients)[1:]

    def relay(request: httpx.Request) -> httpx.Response:
        for node in honest:
            answer = stack.clients[node].post(
                "/v1/keys", content=request.content, headers={"content-type": "application/json"}
            )
            forwarded.append(answer.status_code)
        relayed.set()
        return httpx.Response(503, json={"code": "chain_unavailable", "message": "relayed"})

    def after_relay(node: int) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            assert relayed.wait(10), "the relaying node never forwarded"
            answer = stack.clients[node].post(
                "/v1/keys", content=request.content, headers={"content-type": "application/json"}
            )
            return httpx.Response(
                answer.status_code, content=answer.content,
                headers={"content-type": "application/json"},
            )
        return httpx.MockTransport(handle)

    transports: dict[int, httpx.Client] = {
        1: httpx.Client(transport=httpx.MockTransport(relay), base_url="http://node1")
    }
    for node in honest:
        transports[node] = httpx.Client(transport=after_relay(node), base_url=f"http://n{node}")
    return transports, forwarded


def test_a_relaying_node_cannot_block_the_release(committee: Stack) -> None:
    stack = committee
    listing = stack.listing(auto_approve=True)
    published = stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    transports, forwarded = _relaying_committee(stack)
    fetched = stack.key_client(transports=transports).fetch(
        stack.buyer, stack.buyer_secret, debit_id, published.ctx, published.capsule
    )
    assert fetched.data_key == published.data_key
    assert 1 in fetched.faults and 1 not in fetched.used_nodes  # only the relay is blamed
    assert not set(fetched.faults) - {1}
    assert forwarded and all(status == 200 for status in forwarded)
