"""Reorgs and confirmation depth on a real anvil.

A reorg is made with `evm_snapshot` / `evm_revert`: the consent's block is dropped and the
chain moves on without it. The gateways must forget what they derived from the dropped
blocks (index rows, processed logs, prepared shares) and must never serve the release.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from marketplace.chain.errors import ChainError
from marketplace.chain.provider import connect
from marketplace.eip712 import KeyRequest, sign
from tests.gateway.conftest import Stack, build_stack, code_of
from tests.gateway.test_reorg_embedded import reorg_gives_the_debit_to_another_buyer

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(anvil_url: str) -> Iterator[Stack]:
    built = build_stack(connect(anvil_url))
    yield built
    for client in built.clients.values():
        client.close()


@pytest.fixture
def deep(anvil_url: str) -> Iterator[Stack]:
    built = build_stack(connect(anvil_url), confirmations=2)
    yield built
    for client in built.clients.values():
        client.close()


def _request(stack: Stack, debit_id: int) -> tuple[KeyRequest, bytes]:
    request = KeyRequest(debit_id, 1, int(time.time()) + 60, os.urandom(32))
    return request, sign(stack.buyer, stack.domain, request)


def _processed(stack: Stack, node: int) -> set[tuple[Any, ...]]:
    with stack.services[node].state.db.transaction() as tx:
        return set(tx.all("SELECT block_hash, tx_hash, log_index FROM processed_logs"))


def _consented_then_reorged(stack: Stack, blocks_after: int) -> tuple[int, str]:
    """A debit consented, indexed and prepared, then the consent reorganised away."""
    listing = stack.listing(auto_approve=False)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    snapshot = stack.dev.snapshot()
    consent = stack.market.consent(stack.owner, debit_id)
    stack.sync()
    for service in stack.services.values():
        assert service.state.prepared(debit_id, 1) is not None
    assert any(key[1] == consent.tx_hash for key in _processed(stack, 1))
    stack.dev.revert(snapshot)
    stack.dev.mine(blocks_after)
    assert not stack.market.is_entitled(debit_id, 1)
    return debit_id, consent.tx_hash


def _assert_rewound(stack: Stack, debit_id: int, consent_tx: str) -> None:
    on_chain = {e.ref.key for e in stack.market.events().read(0)}
    for node, service in stack.services.items():
        assert service.state.prepared(debit_id, 1) is None
        processed = _processed(stack, node)
        assert not any(key[1] == consent_tx for key in processed)
        assert processed == on_chain
        cursor = service.state.cursor()
        assert cursor is not None and cursor.block_number == stack.market.w3.eth.block_number


@pytest.mark.parametrize("blocks_after", [3, 1, 0], ids=["longer", "same height", "shorter"])
def test_reorged_consent_is_rewound_and_never_served(stack: Stack, blocks_after: int) -> None:
    debit_id, consent_tx = _consented_then_reorged(stack, blocks_after)
    stack.sync()
    _assert_rewound(stack, debit_id, consent_tx)
    for node in (1, 2, 3):
        assert code_of(stack.ask(node, stack.body(debit_id, 1))) == (403, "not_entitled")
        assert stack.services[node].state.releases_after(0) == []


@pytest.mark.parametrize("blocks_after", [3, 1, 0], ids=["longer", "same height", "shorter"])
def test_request_right_after_a_reorg_is_refused(stack: Stack, blocks_after: int) -> None:
    """Before the watcher has noticed: the request path must not trust what it cached."""
    debit_id, _ = _consented_then_reorged(stack, blocks_after)
    for node in (1, 2, 3):
        assert code_of(stack.ask(node, stack.body(debit_id, 1))) == (403, "not_entitled")
        assert stack.services[node].state.releases_after(0) == []


def test_consent_again_after_the_reorg_is_served(stack: Stack) -> None:
    debit_id, _ = _consented_then_reorged(stack, 2)
    stack.sync()
    stack.market.consent(stack.owner, debit_id)
    stack.sync()
    assert stack.services[1].state.prepared(debit_id, 1) is not None
    answer = stack.ask(1, stack.body(debit_id, 1))
    assert answer.status_code == 200
    assert answer.json()["receipt"]["block"] == stack.market.w3.eth.block_number


def test_consent_is_acted_on_only_two_blocks_deep(deep: Stack) -> None:
    stack = deep
    listing = stack.listing(auto_approve=False)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.dev.mine(2)
    stack.sync()
    assert stack.services[1].state.debit(debit_id) is not None

    consent = stack.market.consent(stack.owner, debit_id)
    assert stack.market.is_entitled(debit_id, 1)  # true at the tip...
    for blocks in (0, 1):
        stack.dev.mine(blocks)
        stack.sync()
        for node, service in stack.services.items():
            assert service.state.prepared(debit_id, 1) is None
            assert code_of(stack.ask(node, stack.body(debit_id, 1))) == (403, "not_entitled")
    # ...but acted on only once two more blocks sit on top of it
    stack.dev.mine(1)
    assert stack.market.w3.eth.block_number == consent.block_number + 2
    stack.sync()
    for service in stack.services.values():
        assert service.state.prepared(debit_id, 1) is not None
    answer = stack.ask(1, stack.body(debit_id, 1)).json()
    assert answer["receipt"]["block"] == consent.block_number


@pytest.mark.parametrize("blocks_after", [2, 0], ids=["longer", "same height"])
def test_a_reorg_cannot_hand_a_debit_id_to_another_buyer(stack: Stack, blocks_after: int) -> None:
    """On anvil the node reads getDebit, isEntitled and block hashes over bare JSON-RPC
    (EIP-1898 calls by block hash): the same attack as on the embedded chain."""
    reorg_gives_the_debit_to_another_buyer(stack, blocks_after)


def test_entitlement_is_asked_by_block_hash_not_number(stack: Stack) -> None:
    """A same-height reorg racing a request: the node read its confirmed head (block n of
    branch B, where the debit awaits consent), then the chain switched to branch A (block n
    with the consent). Asked by number, `isEntitled` answered A's True and the node
    remembered it for B's head (the failure before the hardening, shown below by the
    by-number call). Asked by hash (EIP-1898), the answer is B's or an error, never A's."""
    listing = stack.listing(auto_approve=False)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    releaser = stack.services[1].releaser
    snapshot = stack.dev.snapshot()
    stack.dev.mine(1)  # branch B: block n without the consent
    head = releaser.head()
    stack.dev.revert(snapshot)
    stack.market.consent(stack.owner, debit_id)  # branch A: block n with it
    assert stack.market.w3.eth.block_number == head.number
    assert stack.market.is_entitled(debit_id, 1, block=head.number)  # what "by number" sees
    try:
        answer = releaser.entitled(debit_id, 1, head)
    except ChainError:
        answer = None  # block B is gone: the node fails closed and remembers nothing
    assert answer is not True
    assert releaser.handle_from_memory(*_request(stack, debit_id)) is None


def test_a_confirmed_debit_is_read_again_only_after_a_reorg(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Preparing a share confirms its debit ahead; the confirmation holds while the chain
    only grows on top of the head it was made at (each new head's parent is the last one),
    and is made again after anything else."""
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    first, second = stack.debit(listing), stack.debit(listing)
    stack.sync()  # prepares both: confirms both
    releaser = stack.services[1].releaser
    reads = releaser._reads
    assert reads is not None
    confirmed: list[int] = []
    real = reads.debit_owner_and_block

    def counted(debit_id: int, block_hash: str, log_block: int | None) -> object:
        confirmed.append(debit_id)
        return real(debit_id, block_hash, log_block)

    monkeypatch.setattr(reads, "debit_owner_and_block", counted)
    stack.dev.mine(1)  # a child of the head the debits were confirmed at
    assert stack.ask(1, stack.body(first, 1)).status_code == 200
    assert confirmed == []
    snapshot = stack.dev.snapshot()
    stack.dev.mine(1)
    assert releaser.head().number == stack.market.w3.eth.block_number  # seen by the node
    stack.dev.revert(snapshot)
    stack.debit(listing)  # a reorg: another block (a transaction in it) at that height...
    stack.dev.mine(1)  # ...and one more on top
    assert stack.ask(1, stack.body(second, 1)).status_code == 200
    assert confirmed == [second]
