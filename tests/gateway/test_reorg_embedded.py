"""Reorgs on the embedded chain (eth-tester snapshots), so the default suite covers them;
tests/integration/gateway/test_reorg.py runs the same on anvil."""

from __future__ import annotations

import pytest

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
