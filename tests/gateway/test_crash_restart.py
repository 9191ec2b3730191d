"""A gateway killed mid-step and restarted on the same state (a SQLite file or a Postgres
database) loses and duplicates nothing: each log processed exactly once, a gap-free
release log, the cursor resumed.

The kill is a BaseException raised inside the step (the watcher and releaser catch only
`Exception`, so it goes through them like a SIGKILL would stop them); the restarted node
is a new `GatewayService` with a new connection to the same state. A real SIGKILL of a
`gateway serve` process is tests/integration/gateway/test_sigkill.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

import marketplace.gateway.state as state_module
from marketplace.gateway.api import create_app
from marketplace.gateway.service import GatewayService
from tests.gateway.conftest import Stack
from tests.gateway.state_backends import StateBackend


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the gateway catches it."""


def _node(stack: Stack, backend: StateBackend, *, batch_blocks: int = 500) -> GatewayService:
    """Node 1's key on the state named "crashing": each call is a (re)start on it."""
    service = GatewayService(
        market=stack.market, state=backend.open("crashing"), node=stack.services[1].node
    )
    service.watcher.max_block_range = batch_blocks
    return service


def _busy_chain(stack: Stack) -> list[tuple[int, int]]:
    """A spread of market events over many blocks; returns the entitled (debit, version)s."""
    auto = stack.listing(auto_approve=True)
    manual = stack.listing(auto_approve=False)
    stack.publish(auto)
    stack.publish(manual)
    d1 = stack.debit(auto)
    d2 = stack.debit(manual)
    d3 = stack.debit(manual, buyer=stack.stranger)
    d4 = stack.debit(manual)
    stack.market.consent(stack.owner, d2)
    stack.market.reject(stack.owner, d3)
    stack.publish(auto)
    stack.market.cancel(stack.buyer, d4)
    stack.publish(manual)
    return [(d1, 1), (d1, 2), (d2, 1), (d2, 2)]


def _processed(service: GatewayService) -> list[tuple[Any, ...]]:
    with service.state.db.transaction() as tx:
        return tx.all("SELECT block_hash, tx_hash, log_index FROM processed_logs")


def _assert_indexed_exactly_once(stack: Stack, service: GatewayService) -> None:
    on_chain = stack.market.events().read(0)
    processed = _processed(service)
    assert len(processed) == len(on_chain) == len(set(processed))
    assert set(processed) == {e.ref.key for e in on_chain}
    cursor = service.state.cursor()
    head = stack.market.w3.eth.block_number
    assert cursor is not None and cursor.block_number == head
    assert cursor.block_hash == "0x" + bytes(stack.market.w3.eth.get_block(head)["hash"]).hex()


def _assert_release_log_is_sound(service: GatewayService) -> None:
    releases = service.state.releases_after(0)
    assert [r.seq for r in releases] == list(range(1, len(releases) + 1))
    pairs = [(r.debit_id, r.version) for r in releases]
    assert len(pairs) == len(set(pairs))


def _kill_on_call(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, n: int
) -> list[int]:
    """Make `owner.name` raise Killed on its n-th call (after the real call when n < 0)."""
    real: Callable[..., Any] = getattr(owner, name)
    calls = [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == abs(n) and n > 0:
            raise Killed
        result = real(*args, **kwargs)
        if calls[0] == abs(n) and n < 0:
            raise Killed
        return result

    monkeypatch.setattr(owner, name, wrapped)
    return calls


def test_killed_inside_the_index_transaction(
    stack: Stack, state_backend: StateBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    entitled = _busy_chain(stack)
    first = _node(stack, state_backend, batch_blocks=4)
    _kill_on_call(monkeypatch, state_module, "_insert_index_row", 4)
    with pytest.raises(Killed):
        first.watcher.catch_up()
    monkeypatch.undo()
    before = first.state.cursor()
    assert before is not None and before.block_number < stack.market.w3.eth.block_number

    restarted = _node(stack, state_backend, batch_blocks=4)
    assert restarted.state.cursor() == before
    restarted.tick(anchor=False)
    _assert_indexed_exactly_once(stack, restarted)
    for debit_id, version in entitled:
        assert restarted.state.prepared(debit_id, version) is not None


def test_killed_after_a_batch_committed_resumes_from_the_cursor(
    stack: Stack, state_backend: StateBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _busy_chain(stack)
    first = _node(stack, state_backend, batch_blocks=3)
    _kill_on_call(monkeypatch, first.state, "apply_logs", -3)
    with pytest.raises(Killed):
        first.watcher.catch_up()
    committed = first.state.cursor()
    assert committed is not None
    processed_before = set(_processed(first))

    restarted = _node(stack, state_backend, batch_blocks=3)
    reads: list[int] = []
    real_read = restarted.watcher.reader.read
    monkeypatch.setattr(
        restarted.watcher.reader, "read",
        lambda first_block, *a, **k: reads.append(first_block) or real_read(first_block, *a, **k),
    )
    restarted.tick(anchor=False)
    assert reads[0] == committed.block_number + 1
    _assert_indexed_exactly_once(stack, restarted)
    assert processed_before <= set(_processed(restarted))


def test_killed_while_preparing_shares(
    stack: Stack, state_backend: StateBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The logs are committed before shares are prepared; a request makes the missing ones."""
    entitled = _busy_chain(stack)
    first = _node(stack, state_backend)
    _kill_on_call(monkeypatch, first.watcher, "on_event", 2)
    with pytest.raises(Killed):
        first.watcher.catch_up()

    restarted = _node(stack, state_backend)
    restarted.tick(anchor=False)
    _assert_indexed_exactly_once(stack, restarted)
    client = TestClient(create_app(restarted, run_background=False))
    for debit_id, version in entitled:
        signer = stack.buyer
        response = client.post("/v1/keys", json=stack.body(debit_id, version, signer=signer))
        assert response.status_code == 200, response.json()
    _assert_release_log_is_sound(restarted)
    assert len(restarted.state.releases_after(0)) == len(entitled)


@pytest.mark.parametrize(
    ("target", "call"),
    [("_signed", 1), ("receipt_of", 1)],
    ids=["while signing (before the append commits)", "after the append, before answering"],
)
def test_killed_between_release_steps(
    stack: Stack,
    state_backend: StateBackend,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    call: int,
) -> None:
    entitled = _busy_chain(stack)
    first = _node(stack, state_backend)
    first.tick(anchor=False)
    client = TestClient(create_app(first, run_background=False))
    assert client.post("/v1/keys", json=stack.body(*entitled[0])).status_code == 200
    _kill_on_call(monkeypatch, first.releaser, target, call)
    with pytest.raises(Killed):
        client.post("/v1/keys", json=stack.body(*entitled[1]))
    monkeypatch.undo()
    survived = first.state.releases_after(0)

    restarted = _node(stack, state_backend)
    client = TestClient(create_app(restarted, run_background=False))
    answers = [client.post("/v1/keys", json=stack.body(d, v)).json() for d, v in entitled]
    _assert_release_log_is_sound(restarted)
    releases = restarted.state.releases_after(0)
    assert [(r.debit_id, r.version) for r in releases] == entitled
    # whatever was committed before the kill is served unchanged after it
    for before in survived:
        after = releases[before.seq - 1]
        assert after == before
        assert answers[before.seq - 1]["receiptSignature"] == "0x" + before.signature.hex()


def test_restart_of_a_clean_node_does_not_reprocess(
    stack: Stack, state_backend: StateBackend
) -> None:
    _busy_chain(stack)
    first = _node(stack, state_backend)
    first.tick(anchor=False)
    first.state.db.close()
    restarted = _node(stack, state_backend)
    seen: list[Any] = []
    restarted.watcher.on_event = seen.append
    assert restarted.watcher.catch_up() == 0
    assert seen == []
    stack.publish(stack.listing(auto_approve=True))
    assert restarted.watcher.catch_up() == 2  # ListingCreated, VersionPublished
    _assert_indexed_exactly_once(stack, restarted)
