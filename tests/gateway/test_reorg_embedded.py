"""Reorgs on the embedded chain (eth-tester snapshots), so the default suite covers them;
tests/integration/gateway/test_reorg.py runs the same on anvil."""

from __future__ import annotations

import hashlib

import pytest

from marketplace.keyrelease.buyer_key import BuyerSecretKey
from tests.gateway.conftest import Stack, code_of


@pytest.mark.parametrize("blocks_after", [2, 1, 0], ids=["longer", "same height", "shorter"])
def test_reorged_consent_is_never_served(stack: Stack, blocks_after: int) -> None:
    listing = stack.listing(auto_approve=False)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    snapshot = stack.dev.snapshot()
    stack.market.consent(stack.owner, debit_id)
    stack.sync()
    assert stack.services[1].state.prepared(debit_id, 1) is not None
    stack.dev.revert(snapshot)
    stack.dev.mine(blocks_after)
    # before the watcher notices, the request path itself must refuse
    assert code_of(stack.ask(1, stack.body(debit_id, 1))) == (403, "not_entitled")
    stack.sync()
    for node, service in stack.services.items():
        assert service.state.prepared(debit_id, 1) is None
        assert code_of(stack.ask(node, stack.body(debit_id, 1))) == (403, "not_entitled")
        assert service.state.releases_after(0) == []
        cursor = service.state.cursor()
        assert cursor is not None and cursor.block_number == stack.market.w3.eth.block_number


def reorg_gives_the_debit_to_another_buyer(stack: Stack, blocks_after: int) -> None:
    """Buyer X's debit N is indexed; the chain reorganises and on the new branch buyer Y
    gets id N; X asks before any watcher noticed.

    Failed before the hardening: the node took the buyer from its index and asked only
    `isEntitled(N, version)` (true: Y's debit is active), so X received every node's share
    of a debit it does not have, and Y, who paid, was refused for ever (releases were
    unique per (debit, version)). Now a first release confirms the debit's buyer and
    listing at the confirmed head, and that the indexed log's block is still canonical;
    releases are keyed by (debit, version, buyer key).
    """
    listing = stack.listing(auto_approve=True)
    published = stack.publish(listing)
    stack.sync()
    snapshot = stack.dev.snapshot()
    debit_x = stack.debit(listing)
    stack.sync()
    assert all(s.state.debit(debit_x).buyer == stack.buyer.address  # type: ignore[union-attr]
               for s in stack.services.values())
    stack.dev.revert(snapshot)
    debit_y = stack.debit(listing, buyer=stack.stranger)
    assert debit_y == debit_x
    stack.dev.mine(blocks_after)

    for node, service in stack.services.items():
        status, code = code_of(stack.ask(node, stack.body(debit_x, published.version)))
        assert (status, code) in {(403, "wrong_signer"), (403, "not_entitled")}
        assert service.state.releases_after(0) == []

    y_secret = BuyerSecretKey.from_account(stack.stranger, stack.domain)
    fetched = stack.key_client().fetch(
        stack.stranger, y_secret, debit_y, published.ctx, published.capsule
    )
    assert fetched.data_key == published.data_key
    key_hash = hashlib.sha256(y_secret.public_key().key).digest()
    for service in stack.services.values():
        released = service.state.releases_after(0)
        assert [(r.debit_id, r.buyer, r.buyer_key_hash) for r in released] in (
            [], [(debit_y, stack.stranger.address, key_hash)],
        )
    assert sum(len(s.state.releases_after(0)) for s in stack.services.values()) >= 2


@pytest.mark.parametrize("blocks_after", [2, 0], ids=["longer", "same height"])
def test_a_reorg_cannot_hand_a_debit_id_to_another_buyer(stack: Stack, blocks_after: int) -> None:
    reorg_gives_the_debit_to_another_buyer(stack, blocks_after)


def test_a_debit_indexed_on_demand_then_reorganised_away_is_replaced(stack: Stack) -> None:
    """A debit a request indexed ahead of the watcher, from a block the chain then drops
    before the watcher reaches it: the watcher's own log for the new branch's debit with
    that id replaces the row (the watcher's cursor never saw the dropped block, so no
    rewind would remove it), and the new buyer is served."""
    listing = stack.listing(auto_approve=True)
    published = stack.publish(listing)
    stack.sync()
    snapshot = stack.dev.snapshot()
    debit_x = stack.debit(listing)
    assert stack.ask(1, stack.body(debit_x, 1)).status_code == 200  # indexed on demand
    stack.dev.revert(snapshot)
    debit_y = stack.debit(listing, buyer=stack.stranger)
    assert debit_y == debit_x
    stack.dev.mine(1)
    stack.sync()
    indexed = stack.services[1].state.debit(debit_y)
    assert indexed is not None and indexed.buyer == stack.stranger.address
    secret = BuyerSecretKey.from_account(stack.stranger, stack.domain)
    fetched = stack.key_client().fetch(
        stack.stranger, secret, debit_y, published.ctx, published.capsule
    )
    assert fetched.data_key == published.data_key
