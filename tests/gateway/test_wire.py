"""The hand-written `POST /v1/keys` parser accepts exactly what the pydantic model
(`api.KeysBody`, which documents the body in OpenAPI) accepts, with the same values."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pydantic
import pytest
from fastapi.testclient import TestClient

from marketplace.eip712 import KeyRequest
from marketplace.gateway.api import KeysBody
from marketplace.gateway.wire import MalformedBody, is_json_content_type, parse_keys_body
from tests.gateway.conftest import Stack

VALID: dict[str, Any] = {
    "request": {"debitId": 7, "version": 2, "expiry": 1_700_000_600, "nonce": "0x" + "ab" * 32},
    "signature": "0x" + "11" * 65,
}


def _set(value: Any, *path: str) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _drop(*path: str) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


REFUSED: dict[str, Callable[[dict[str, Any]], None]] = {
    "missing request": _drop("request"),
    "missing signature": _drop("signature"),
    "missing debitId": _drop("request", "debitId"),
    "missing version": _drop("request", "version"),
    "missing expiry": _drop("request", "expiry"),
    "missing nonce": _drop("request", "nonce"),
    "debitId as string": _set("1", "request", "debitId"),
    "expiry as string": _set("1700000600", "request", "expiry"),
    "version as bool": _set(True, "request", "version"),
    "debitId as bool": _set(False, "request", "debitId"),
    "expiry as float": _set(1_700_000_600.0, "request", "expiry"),
    "version as float": _set(1.0, "request", "version"),
    "version as null": _set(None, "request", "version"),
    "extra request field": _set(1, "request", "buyer"),
    "extra top-level field": _set("x", "extra"),
    "nonce not hex": _set("0x" + "zz" * 32, "request", "nonce"),
    "nonce too short": _set("0x" + "11" * 31, "request", "nonce"),
    "nonce too long": _set("0x" + "11" * 33, "request", "nonce"),
    "nonce without 0x": _set("11" * 32, "request", "nonce"),
    "nonce with a newline": _set("0x" + "11" * 32 + "\n", "request", "nonce"),
    "nonce as number": _set(7, "request", "nonce"),
    "nonce as null": _set(None, "request", "nonce"),
    "version zero": _set(0, "request", "version"),
    "version above uint32": _set(2**32, "request", "version"),
    "negative debitId": _set(-1, "request", "debitId"),
    "debitId above uint256": _set(2**256, "request", "debitId"),
    "negative expiry": _set(-5, "request", "expiry"),
    "expiry above uint64": _set(2**64, "request", "expiry"),
    "signature as number": _set(5, "signature"),
    "signature as null": _set(None, "signature"),
    "signature as list": _set(["0x11"], "signature"),
    "request as list": _set([1, 1, 1, "0x" + "11" * 32], "request"),
    "request as string": _set("debitId=1", "request"),
    "request as null": _set(None, "request"),
}

ACCEPTED: dict[str, Callable[[dict[str, Any]], None]] = {
    "as is": lambda body: None,
    "largest debitId": _set(2**256 - 1, "request", "debitId"),
    "debitId zero": _set(0, "request", "debitId"),
    "largest version": _set(2**32 - 1, "request", "version"),
    "expiry zero": _set(0, "request", "expiry"),
    "largest expiry": _set(2**64 - 1, "request", "expiry"),
    "upper-case nonce": _set("0x" + "AB" * 32, "request", "nonce"),
    # any string: what is not 65 bytes of hex is a bad signature (401), judged later
    "signature not hex": _set("zz", "signature"),
    "signature empty": _set("", "signature"),
}


def _pydantic_accepts(raw: bytes) -> KeysBody | None:
    try:
        return KeysBody.model_validate(json.loads(raw))
    except (pydantic.ValidationError, ValueError):
        return None


@pytest.mark.parametrize("edit", REFUSED.values(), ids=REFUSED.keys())
def test_refuses_what_the_model_refuses(edit: Callable[[dict[str, Any]], None]) -> None:
    body = copy.deepcopy(VALID)
    edit(body)
    raw = json.dumps(body).encode()
    assert _pydantic_accepts(raw) is None
    with pytest.raises(MalformedBody):
        parse_keys_body(raw)


@pytest.mark.parametrize(
    "raw", [b"not json", b"[1, 2]", b"", b'{"request": ', b"null", b"7", b'"x"', b"\xff\xfe"]
)
def test_refuses_bodies_that_are_not_json_objects(raw: bytes) -> None:
    assert _pydantic_accepts(raw) is None
    with pytest.raises(MalformedBody, match=r"^body: "):
        parse_keys_body(raw)


@pytest.mark.parametrize("edit", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepts_what_the_model_accepts_with_the_same_values(
    edit: Callable[[dict[str, Any]], None],
) -> None:
    body = copy.deepcopy(VALID)
    edit(body)
    raw = json.dumps(body).encode()
    model = _pydantic_accepts(raw)
    assert model is not None
    request, signature = parse_keys_body(raw)
    assert request == KeyRequest.from_message(model.request.model_dump())
    assert signature == model.signature


def test_names_the_offending_field() -> None:
    body = copy.deepcopy(VALID)
    body["request"]["version"] = "1"
    with pytest.raises(MalformedBody, match=r"^request\.version: "):
        parse_keys_body(json.dumps(body).encode())
    del body["request"]["nonce"]
    with pytest.raises(MalformedBody, match=r"^request\.nonce: field required"):
        parse_keys_body(json.dumps(body).encode())


@pytest.mark.parametrize(
    ("content_type", "parsed"),
    [
        (None, True),
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("application/problem+json", True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
    ],
)
def test_json_content_types_are_fastapis(content_type: str | None, parsed: bool) -> None:
    assert is_json_content_type(content_type) is parsed


def test_non_json_content_type_is_malformed(stack: Stack) -> None:
    response = stack.clients[1].post(
        "/v1/keys", content=json.dumps(VALID), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "malformed"


def test_openapi_documents_the_body_and_the_answer(stack: Stack) -> None:
    client: TestClient = stack.clients[1]
    operation = client.get("/openapi.json").json()["paths"]["/v1/keys"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"request", "signature"}
    assert schema["additionalProperties"] is False
    request = schema["properties"]["request"]
    assert set(request["properties"]) == {"debitId", "version", "expiry", "nonce"}
    assert "$ref" not in json.dumps(schema)
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["$ref"].endswith("/KeysResponse")


@pytest.mark.parametrize("raw", [b"[" * 3000, b'[{"a":' * 650])
def test_deeply_nested_json_is_malformed_not_a_crash(raw: bytes) -> None:
    """Within the size cap, nesting beyond Python's recursion limit is refused cleanly."""
    with pytest.raises(MalformedBody, match="not valid JSON"):
        parse_keys_body(raw)


def test_oversized_bodies_are_refused_before_parsing(stack: Stack) -> None:
    """A body deep enough to overflow the C stack in json.loads (it killed the worker
    process before the cap) is refused by its size, declared or streamed, and the node
    goes on serving."""
    client = stack.clients[1]
    bomb = b"[" * 200_000
    declared = client.post("/v1/keys", content=bomb, headers={"content-type": "application/json"})
    assert (declared.status_code, declared.json()["code"]) == (422, "malformed")
    assert "at most 4096 bytes" in declared.json()["message"]
    streamed = client.post(
        "/v1/keys",
        content=iter([bomb[:3000], bomb[3000:]]),  # chunked: no Content-Length to trust
        headers={"content-type": "application/json"},
    )
    assert (streamed.status_code, streamed.json()["code"]) == (422, "malformed")
    assert client.get("/v1/health").status_code == 200
    with pytest.raises(MalformedBody, match="at most"):
        parse_keys_body(b" " * 5000)
