"""Hostile inputs to one node: low-order buyer keys, ids beyond any debit, and free
listings used to amplify ahead-of-time work. Each reproduces an attack found by the
adversarial review of the gateway; the docstrings say what happened before the fix."""

from __future__ import annotations

import pytest

from marketplace.gateway import releaser as releaser_module
from marketplace.gateway.releaser import KeyReleaser
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from tests.gateway.conftest import PERIOD, Stack, code_of

#: u = 1: a point of order 4 on Curve25519 (libsodium refuses to seal to it).
LOW_ORDER_KEY = (1).to_bytes(32, "little")


def test_a_low_order_buyer_key_gets_its_code_and_stops_nothing(stack: Stack) -> None:
    """Failed before: the contract accepts any non-zero key; the node's ahead-of-time
    sealing raised for it, which ended preparation for the debits indexed after it, and
    the buyer's request crashed the handler (a plain-text 500)."""
    listing = stack.listing(auto_approve=True)
    published = stack.publish(listing)
    bad = stack.market.request_debit(
        stack.buyer, listing, periods=1, buyer_key=LOW_ORDER_KEY
    ).value
    good = stack.debit(listing, buyer=stack.stranger)
    stack.sync()
    for node, service in stack.services.items():
        assert code_of(stack.ask(node, stack.body(bad, 1))) == (409, "invalid_buyer_key")
        assert service.state.prepared(bad, 1) is None
        assert service.state.prepared(good, 1) is not None  # the next debit was prepared
        assert service.state.releases_after(0) == []
    secret = BuyerSecretKey.from_account(stack.stranger, stack.domain)
    fetched = stack.key_client().fetch(
        stack.stranger, secret, good, published.ctx, published.capsule
    )
    assert fetched.data_key == published.data_key


def test_the_wrong_signer_learns_nothing_about_the_key(stack: Stack) -> None:
    """The low-order refusal comes after the signer check: only the debit's buyer sees it."""
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    bad = stack.market.request_debit(stack.buyer, listing, periods=1, buyer_key=LOW_ORDER_KEY)
    body = stack.body(bad.value, 1, signer=stack.stranger)
    assert code_of(stack.ask(1, body)) == (403, "wrong_signer")


@pytest.mark.parametrize("debit_id", [2**63, 2**63 + 1, 2**255, 2**256 - 1])
def test_ids_beyond_any_debit_are_unknown_without_the_chain(
    stack: Stack, debit_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed before: an id >= 2^63 reached SQLite, whose driver raised OverflowError:
    a plain-text 500. Now it is `unknown_debit` before any state or chain read."""
    releaser = stack.services[1].releaser

    def no_chain(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("an impossible id cost a chain read")

    monkeypatch.setattr(releaser, "head", no_chain)
    monkeypatch.setattr(releaser.watcher, "poll_once", no_chain)
    response = stack.ask(1, stack.body(debit_id, 1))
    assert code_of(response) == (404, "unknown_debit")


def test_ids_above_the_debit_count_cost_one_count_read_per_head(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed before: every unknown id cost a poll of the chain's logs and a `getDebit`
    call. Now the node reads `debitCount` at most once per confirmed head."""
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    known = stack.debit(listing)
    stack.sync()
    service = stack.services[1]
    counts: list[int] = []
    real_count = service.market.debit_count

    def counted(**kwargs: object) -> int:
        counts.append(1)
        return real_count(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service.market, "debit_count", counted)
    polls: list[int] = []
    monkeypatch.setattr(service.watcher, "poll_once", lambda: polls.append(1) or 0)
    for offset in range(1, 21):
        assert code_of(stack.ask(1, stack.body(known + offset, 1))) == (404, "unknown_debit")
    assert len(counts) == 1 and polls == []


def test_releases_after_is_bounded(stack: Stack) -> None:
    """Failed before: `after` >= 2^63 reached SQLite (OverflowError, a plain-text 500)."""
    client = stack.clients[1]
    for after in (2**63, 2**64, -1):
        response = client.get("/v1/releases", params={"after": after})
        assert code_of(response) == (422, "malformed")
    assert client.get("/v1/releases", params={"after": 2**63 - 1}).status_code == 200


def _free_listing(stack: Stack) -> int:
    return stack.market.create_listing(
        stack.owner, price_per_period=0, period_seconds=PERIOD, auto_approve=True
    ).value


def test_free_debits_cannot_make_a_node_prepare_without_bound(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed before: shares were prepared for every (debit, version) pair of a listing
    inside the watcher's lock: N free debits and V versions cost each node N x V
    `isEntitled` calls, sealed shares and rows, and a request that needed the index waited
    behind all of it. Now each event queues at most PREPARE_PER_EVENT pairs, the queue and
    the prepared table are capped, and the work runs outside the watcher's lock."""
    monkeypatch.setattr(releaser_module, "PREPARE_PER_EVENT", 3)
    monkeypatch.setattr(releaser_module, "PREPARED_MAX_ROWS", 12)
    listing = _free_listing(stack)
    for _ in range(4):
        stack.publish(listing)
    debits = [stack.debit(listing) for _ in range(8)]
    stack.publish(listing)  # version 5: queues only the 3 newest debits

    service = stack.services[1]
    asked: list[tuple[int, int]] = []
    real_entitled = KeyReleaser.entitled

    def counted(self: KeyReleaser, debit_id: int, version: int, head: object) -> bool:
        asked.append((debit_id, version))
        return real_entitled(self, debit_id, version, head)  # type: ignore[arg-type]

    monkeypatch.setattr(KeyReleaser, "entitled", counted)
    service.watcher.catch_up()
    assert asked == []  # indexing only queues: no chain reads, no crypto under its lock
    events = 5 + 8  # versions published, debits requested (auto-approved)
    assert service.releaser.pending_preparations() <= events * 3
    service.releaser.prepare_pending()
    assert len(asked) <= events * 3
    with service.state.db.transaction() as tx:
        rows = tx.one("SELECT COUNT(*) FROM prepared")
    assert rows is not None and 0 < rows[0] <= 12
    # an honest buyer still gets every version, prepared or not
    for version in (1, 5):
        assert stack.ask(1, stack.body(debits[0], version)).status_code == 200


def test_prepared_shares_expire_and_are_dropped_once_released(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    state = stack.services[1].state
    assert state.prepared(debit_id, 1) is not None
    assert stack.ask(1, stack.body(debit_id, 1)).status_code == 200
    assert state.prepared(debit_id, 1) is None  # served: the release log keeps it now

    other = stack.debit(listing)
    stack.sync()
    assert state.prepared(other, 1) is not None
    monkeypatch.setattr(releaser_module, "PREPARED_MAX_AGE_BLOCKS", 2)
    stack.dev.mine(3)
    stack.services[1].releaser.prepare_pending()
    assert state.prepared(other, 1) is None  # expired; made again on request
    assert stack.ask(1, stack.body(other, 1)).status_code == 200


def test_a_new_debit_is_served_while_the_watcher_is_busy(stack: Stack) -> None:
    """Failed before: a request for a debit the watcher had not indexed yet polled the
    chain through the watcher, waiting for its lock, which a flood of other logs (and,
    before, the shares prepared for them) could hold for seconds. Now the node finds that
    one debit's log itself."""
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    stack.sync()
    debit_id = stack.debit(listing)
    watcher = stack.services[1].watcher
    with watcher._lock:  # the watcher is busy for as long as this test wants
        response = stack.ask(1, stack.body(debit_id, 1))
    assert response.status_code == 200
    assert stack.services[1].state.debit(debit_id) is not None
