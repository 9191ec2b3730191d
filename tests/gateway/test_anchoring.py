"""Anchoring the release log: roots over receipt digests, the on-chain event, proofs for
every receipt, and exactly-once anchoring across a crash between send and record."""

from __future__ import annotations

from typing import Any

import pytest

from marketplace.chain.events import ReleasesAnchored
from marketplace.eip712 import ReleaseReceipt, digest
from marketplace.gateway.anchoring import Anchorer, receipt_leaf
from marketplace.gateway.service import GatewayService
from marketplace.merkle import merkle_proof, merkle_root, verify_proof
from tests.gateway.conftest import Stack


def _release(stack: Stack, listing: int, versions: int, node: int = 1) -> int:
    """One debit on `listing`, released at `node` for versions 1..`versions`."""
    debit_id = stack.debit(listing)
    for version in range(1, versions + 1):
        assert stack.ask(node, stack.body(debit_id, version)).status_code == 200
    return debit_id


@pytest.fixture
def listing(stack: Stack) -> int:
    listing_id = stack.listing(auto_approve=True)
    for _ in range(3):
        stack.publish(listing_id)
    return listing_id


def _anchored_events(stack: Stack, node: int) -> list[ReleasesAnchored]:
    address = stack.node_accounts[node - 1].address
    events = stack.market.events().read(0, kinds=[ReleasesAnchored])
    return [e for e in events if isinstance(e, ReleasesAnchored) and e.node == address]


def _leaves_from_http(stack: Stack, node: int) -> list[bytes]:
    """What an auditor computes from `GET /v1/releases`: the receipts' EIP-712 digests."""
    page = stack.clients[node].get("/v1/releases").json()
    return [
        digest(stack.domain, ReleaseReceipt.from_message(e["receipt"])) for e in page["releases"]
    ]


def test_anchor_root_event_and_proofs(stack: Stack, listing: int) -> None:
    _release(stack, listing, 3)
    service = stack.services[1]
    anchor = service.anchorer.anchor_pending()
    assert anchor is not None
    assert (anchor.anchor_seq, anchor.first_seq, anchor.last_seq) == (1, 1, 3)

    releases = service.state.releases_after(0)
    leaves = [receipt_leaf(service.releaser, r) for r in releases]
    assert leaves == _leaves_from_http(stack, 1)
    assert anchor.root == merkle_root(leaves)

    [event] = _anchored_events(stack, 1)
    assert (event.seq, event.root, event.count) == (1, anchor.root, 3)
    assert event.ref.tx_hash == anchor.tx_hash
    assert stack.market.anchor_count(stack.node_accounts[0].address) == 1

    for index, leaf in enumerate(leaves):
        proof = merkle_proof(leaves, index)
        assert verify_proof(leaf, proof, event.root)
        assert not verify_proof(leaves[(index + 1) % 3], proof, event.root)

    page = stack.clients[1].get("/v1/releases").json()
    assert page["anchors"] == [{
        "anchorSeq": 1, "firstSeq": 1, "lastSeq": 3, "root": "0x" + anchor.root.hex(),
        "txHash": anchor.tx_hash,
    }]


def test_batches_continue_where_the_last_anchor_ended(stack: Stack, listing: int) -> None:
    service = stack.services[1]
    _release(stack, listing, 2)
    first = service.anchorer.anchor_pending()
    assert first is not None and (first.first_seq, first.last_seq) == (1, 2)
    assert service.anchorer.anchor_pending() is None
    _release(stack, listing, 3)
    second = service.anchorer.anchor_pending()
    assert second is not None
    assert (second.anchor_seq, second.first_seq, second.last_seq) == (2, 3, 5)
    leaves = [receipt_leaf(service.releaser, r) for r in service.state.releases_after(2)]
    assert second.root == merkle_root(leaves)
    assert [(e.seq, e.count) for e in _anchored_events(stack, 1)] == [(1, 2), (2, 3)]
    assert _anchored_events(stack, 2) == []


def test_nothing_to_anchor_sends_nothing(stack: Stack) -> None:
    assert stack.services[1].anchorer.anchor_pending() is None
    assert stack.market.anchor_count(stack.node_accounts[0].address) == 0


def test_min_batch_waits_for_enough_releases(stack: Stack, listing: int) -> None:
    service = stack.services[1]
    anchorer = Anchorer(service.releaser, min_batch=3)
    _release(stack, listing, 2)
    assert anchorer.anchor_pending() is None
    assert stack.market.anchor_count(stack.node_accounts[0].address) == 0
    _release(stack, listing, 1)
    anchor = anchorer.anchor_pending()
    assert anchor is not None and anchor.last_seq == 3


def test_tick_anchors(stack: Stack, listing: int) -> None:
    _release(stack, listing, 1, node=2)
    stack.services[2].tick()
    assert [a.last_seq for a in stack.services[2].state.anchors()] == [1]


def _crash_once(service: GatewayService, monkeypatch: pytest.MonkeyPatch) -> None:
    real = service.state.record_anchor
    calls: list[Any] = []

    def record_then_crash(anchor: Any) -> None:
        calls.append(anchor)
        if len(calls) == 1:
            raise RuntimeError("killed between the anchor tx and recording it")
        real(anchor)

    monkeypatch.setattr(service.state, "record_anchor", record_then_crash)


def test_crash_after_sending_is_reconciled_without_a_second_anchor(
    stack: Stack, listing: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = stack.services[1]
    _release(stack, listing, 3)
    _crash_once(service, monkeypatch)
    with pytest.raises(RuntimeError):
        service.anchorer.anchor_pending()
    assert service.state.anchors() == []
    assert stack.market.anchor_count(stack.node_accounts[0].address) == 1

    assert service.anchorer.anchor_pending() is None  # recovered, nothing left to send
    [recovered] = service.state.anchors()
    [event] = _anchored_events(stack, 1)
    assert (recovered.anchor_seq, recovered.first_seq, recovered.last_seq) == (1, 1, 3)
    assert recovered.root == event.root
    assert recovered.root == merkle_root(
        [receipt_leaf(service.releaser, r) for r in service.state.releases_after(0)]
    )
    assert recovered.tx_hash == event.ref.tx_hash
    assert stack.market.anchor_count(stack.node_accounts[0].address) == 1


def test_anchor_sent_elsewhere_is_recorded_then_new_releases_anchored(
    stack: Stack, listing: int
) -> None:
    """The anchor tx reached the chain (sent by the node's key) but not the database; more
    releases came in before the restart."""
    service = stack.services[1]
    _release(stack, listing, 3)
    leaves = [receipt_leaf(service.releaser, r) for r in service.state.releases_after(0)]
    sent = stack.market.anchor_releases(stack.node_accounts[0], merkle_root(leaves), 3)
    _release(stack, listing, 2)

    anchor = service.anchorer.anchor_pending()
    assert anchor is not None
    assert (anchor.anchor_seq, anchor.first_seq, anchor.last_seq) == (2, 4, 5)
    recorded = service.state.anchors()
    assert [(a.anchor_seq, a.first_seq, a.last_seq) for a in recorded] == [(1, 1, 3), (2, 4, 5)]
    assert recorded[0].tx_hash == sent.tx_hash
    events = _anchored_events(stack, 1)
    assert [(e.seq, e.count) for e in events] == [(1, 3), (2, 2)]
    assert service.anchorer.anchor_pending() is None
    assert stack.market.anchor_count(stack.node_accounts[0].address) == 2


def test_a_release_page_carries_only_the_anchors_covering_it(stack: Stack, listing: int) -> None:
    """Every page used to carry every anchor the node ever made: on a long-running node a
    page would outgrow what a client reads. Now a page names the anchors of its entries."""
    service = stack.services[1]
    _release(stack, listing, 2)
    service.anchorer.anchor_pending()  # entries 1..2
    _release(stack, listing, 1)
    service.anchorer.anchor_pending()  # entry 3

    def anchors(**params: int) -> list[tuple[int, int, int]]:
        page = stack.clients[1].get("/v1/releases", params=params).json()
        return [(a["anchorSeq"], a["firstSeq"], a["lastSeq"]) for a in page["anchors"]]

    assert anchors() == [(1, 1, 2), (2, 3, 3)]
    assert anchors(after=0, limit=1) == [(1, 1, 2)]
    assert anchors(after=1, limit=2) == [(1, 1, 2), (2, 3, 3)]
    assert anchors(after=2) == [(2, 3, 3)]
    assert anchors(after=3) == []
