"""Every refusal of `POST /v1/keys`, over HTTP, with its stable code and status."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from marketplace.chain.provider import connect
from marketplace.eip712 import Eip712Domain, KeyRequest, sign
from marketplace.gateway.api import ERROR_STATUS
from marketplace.gateway.releaser import MAX_EXPIRY_AHEAD
from marketplace.keyrelease.capsule import CapsuleContext, make_capsule
from storage.keys import DataKey
from tests.gateway.conftest import PERIOD, Published, Stack, build_stack, code_of

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass
class Entitled:
    stack: Stack
    published: Published
    debit_id: int


@pytest.fixture
def entitled(stack: Stack) -> Entitled:
    """An auto-approved debit on a listing with one version, indexed by every node."""
    listing = stack.listing(auto_approve=True)
    published = stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    return Entitled(stack, published, debit_id)


@pytest.fixture(scope="module")
def shared() -> Entitled:
    """The same, shared by the tests whose refusals change nothing (random nonces)."""
    stack = build_stack(connect())
    listing = stack.listing(auto_approve=True)
    published = stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    return Entitled(stack, published, debit_id)


def test_error_table_is_the_documented_one() -> None:
    assert ERROR_STATUS == {
        "malformed": 422, "bad_signature": 401, "wrong_signer": 403, "expired": 401,
        "expiry_too_far": 401, "nonce_reused": 409, "unknown_debit": 404,
        "unknown_version": 404, "not_entitled": 403, "invalid_capsule": 409,
        "invalid_buyer_key": 409, "chain_unavailable": 503, "state_unavailable": 503,
        "not_in_committee": 503,
        # POST /v1/partials (aggregate debits, protocol §20)
        "unknown_aggregate": 404, "not_ready": 409, "too_few_contributions": 409,
        "aggregation_failed": 409,
    }


def test_a_failing_state_database_is_a_503_not_a_500(entitled: Entitled) -> None:
    """The node cannot record a nonce or a release: it must say so cleanly (and release
    nothing), not crash with an internal error. Here its database connection is gone."""
    stack = entitled.stack
    stack.services[1].state.db.close()
    response = stack.ask(1, stack.body(entitled.debit_id, 1))
    assert code_of(response) == (503, "state_unavailable")
    assert "sqlite" not in response.text.lower()  # no driver detail on the wire
    assert stack.ask(2, stack.body(entitled.debit_id, 1)).status_code == 200


# ---------------------------------------------------------------- malformed bodies


def _drop(*path: str) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


def _set(value: Any, *path: str) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


MALFORMED: dict[str, Callable[[dict[str, Any]], None]] = {
    "missing request": _drop("request"),
    "missing signature": _drop("signature"),
    "missing debitId": _drop("request", "debitId"),
    "missing version": _drop("request", "version"),
    "missing expiry": _drop("request", "expiry"),
    "missing nonce": _drop("request", "nonce"),
    "debitId as string": _set("1", "request", "debitId"),
    "expiry as string": _set(str(int(time.time()) + 60), "request", "expiry"),
    "version as bool": _set(True, "request", "version"),
    "debitId as bool": _set(True, "request", "debitId"),
    "expiry as float": _set(float(int(time.time()) + 60), "request", "expiry"),
    "version as null": _set(None, "request", "version"),
    "extra request field": _set(1, "request", "buyer"),
    "extra top-level field": _set("x", "extra"),
    "nonce not hex": _set("0x" + "zz" * 32, "request", "nonce"),
    "nonce too short": _set("0x" + "11" * 31, "request", "nonce"),
    "nonce without 0x": _set("11" * 32, "request", "nonce"),
    "nonce as number": _set(7, "request", "nonce"),
    "version zero": _set(0, "request", "version"),
    "version above uint32": _set(2**32, "request", "version"),
    "negative debitId": _set(-1, "request", "debitId"),
    "debitId above uint256": _set(2**256, "request", "debitId"),
    "expiry above uint64": _set(2**64, "request", "expiry"),
    "signature as number": _set(5, "signature"),
    "request as list": _set([1, 1, 1, "0x" + "11" * 32], "request"),
}


@pytest.mark.parametrize("edit", MALFORMED.values(), ids=MALFORMED.keys())
def test_keys_refuses_malformed_body(
    shared: Entitled, edit: Callable[[dict[str, Any]], None]
) -> None:
    body = shared.stack.body(shared.debit_id, 1)
    edit(body)
    response = shared.stack.ask(1, body)
    assert code_of(response) == (422, "malformed")
    assert response.json()["message"]
    assert shared.stack.services[1].state.releases_after(0) == []


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"", b'{"request": '])
def test_keys_refuses_body_that_is_not_a_json_object(shared: Entitled, raw: bytes) -> None:
    response = shared.stack.clients[1].post(
        "/v1/keys", content=raw, headers={"Content-Type": "application/json"}
    )
    assert code_of(response) == (422, "malformed")


def test_malformed_request_is_not_released_and_leaves_no_nonce(entitled: Entitled) -> None:
    stack = entitled.stack
    body = stack.body(entitled.debit_id, 1)
    body["request"]["version"] = "1"
    assert stack.ask(1, body).status_code == 422
    body["request"]["version"] = 1
    assert stack.ask(1, body).status_code == 200
    assert len(stack.services[1].state.releases_after(0)) == 1


# ---------------------------------------------------------------- signatures


def _resigned(stack: Stack, debit_id: int, edit: Callable[[bytes], bytes]) -> dict[str, Any]:
    body = stack.body(debit_id, 1)
    signature = bytes.fromhex(body["signature"][2:])
    body["signature"] = "0x" + edit(signature).hex()
    return body


def _high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])


BAD_SIGNATURES: dict[str, Callable[[bytes], bytes]] = {
    "v is 29": lambda sig: sig[:64] + bytes([29]),
    "v is 2": lambda sig: sig[:64] + bytes([2]),
    "high s (the same signature, malleated)": _high_s,
    "s is zero": lambda sig: sig[:32] + bytes(32) + sig[64:],
    "r is zero": lambda sig: bytes(32) + sig[32:],
    "r above the group order": lambda sig: b"\xff" * 32 + sig[32:],
}


@pytest.mark.parametrize("edit", BAD_SIGNATURES.values(), ids=BAD_SIGNATURES.keys())
def test_keys_refuses_bad_signature(shared: Entitled, edit: Callable[[bytes], bytes]) -> None:
    body = _resigned(shared.stack, shared.debit_id, edit)
    assert code_of(shared.stack.ask(1, body)) == (401, "bad_signature")
    assert shared.stack.services[1].state.releases_after(0) == []


@pytest.mark.parametrize(
    "signature",
    ["0x" + "11" * 64, "0x" + "11" * 66, "0x", "", "0x" + "zz" * 65, "11" * 65],
    ids=["64 bytes", "66 bytes", "empty hex", "empty", "not hex", "no 0x"],
)
def test_keys_refuses_signature_that_is_not_65_bytes_of_hex(
    shared: Entitled, signature: str
) -> None:
    body = shared.stack.body(shared.debit_id, 1)
    body["signature"] = signature
    assert code_of(shared.stack.ask(1, body)) == (401, "bad_signature")


def test_keys_refuses_request_signed_by_another_wallet(shared: Entitled) -> None:
    stack = shared.stack
    body = stack.body(shared.debit_id, 1, signer=stack.stranger)
    response = stack.ask(1, body)
    assert code_of(response) == (403, "wrong_signer")
    assert stack.stranger.address in response.json()["message"]


def test_keys_refuses_signature_over_other_fields(shared: Entitled) -> None:
    """A valid buyer signature moved onto an altered request recovers someone else."""
    stack = shared.stack
    body = stack.body(shared.debit_id, 1)
    body["request"]["nonce"] = "0x" + os.urandom(32).hex()
    assert code_of(stack.ask(1, body)) == (403, "wrong_signer")


def test_signature_for_another_market_is_refused(shared: Entitled) -> None:
    stack = shared.stack
    other = Eip712Domain(stack.market.chain_id, "0x" + "12" * 20)
    request = KeyRequest(shared.debit_id, 1, int(time.time()) + 60, os.urandom(32))
    body = {
        "request": request.to_message(),
        "signature": "0x" + sign(stack.buyer, other, request).hex(),
    }
    assert code_of(stack.ask(1, body)) == (403, "wrong_signer")


def test_wrong_signer_does_not_burn_the_buyers_nonce(entitled: Entitled) -> None:
    stack = entitled.stack
    nonce = os.urandom(32)
    expiry = int(time.time()) + 60
    forged = stack.body(entitled.debit_id, 1, signer=stack.stranger, expiry=expiry, nonce=nonce)
    assert code_of(stack.ask(1, forged)) == (403, "wrong_signer")
    genuine = stack.body(entitled.debit_id, 1, expiry=expiry, nonce=nonce)
    assert stack.ask(1, genuine).status_code == 200


# ---------------------------------------------------------------- expiry and replay


def test_keys_refuses_expired_request(shared: Entitled) -> None:
    body = shared.stack.body(shared.debit_id, 1, expiry=int(time.time()) - 1)
    assert code_of(shared.stack.ask(1, body)) == (401, "expired")


def test_keys_refuses_expiry_more_than_ten_minutes_ahead(shared: Entitled) -> None:
    assert MAX_EXPIRY_AHEAD == 600
    body = shared.stack.body(shared.debit_id, 1, expiry=int(time.time()) + 2 * 600)
    assert code_of(shared.stack.ask(1, body)) == (401, "expiry_too_far")


def test_expiry_nine_minutes_ahead_is_accepted(entitled: Entitled) -> None:
    body = entitled.stack.body(entitled.debit_id, 1, expiry=int(time.time()) + 540)
    assert entitled.stack.ask(1, body).status_code == 200


def test_the_same_request_again_is_answered_again_another_with_its_nonce_is_a_replay(
    entitled: Entitled,
) -> None:
    stack = entitled.stack
    nonce = os.urandom(32)
    body = stack.body(entitled.debit_id, 1, nonce=nonce)
    first = stack.ask(1, body)
    assert first.status_code == 200
    assert stack.ask(1, body).json() == first.json()  # idempotent: sealed to the buyer
    # each node keeps its own nonce log: one signed request serves the whole committee
    assert stack.ask(2, body).status_code == 200
    assert stack.ask(3, body).status_code == 200
    other = stack.body(entitled.debit_id, 1, nonce=nonce, expiry=body["request"]["expiry"] - 1)
    assert code_of(stack.ask(1, other)) == (409, "nonce_reused")
    assert code_of(stack.ask(2, other)) == (409, "nonce_reused")


def test_a_refused_request_is_judged_again_its_nonce_stays_spent(stack: Stack) -> None:
    listing = stack.listing(auto_approve=False)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    nonce = os.urandom(32)
    body = stack.body(debit_id, 1, nonce=nonce)
    assert code_of(stack.ask(1, body)) == (403, "not_entitled")
    stack.market.consent(stack.owner, debit_id)
    stack.sync()
    assert stack.ask(1, body).status_code == 200  # the buyer's own, still valid request
    other = stack.body(debit_id, 1, nonce=nonce, expiry=body["request"]["expiry"] - 1)
    assert code_of(stack.ask(1, other)) == (409, "nonce_reused")


# ---------------------------------------------------------------- unknown ids


def test_keys_refuses_unknown_debit(shared: Entitled) -> None:
    response = shared.stack.ask(1, shared.stack.body(shared.debit_id + 41, 1))
    assert code_of(response) == (404, "unknown_debit")


def test_keys_refuses_unknown_version(shared: Entitled) -> None:
    response = shared.stack.ask(1, shared.stack.body(shared.debit_id, 2))
    assert code_of(response) == (404, "unknown_version")


def test_unknown_version_of_a_listing_without_versions(stack: Stack) -> None:
    listing = stack.listing(auto_approve=True)
    debit_id = stack.debit(listing)
    stack.sync()
    assert code_of(stack.ask(1, stack.body(debit_id, 1))) == (404, "unknown_version")


def test_debit_not_yet_indexed_is_found_on_demand(stack: Stack) -> None:
    """No sync at all: the node polls the chain before calling a debit unknown."""
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    assert stack.ask(1, stack.body(debit_id, 1)).status_code == 200


# ---------------------------------------------------------------- capsules


def test_a_capsule_with_a_copied_r_is_never_served(stack: Stack) -> None:
    """The attack capsule v2 exists for: copy a victim's R into a capsule of one's own
    listing, buy it from oneself. Every node refuses `invalid_capsule`, before and
    after sync, and prepares and logs nothing for it."""
    victim = stack.publish(stack.listing(auto_approve=True))
    own = stack.listing(auto_approve=True)
    cid = bytes.fromhex("01551220") + os.urandom(32)
    ctx = CapsuleContext(stack.market.chain_id, stack.market.address, own, 1, cid)
    junk = make_capsule(DataKey.generate(), ctx, stack.dealt.keys.committee_key)
    copied = replace(junk, r_point=victim.capsule.r_point)
    stack.market.publish_version(stack.owner, own, cid, copied.to_bytes())
    debit_id = stack.debit(own)
    stack.sync()
    for node in stack.clients:
        assert code_of(stack.ask(node, stack.body(debit_id, 1))) == (409, "invalid_capsule")
        assert stack.services[node].state.prepared(debit_id, 1) is None
        assert stack.services[node].state.release_for(debit_id, 1) is None


def test_a_capsule_made_for_another_version_is_never_served(stack: Stack) -> None:
    """A capsule whose proof names version 2 published as version 1 is refused too."""
    listing = stack.listing(auto_approve=True)
    cid = bytes.fromhex("01551220") + os.urandom(32)
    wrong = CapsuleContext(stack.market.chain_id, stack.market.address, listing, 2, cid)
    capsule = make_capsule(DataKey.generate(), wrong, stack.dealt.keys.committee_key)
    stack.market.publish_version(stack.owner, listing, cid, capsule.to_bytes())
    debit_id = stack.debit(listing)
    stack.sync()
    assert code_of(stack.ask(1, stack.body(debit_id, 1))) == (409, "invalid_capsule")


# ---------------------------------------------------------------- not entitled


def test_requested_but_not_consented_is_not_entitled(stack: Stack) -> None:
    listing = stack.listing(auto_approve=False)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    assert code_of(stack.ask(1, stack.body(debit_id, 1))) == (403, "not_entitled")
    assert stack.services[1].state.prepared(debit_id, 1) is None


def test_rejected_debit_is_not_entitled(stack: Stack) -> None:
    listing = stack.listing(auto_approve=False)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.market.reject(stack.owner, debit_id)
    stack.sync()
    assert code_of(stack.ask(1, stack.body(debit_id, 1))) == (403, "not_entitled")


def test_cancelled_debit_is_not_entitled(stack: Stack) -> None:
    listing = stack.listing(auto_approve=False)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.market.cancel(stack.buyer, debit_id)
    stack.sync()
    assert code_of(stack.ask(1, stack.body(debit_id, 1))) == (403, "not_entitled")


def test_revoked_debit_is_refused_even_after_a_release(entitled: Entitled) -> None:
    stack = entitled.stack
    first = stack.ask(1, stack.body(entitled.debit_id, 1))
    assert first.status_code == 200
    stack.market.revoke(stack.owner, entitled.debit_id)
    stack.sync()
    for node in (1, 2):
        assert code_of(stack.ask(node, stack.body(entitled.debit_id, 1))) == (403, "not_entitled")
    assert [r.debit_id for r in stack.services[1].state.releases_after(0)] == [entitled.debit_id]
    assert stack.services[2].state.releases_after(0) == []


def test_revoked_before_sync_is_refused(entitled: Entitled) -> None:
    """Prepared shares do not outlive entitlement: the request re-checks the chain."""
    stack = entitled.stack
    assert stack.services[1].state.prepared(entitled.debit_id, 1) is not None
    stack.market.revoke(stack.owner, entitled.debit_id)
    assert code_of(stack.ask(1, stack.body(entitled.debit_id, 1))) == (403, "not_entitled")
    assert stack.services[1].state.releases_after(0) == []


def test_expired_debit_is_not_entitled(entitled: Entitled) -> None:
    stack = entitled.stack
    assert stack.ask(1, stack.body(entitled.debit_id, 1)).status_code == 200
    stack.dev.advance(PERIOD + 1)
    stack.sync()
    for node in (1, 2):
        assert code_of(stack.ask(node, stack.body(entitled.debit_id, 1))) == (403, "not_entitled")


def test_version_published_after_the_debits_end_is_not_entitled(stack: Stack) -> None:
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    debit_id = stack.debit(listing, periods=1)
    stack.dev.advance(PERIOD + 1)
    late = stack.publish(listing)
    stack.sync()
    assert stack.services[1].state.prepared(debit_id, late.version) is None
    assert code_of(stack.ask(1, stack.body(debit_id, late.version))) == (403, "not_entitled")
    # the contract agrees, and the reason includes the publication time
    debit = stack.market.debit(debit_id)
    assert stack.market.version(listing, late.version).published_at > debit.end
    assert not stack.market.is_entitled(debit_id, late.version)


def test_version_published_within_the_debit_is_entitled(stack: Stack) -> None:
    """The counterpart: a version published during the debit is released."""
    listing = stack.listing(auto_approve=True)
    debit_id = stack.debit(listing, periods=2)
    stack.dev.advance(PERIOD)
    published = stack.publish(listing)
    stack.sync()
    assert stack.services[1].state.prepared(debit_id, published.version) is not None
    assert stack.ask(1, stack.body(debit_id, published.version)).status_code == 200


def test_other_buyers_debit_is_wrong_signer(stack: Stack) -> None:
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    debit_id = stack.debit(listing, buyer=stack.stranger)
    stack.sync()
    assert code_of(stack.ask(1, stack.body(debit_id, 1))) == (403, "wrong_signer")
