"""Happy paths of key release: consent, auto-approval, ahead-of-time and on-demand shares,
re-serving, receipts, and the read-only endpoints."""

from __future__ import annotations

import base64
import hashlib

from marketplace.eip712 import ReleaseReceipt, recover_signer
from marketplace.keyrelease.share import open_sealed_share
from tests.gateway.conftest import Stack, code_of


def test_buyer_recovers_data_key_from_two_of_three(stack: Stack) -> None:
    listing = stack.listing(auto_approve=True)
    published = stack.publish(listing)
    debit = stack.debit(listing)
    stack.sync()
    fetched = stack.fetch(published, debit)
    assert fetched.data_key == published.data_key
    assert len(fetched.used_nodes) == 2
    assert fetched.faults == {}


def test_manual_consent_flow(stack: Stack) -> None:
    listing = stack.listing(auto_approve=False)
    published = stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    assert code_of(stack.ask(1, stack.body(debit_id, 1))) == (403, "not_entitled")
    assert all(s.state.prepared(debit_id, 1) is None for s in stack.services.values())

    stack.market.consent(stack.owner, debit_id)
    stack.sync()
    assert all(s.state.prepared(debit_id, 1) is not None for s in stack.services.values())
    assert stack.ask(1, stack.body(debit_id, 1)).status_code == 200
    assert stack.fetch(published, debit_id).data_key == published.data_key


def test_auto_approval_prepares_shares_on_every_node(stack: Stack) -> None:
    listing = stack.listing(auto_approve=True)
    published = stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    prepared = {i: s.state.prepared(debit_id, 1) for i, s in stack.services.items()}
    assert all(prepared.values())
    # each node's prepared share is its own and opens for the buyer
    for index, sealed in prepared.items():
        assert sealed is not None
        share = open_sealed_share(sealed, stack.buyer_secret, debit_id, 1)
        assert share.index == index
        share.verify(stack.dealt.keys.share_key(index), published.capsule)
    # and the release serves exactly the prepared bytes
    answer = stack.ask(2, stack.body(debit_id, 1)).json()
    assert base64.b64decode(answer["sealedShare"]) == prepared[2]


def test_new_version_prepares_shares_for_existing_debits(stack: Stack) -> None:
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    debit_id = stack.debit(listing, periods=2)
    other = stack.debit(listing, periods=2, buyer=stack.stranger)
    stack.sync()
    v2 = stack.publish(listing)
    for service in stack.services.values():
        assert service.state.prepared(debit_id, v2.version) is None
    stack.sync()
    for service in stack.services.values():
        assert service.state.prepared(debit_id, v2.version) is not None
        assert service.state.prepared(other, v2.version) is not None
    assert stack.fetch(v2, debit_id).data_key == v2.data_key


def test_consent_prepares_shares_for_every_published_version(stack: Stack) -> None:
    listing = stack.listing(auto_approve=False)
    stack.publish(listing)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.market.consent(stack.owner, debit_id)
    stack.sync()
    for service in stack.services.values():
        assert service.state.prepared(debit_id, 1) is not None
        assert service.state.prepared(debit_id, 2) is not None


def test_on_demand_share_when_nothing_was_prepared(stack: Stack) -> None:
    listing = stack.listing(auto_approve=True)
    published = stack.publish(listing)
    debit_id = stack.debit(listing)
    service = stack.services[1]
    assert service.state.cursor() is None
    response = stack.ask(1, stack.body(debit_id, 1))
    assert response.status_code == 200
    sealed = base64.b64decode(response.json()["sealedShare"])
    share = open_sealed_share(sealed, stack.buyer_secret, debit_id, 1)
    share.verify(stack.dealt.keys.share_key(1), published.capsule)
    assert [r.sealed_share for r in service.state.releases_after(0)] == [sealed]
    # the whole key also comes together with no node ever having synced
    assert stack.fetch(published, debit_id).data_key == published.data_key


def test_repeated_request_reserves_the_same_share_and_receipt(stack: Stack) -> None:
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    first = stack.ask(1, stack.body(debit_id, 1)).json()
    stack.dev.mine(3)
    stack.sync()
    again = stack.ask(1, stack.body(debit_id, 1)).json()
    assert again == first
    releases = stack.services[1].state.releases_after(0)
    assert [(r.seq, r.debit_id, r.version) for r in releases] == [(1, debit_id, 1)]


def test_receipt_verifies(stack: Stack) -> None:
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    for node in (1, 2, 3):
        answer = stack.ask(node, stack.body(debit_id, 1)).json()
        receipt = ReleaseReceipt.from_message(answer["receipt"])
        signature = bytes.fromhex(answer["receiptSignature"][2:])
        signer = recover_signer(stack.domain, receipt, signature)
        assert signer == stack.node_accounts[node - 1].address
        sealed = base64.b64decode(answer["sealedShare"])
        assert receipt.sealed_share_hash == hashlib.sha256(sealed).digest()
        assert (answer["node"], receipt.node) == (node, node)
        assert (answer["debitId"], receipt.debit_id) == (debit_id, debit_id)
        assert (answer["version"], receipt.version) == (1, 1)
        assert 0 < receipt.block <= stack.market.w3.eth.block_number
        assert stack.market.is_entitled(debit_id, 1, block=receipt.block)


def test_releases_endpoint_pages_through_the_log(stack: Stack) -> None:
    listing = stack.listing(auto_approve=True)
    for _ in range(3):
        stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    answers = [stack.ask(1, stack.body(debit_id, v)).json() for v in (2, 1, 3)]

    page = stack.clients[1].get("/v1/releases").json()
    assert page["node"] == 1
    assert page["address"] == stack.node_accounts[0].address
    assert page["anchors"] == []
    assert [e["seq"] for e in page["releases"]] == [1, 2, 3]
    for entry, answer in zip(page["releases"], answers, strict=True):
        assert entry["receipt"] == answer["receipt"]
        assert entry["receiptSignature"] == answer["receiptSignature"]

    after_one = stack.clients[1].get("/v1/releases", params={"after": 1}).json()["releases"]
    assert [e["seq"] for e in after_one] == [2, 3]
    limited = stack.clients[1].get("/v1/releases", params={"after": 1, "limit": 1}).json()
    assert [e["seq"] for e in limited["releases"]] == [2]
    assert stack.clients[1].get("/v1/releases", params={"after": 3}).json()["releases"] == []
    assert stack.clients[2].get("/v1/releases").json()["releases"] == []
    for bad in ({"after": -1}, {"after": "x"}, {"limit": 0}, {"limit": 1001}):
        assert code_of(stack.clients[1].get("/v1/releases", params=bad)) == (422, "malformed")


def test_health_reports_cursor_and_lag(stack: Stack) -> None:
    before = stack.clients[1].get("/v1/health")
    assert before.status_code == 200
    assert before.json()["cursor"] is None
    stack.sync()
    health = stack.clients[1].get("/v1/health")
    assert health.status_code == 200
    body = health.json()
    head = stack.market.w3.eth.block_number
    assert body == {
        "node": 1, "epoch": 1, "address": stack.node_accounts[0].address,
        "market": stack.market.address,
        "cursor": head, "status": "ok", "confirmedHead": head, "lag": 0,
    }
    stack.dev.mine(2)
    assert stack.clients[1].get("/v1/health").json()["lag"] == 2


def test_committee_endpoint_matches_the_contract(stack: Stack) -> None:
    document = stack.clients[3].get("/v1/committee").json()
    committee = stack.market.committee()
    assert document["threshold"] == committee.threshold == 2
    assert document["committeeKey"] == "0x" + stack.dealt.keys.committee_key.to_bytes().hex()
    assert [n["index"] for n in document["nodes"]] == [1, 2, 3]
    assert [n["address"] for n in document["nodes"]] == [a.address for a in stack.node_accounts]
    assert [n["shareKey"] for n in document["nodes"]] == [
        "0x" + k.point.to_bytes().hex() for k in stack.dealt.keys.share_keys
    ]
    assert [n["shareKey"] for n in document["nodes"]] == [
        "0x" + k.hex() for k in committee.share_keys
    ]
