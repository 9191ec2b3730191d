"""`KeyReleaser.handle_from_memory`: the same answers and refusals as `handle`, or None
with nothing recorded when answering would need the chain or a new release."""

from __future__ import annotations

import os
import time

import pytest
from eth_account.signers.local import LocalAccount

from marketplace.eip712 import KeyRequest, sign
from marketplace.gateway.releaser import (
    BadSignature,
    KeyReleaser,
    NonceReused,
    NotEntitled,
    RequestExpired,
    WrongSigner,
)
from tests.gateway.conftest import Stack


def _releaser(stack: Stack) -> KeyReleaser:
    """Node 1's releaser with a head that stays fresh for the test's duration."""
    service = stack.services[1]
    releaser = KeyReleaser(
        stack.market, service.state, service.watcher, service.node.account, service.shares,
        head_ttl=3600.0,
    )
    service.watcher.on_event = releaser.on_event
    return releaser


def _signed(
    stack: Stack, debit_id: int, signer: LocalAccount | None = None
) -> tuple[KeyRequest, bytes]:
    request = KeyRequest(debit_id, 1, int(time.time()) + 120, os.urandom(32))
    return request, sign(signer or stack.buyer, stack.domain, request)


def test_first_release_is_left_to_handle_untouched_then_reserved_from_memory(
    stack: Stack,
) -> None:
    releaser = _releaser(stack)
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.services[1].watcher.catch_up()  # indexes, queues the pair to prepare
    releaser.prepare_pending()  # remembers the entitlement, prepares

    request, signature = _signed(stack, debit_id)
    assert releaser.handle_from_memory(request, signature) is None  # no release yet
    first = releaser.handle(request, signature)  # the same nonce: nothing was spent
    assert stack.services[1].state.releases_after(0) == [first.release]

    again, again_signature = _signed(stack, debit_id)
    served = releaser.handle_from_memory(again, again_signature)
    assert served is not None
    assert served == first
    # the same request again is answered again (idempotent); the nonce in another request
    # is a replay
    assert releaser.handle_from_memory(again, again_signature) == first
    other = KeyRequest(debit_id, 1, again.expiry - 1, again.nonce)
    with pytest.raises(NonceReused):
        releaser.handle_from_memory(other, sign(stack.buyer, stack.domain, other))
    assert len(stack.services[1].state.releases_after(0)) == 1


def test_refusals_from_memory_are_handles(stack: Stack) -> None:
    releaser = _releaser(stack)
    listing = stack.listing(auto_approve=False)
    stack.publish(listing)
    debit_id = stack.debit(listing)  # awaits consent: not entitled
    stack.services[1].watcher.catch_up()
    releaser.prepare_pending()

    # preparing asked isEntitled for the pair (to prepare a share): remembered as False
    request, signature = _signed(stack, debit_id)
    with pytest.raises(NotEntitled):
        releaser.handle_from_memory(request, signature)
    with pytest.raises(NotEntitled):  # the same request is judged again, as by handle
        releaser.handle(request, signature)
    reused = KeyRequest(debit_id, 1, request.expiry - 1, request.nonce)
    with pytest.raises(NonceReused):  # the refusal spent the nonce for other requests
        releaser.handle(reused, sign(stack.buyer, stack.domain, reused))

    forged, forged_signature = _signed(stack, debit_id, signer=stack.stranger)
    with pytest.raises(WrongSigner):
        releaser.handle_from_memory(forged, forged_signature)
    request, signature = _signed(stack, debit_id)
    with pytest.raises(BadSignature):
        releaser.handle_from_memory(request, signature[:64] + bytes([29]))
    expired = KeyRequest(debit_id, 1, int(time.time()) - 1, os.urandom(32))
    with pytest.raises(RequestExpired):
        releaser.handle_from_memory(expired, sign(stack.buyer, stack.domain, expired))
    with pytest.raises(NotEntitled):  # none of the refusals above spent this nonce
        releaser.handle_from_memory(request, signature)


def test_unindexed_debit_is_left_to_handle(stack: Stack) -> None:
    releaser = _releaser(stack)
    request, signature = _signed(stack, 12345)
    assert releaser.handle_from_memory(request, signature) is None
    assert stack.services[1].state.releases_after(0) == []
