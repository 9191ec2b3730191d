"""Whatever a client sends, a node answers a documented code: never a 500, never a body
that is not `{"code", "message"}` JSON (DESIGN §5, docs/protocol.md).

Before the hardening `test_any_signed_request` failed at once: an id >= 2^63 reached
SQLite, whose driver raised OverflowError, answered as a plain-text 500."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.chain.provider import connect
from marketplace.eip712 import KeyRequest, sign
from marketplace.gateway.api import ERROR_STATUS
from tests.gateway.conftest import Stack, build_stack

FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**300), 2**300) | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
uint_like = st.one_of(
    st.integers(-(2**70), 2**260), st.sampled_from([0, 1, 2**32, 2**63, 2**64, 2**256]),
    st.booleans(), st.floats(allow_nan=False), st.text(max_size=8), st.none(),
)


@pytest.fixture(scope="module")
def entitled() -> Iterator[tuple[Stack, int]]:
    stack = build_stack(connect())
    listing = stack.listing(auto_approve=True)
    stack.publish(listing)
    debit_id = stack.debit(listing)
    stack.sync()
    yield stack, debit_id
    for client in stack.clients.values():
        client.close()


def _documented(response: httpx.Response) -> None:
    assert response.status_code != 500
    body = response.json()
    if response.status_code == 200:
        assert set(body) >= {"node", "debitId", "version", "sealedShare", "receipt"}
        return
    assert set(body) == {"code", "message"}
    assert ERROR_STATUS[body["code"]] == response.status_code


@FUZZ
@given(body=json_values)
def test_any_json_body(entitled: tuple[Stack, int], body: Any) -> None:
    stack, _ = entitled
    # json.dumps writes NaN and Infinity as JavaScript does; the node must refuse them too
    _documented(stack.clients[1].post("/v1/keys", content=json.dumps(body)))


@FUZZ
@given(raw=st.binary(max_size=600), content_type=st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "a/b+json"]
))
def test_any_bytes(entitled: tuple[Stack, int], raw: bytes, content_type: str) -> None:
    stack, _ = entitled
    headers = {"content-type": content_type} if content_type else {}
    _documented(stack.clients[1].post("/v1/keys", content=raw, headers=headers))


@FUZZ
@given(
    debit_id=uint_like, version=uint_like, expiry=uint_like,
    nonce=st.one_of(st.text(max_size=70), st.just("0x" + "ab" * 32)),
    signature=st.one_of(st.text(max_size=140), st.binary(min_size=65, max_size=65).map(
        lambda b: "0x" + b.hex()
    )),
)
def test_any_request_fields(
    entitled: tuple[Stack, int], debit_id: Any, version: Any, expiry: Any, nonce: Any,
    signature: Any,
) -> None:
    stack, _ = entitled
    body = {"request": {"debitId": debit_id, "version": version, "expiry": expiry,
                        "nonce": nonce}, "signature": signature}
    _documented(stack.clients[1].post("/v1/keys", content=json.dumps(body)))


@FUZZ
@given(
    debit_offset=st.integers(-3, 2**256), version=st.integers(1, 2**32 - 1),
    expiry_offset=st.integers(-700, 700), signer=st.sampled_from(["buyer", "stranger"]),
)
def test_any_signed_request(
    entitled: tuple[Stack, int], debit_offset: int, version: int, expiry_offset: int, signer: str,
) -> None:
    """Well-formed, validly signed requests for any debit, version and expiry."""
    stack, debit_id = entitled
    request = KeyRequest(
        max(0, min(debit_id + debit_offset, 2**256 - 1)), version,
        max(0, int(time.time()) + expiry_offset), os.urandom(32),
    )
    account = stack.buyer if signer == "buyer" else stack.stranger
    body = {"request": request.to_message(),
            "signature": "0x" + sign(account, stack.domain, request).hex()}
    _documented(stack.clients[1].post("/v1/keys", json=body))


@FUZZ
@given(after=st.text(max_size=30) | st.integers(-(2**70), 2**70).map(str),
       limit=st.text(max_size=10) | st.integers(-5, 5000).map(str))
def test_any_release_log_query(entitled: tuple[Stack, int], after: str, limit: str) -> None:
    stack, _ = entitled
    response = stack.clients[1].get("/v1/releases", params={"after": after, "limit": limit})
    assert response.status_code in (200, 422)
    if response.status_code == 422:
        assert response.json()["code"] == "malformed"
