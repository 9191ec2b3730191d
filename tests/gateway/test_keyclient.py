"""The buyer's key client against the in-process committee: any t nodes suffice, a bad
node is named and never used, fewer than t valid shares never yield the key."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from marketplace.committee import NodeKey
from marketplace.gateway.api import create_app
from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.releaser import MAX_EXPIRY_AHEAD
from marketplace.gateway.service import GatewayService
from marketplace.gateway.state import GatewayState
from marketplace.keyclient import KeyFetchFailed
from marketplace.keyrelease.capsule import open_capsule
from marketplace.keyrelease.combine import combine
from marketplace.keyrelease.errors import CapsuleOpenFailed, NotEnoughShares
from marketplace.keyrelease.group import SecretScalar
from marketplace.keyrelease.keys import NodeShare
from marketplace.keyrelease.share import open_sealed_share
from tests.gateway.conftest import Published, Stack
from tests.gateway.state_backends import StateBackend


@dataclass
class Sold:
    stack: Stack
    published: Published
    debit_id: int


@pytest.fixture
def state_backend(tmp_path: Path) -> Iterator[StateBackend]:
    """SQLite only: these tests are about the client; the gateways' state is proven on both
    backends by the other gateway tests."""
    backend = StateBackend("sqlite", tmp_path)
    yield backend
    backend.close()


@pytest.fixture
def sold(stack: Stack) -> Sold:
    listing = stack.listing(auto_approve=True)
    published = stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    return Sold(stack, published, debit_id)


def _fetch(sold: Sold, nodes: list[int] | None = None, **transports: httpx.Client) -> Any:
    client = sold.stack.key_client(
        nodes, transports={int(k.removeprefix("n")): v for k, v in transports.items()}
    )
    return client.fetch(
        sold.stack.buyer, sold.stack.buyer_secret, sold.debit_id, sold.published.ctx,
        sold.published.capsule,
    )


def _through(
    node: TestClient, edit: Callable[[dict[str, Any]], None] | None = None,
    before: Callable[[], None] = lambda: None, after: Callable[[], None] = lambda: None,
) -> httpx.Client:
    """An httpx client that forwards to `node`, optionally rewriting a 200 answer."""

    def handle(request: httpx.Request) -> httpx.Response:
        before()
        try:
            answer = node.post(request.url.path, content=request.content,
                               headers={"Content-Type": "application/json"})
            if answer.status_code != 200 or edit is None:
                return httpx.Response(answer.status_code, content=answer.content)
            payload = answer.json()
            edit(payload)
            return httpx.Response(200, json=payload)
        finally:
            after()

    return httpx.Client(transport=httpx.MockTransport(handle), base_url="http://gateway")


def _flip_byte(payload: dict[str, Any]) -> None:
    sealed = bytearray(base64.b64decode(payload["sealedShare"]))
    sealed[40] ^= 0x01
    payload["sealedShare"] = base64.b64encode(bytes(sealed)).decode()


def _down(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _refusing(code: str, status: int) -> httpx.Client:
    body = {"code": code, "message": "no"}
    return httpx.Client(
        transport=httpx.MockTransport(lambda _: httpx.Response(status, json=body)),
        base_url="http://gateway",
    )


@pytest.mark.parametrize("pair", list(itertools.combinations((1, 2, 3), 2)))
def test_any_two_of_three_nodes_suffice(sold: Sold, pair: tuple[int, int]) -> None:
    fetched = _fetch(sold, list(pair))
    assert fetched.data_key == sold.published.data_key
    assert fetched.used_nodes == pair
    assert set(fetched.receipts) == set(pair)
    assert fetched.faults == {}


def _bad_first(stack: Stack, bad: int, bad_client: httpx.Client) -> dict[int, httpx.Client]:
    """Good nodes answer only once the bad one has, so its answer is always examined."""
    answered = threading.Event()
    wrapped = _through_client(bad_client, after=answered.set)
    good = {
        i: _through(stack.clients[i], before=lambda: answered.wait(30))
        for i in (1, 2, 3) if i != bad
    }
    return {bad: wrapped, **good}


def _through_client(client: httpx.Client, after: Callable[[], None]) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        try:
            answer = client.post(request.url.path, content=request.content,
                                 headers={"Content-Type": "application/json"})
            return httpx.Response(answer.status_code, content=answer.content)
        finally:
            after()

    return httpx.Client(transport=httpx.MockTransport(handle), base_url="http://gateway")


def _fetch_with(sold: Sold, clients: dict[int, httpx.Client]) -> Any:
    return _fetch(sold, sorted(clients), **{f"n{i}": c for i, c in clients.items()})


def test_tampered_share_is_named_and_the_other_two_suffice(sold: Sold) -> None:
    stack = sold.stack
    clients = _bad_first(stack, 2, _through(stack.clients[2], _flip_byte))
    fetched = _fetch_with(sold, clients)
    assert fetched.data_key == sold.published.data_key
    assert fetched.used_nodes == (1, 3)
    assert set(fetched.faults) == {2}
    assert "open" in fetched.faults[2]


def test_node_with_the_wrong_share_secret_is_named(sold: Sold) -> None:
    """A node whose s_i is not the one behind Y_i in the contract: its proof fails."""
    stack = sold.stack
    impostor = GatewayService(
        market=stack.market,
        state=GatewayState(SqliteDatabase(":memory:")),
        node=NodeKey(NodeShare.from_secret(1, SecretScalar.random()), stack.node_accounts[0]),
    )
    impostor_client = TestClient(create_app(impostor, run_background=False))
    clients = _bad_first(stack, 1, _through(impostor_client))
    fetched = _fetch_with(sold, clients)
    assert fetched.data_key == sold.published.data_key
    assert fetched.used_nodes == (2, 3)
    assert fetched.faults == {1: "node 1 returned a share with an invalid proof"}


def test_node_answering_with_another_nodes_share_is_named(sold: Sold) -> None:
    stack = sold.stack
    theirs = stack.ask(2, stack.body(sold.debit_id, 1)).json()["sealedShare"]

    def swap(payload: dict[str, Any]) -> None:
        payload["sealedShare"] = theirs

    clients = _bad_first(stack, 1, _through(stack.clients[1], swap))
    fetched = _fetch_with(sold, clients)
    assert fetched.data_key == sold.published.data_key
    assert set(fetched.faults) == {1}
    assert "node 2's share" in fetched.faults[1]


def test_node_answering_with_a_share_for_another_version_is_named(sold: Sold) -> None:
    stack = sold.stack
    v2 = stack.publish(sold.published.listing_id)
    stack.sync()
    old = stack.ask(3, stack.body(sold.debit_id, v2.version)).json()["sealedShare"]

    def replay(payload: dict[str, Any]) -> None:
        payload["sealedShare"] = old

    clients = _bad_first(stack, 3, _through(stack.clients[3], replay))
    fetched = _fetch_with(sold, clients)
    assert fetched.data_key == sold.published.data_key
    assert set(fetched.faults) == {3}
    assert "version 2" in fetched.faults[3]


@pytest.mark.parametrize(
    "garbage",
    [{"sealedShare": "not base64!"}, {"node": 1}, {"sealedShare": base64.b64encode(b"x").decode()}],
)
def test_unusable_answer_is_named(sold: Sold, garbage: dict[str, Any]) -> None:
    bad = httpx.Client(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, json=garbage)),
        base_url="http://gateway",
    )
    clients = _bad_first(sold.stack, 2, bad)
    fetched = _fetch_with(sold, clients)
    assert fetched.data_key == sold.published.data_key
    assert set(fetched.faults) == {2}


def test_two_nodes_down_or_refusing_fails_naming_both(sold: Sold) -> None:
    down = httpx.Client(transport=httpx.MockTransport(_down), base_url="http://gateway")
    with pytest.raises(KeyFetchFailed) as failed:
        _fetch(sold, None, n2=down, n3=_refusing("chain_unavailable", 503))
    assert (failed.value.have, failed.value.need) == (1, 2)
    assert set(failed.value.faults) == {2, 3}
    assert "unreachable" in failed.value.faults[2]
    assert "chain_unavailable" in failed.value.faults[3]
    assert "node 2" in str(failed.value) and "node 3" in str(failed.value)


def test_gateway_answering_html_is_a_fault(sold: Sold) -> None:
    html = httpx.Client(
        transport=httpx.MockTransport(lambda _: httpx.Response(502, text="<html>bad gateway")),
        base_url="http://gateway",
    )
    with pytest.raises(KeyFetchFailed) as failed:
        _fetch(sold, None, n1=html, n3=html)
    assert set(failed.value.faults) == {1, 3}
    assert "not JSON" in failed.value.faults[1]


@pytest.mark.parametrize(
    ("answer", "fault"),
    [(b"[" * 200_000, "larger than"), (b"[" * 3000, "not JSON")],
)
def test_hostile_gateway_answers_are_faults_not_crashes(
    sold: Sold, answer: bytes, fault: str
) -> None:
    """An answer too large to be real is not read whole; nesting that would exhaust the
    stack in json.loads (a segfault at this depth) is refused; the others still serve."""
    hostile = httpx.Client(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, content=answer)),
        base_url="http://gateway",
    )
    fetched = _fetch(sold, None, n2=hostile)
    assert fetched.data_key == sold.published.data_key
    with pytest.raises(KeyFetchFailed) as failed:
        _fetch(sold, None, n1=hostile, n2=hostile)
    assert fault in failed.value.faults[1]


def test_every_node_refusing_names_every_node(stack: Stack) -> None:
    listing = stack.listing(auto_approve=False)
    published = stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    with pytest.raises(KeyFetchFailed) as failed:
        stack.fetch(published, debit_id)
    assert failed.value.have == 0
    assert failed.value.faults == {
        i: "refused with not_entitled (HTTP 403)" for i in (1, 2, 3)
    }


def test_one_node_alone_never_yields_the_key(sold: Sold) -> None:
    stack = sold.stack
    for node in (1, 2, 3):
        with pytest.raises(KeyFetchFailed) as failed:
            _fetch(sold, [node])
        assert (failed.value.have, failed.value.need) == (1, 2)
    # the buyer holding t-1 verified shares cannot combine them either
    sealed = base64.b64decode(stack.ask(1, stack.body(sold.debit_id, 1)).json()["sealedShare"])
    share = open_sealed_share(sealed, stack.buyer_secret, sold.debit_id, 1).verify(
        stack.dealt.keys.share_key(1), sold.published.capsule
    )
    with pytest.raises(NotEnoughShares):
        combine(stack.dealt.keys, sold.published.capsule, sold.published.ctx, [share])
    # nor use D_1 as if it were Z
    with pytest.raises(CapsuleOpenFailed):
        open_capsule(sold.published.capsule, sold.published.ctx, share.d_point)


def test_fetch_does_not_wait_for_a_hanging_node(sold: Sold) -> None:
    """Two answers are enough: a node that never answers must not hold the buyer up."""
    release = threading.Event()
    finished = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        release.wait(30)
        finished.set()
        return httpx.Response(503, json={"code": "chain_unavailable", "message": ""})

    hanging = httpx.Client(transport=httpx.MockTransport(hang), base_url="http://gateway")
    try:
        fetched = _fetch(sold, None, n3=hanging)
        assert not finished.is_set()
        assert fetched.data_key == sold.published.data_key
        assert fetched.used_nodes == (1, 2)
    finally:
        release.set()


def test_one_signed_request_goes_to_every_node(sold: Sold) -> None:
    stack = sold.stack
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def record(node: int) -> httpx.Client:
        def handle(request: httpx.Request) -> httpx.Response:
            with lock:
                seen.append(json.loads(request.content))
            answer = stack.clients[node].post("/v1/keys", content=request.content,
                                              headers={"Content-Type": "application/json"})
            return httpx.Response(answer.status_code, content=answer.content)
        return httpx.Client(transport=httpx.MockTransport(handle), base_url="http://gateway")

    _fetch(sold, None, n1=record(1), n2=record(2), n3=record(3))
    assert len(seen) >= 2
    assert all(body == seen[0] for body in seen)
    assert 0 < seen[0]["request"]["expiry"] - time.time() <= MAX_EXPIRY_AHEAD
