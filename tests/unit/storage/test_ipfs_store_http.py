"""IpfsStore against a scripted HTTP transport: the failures a real daemon rarely shows on cue.

The real daemon runs in tests/integration/storage; here each answer is chosen to hit one path:
a daemon that disagrees on the CID, lies in `cat`, breaks off, refuses connections, or is not
an IPFS RPC at all.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from storage.cid import Cid
from storage.errors import (
    CidMismatch,
    ContentMismatch,
    ContentNotFound,
    StoreResponseError,
    StoreUnavailable,
)
from storage.stores.ipfs import ADD_PARAMS, IpfsStore
from storage.unixfs import compute_cid

API = "http://user:hunter2@ipfs.test:5001"
HELLO = b"hello world\n"
HELLO_CID = compute_cid([HELLO])
Handler = Callable[[httpx.Request], httpx.Response]


class Scripted(httpx.BaseTransport):
    """Like httpx.MockTransport, but leaves the request body unread until the handler reads it,
    as a real connection that fails to connect does."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._handler(request)


def make_store(handler: Handler, **kwargs: float) -> IpfsStore:
    options: dict[str, float] = {"backoff": 0.001, **kwargs}
    return IpfsStore(API, transport=Scripted(handler), **options)  # type: ignore[arg-type]


def ok_json(payload: object) -> httpx.Response:
    return httpx.Response(200, json=payload)


def daemon_error(message: str, status: int = 500) -> httpx.Response:
    return httpx.Response(status, json={"Message": message, "Code": 0, "Type": "error"})


def serving(content: bytes, cid: Cid) -> Handler:
    """A daemon that has `cid` and answers `cat` with `content`."""

    def handler(request: httpx.Request) -> httpx.Response:
        op = request.url.path.removeprefix("/api/v0/")
        if op == "block/stat":
            return ok_json({"Key": cid.text, "Size": len(content)})
        if op == "cat":
            return httpx.Response(200, content=content)
        return daemon_error(f"unexpected {op}")

    return handler


def test_add_request_streams_a_multipart_file_with_our_import_settings() -> None:
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["method"] = request.method
        seen["path"] = request.url.path
        seen["params"] = dict(request.url.params)
        seen["type"] = request.headers["content-type"]
        seen["body"] = request.read()
        return httpx.Response(200, text=json.dumps({"Name": "envelope", "Hash": HELLO_CID.text}))

    assert make_store(handler).put(io.BytesIO(HELLO)) == HELLO_CID
    assert seen["method"] == "POST" and seen["path"] == "/api/v0/add"
    assert seen["params"] == ADD_PARAMS
    assert ADD_PARAMS["cid-version"] == "1" and ADD_PARAMS["chunker"] == "size-262144"
    boundary = str(seen["type"]).split("boundary=")[1]
    body = seen["body"]
    assert isinstance(body, bytes)
    assert body.startswith(f"--{boundary}\r\n".encode())
    assert b"Content-Type: application/octet-stream\r\n\r\nhello world\n\r\n" in body
    assert body.endswith(f"--{boundary}--\r\n".encode())


def added(cid_text: str) -> Handler:
    """A daemon that reads the upload and answers with `cid_text`."""

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return ok_json({"Name": "envelope", "Hash": cid_text})

    return handler


def test_a_daemon_with_another_cid_is_refused() -> None:
    other = compute_cid([b"something else"])
    store = make_store(added(other.text))
    with pytest.raises(CidMismatch) as info:
        store.put(io.BytesIO(HELLO))
    assert (info.value.ours, info.value.theirs) == (HELLO_CID.text, other.text)
    assert "hunter2" not in str(info.value)


def test_a_cidv0_answer_is_refused_too() -> None:
    v0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    store = make_store(added(v0))
    with pytest.raises(CidMismatch):
        store.put(io.BytesIO(HELLO))


@pytest.mark.parametrize("body", ["", "not json", json.dumps({"Name": "x"})])
def test_an_add_answer_without_a_cid(body: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(200, text=body)

    with pytest.raises(StoreResponseError, match="add"):
        make_store(handler).put(io.BytesIO(HELLO))


def test_an_add_answer_before_the_upload_ended_is_refused() -> None:
    store = make_store(lambda r: ok_json({"Name": "envelope", "Hash": HELLO_CID.text}))
    with pytest.raises(StoreResponseError, match="before reading the whole file"):
        store.put(io.BytesIO(HELLO))


def test_cat_returning_other_bytes_is_refused_and_get_leaves_no_file(tmp_path: Path) -> None:
    store = make_store(serving(b"hello w0rld\n", HELLO_CID))
    with pytest.raises(ContentMismatch) as info:
        b"".join(store.stream(HELLO_CID))
    assert info.value.expected == HELLO_CID.text
    with pytest.raises(ContentMismatch):
        store.get(HELLO_CID, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_cat_cut_short_is_refused(tmp_path: Path) -> None:
    data = os.urandom(600_000)
    cid = compute_cid([data])
    store = make_store(serving(data[:400_000], cid))
    with pytest.raises(ContentMismatch):
        store.get(cid, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_cat_that_breaks_off_midway(tmp_path: Path) -> None:
    data = os.urandom(600_000)
    cid = compute_cid([data])

    class Broken(httpx.SyncByteStream):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield data[:300_000]
            raise httpx.ReadError("connection reset by peer")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("cat"):
            return httpx.Response(200, stream=Broken())
        return ok_json({"Key": cid.text, "Size": 1})

    with pytest.raises(StoreUnavailable, match="broke off"):
        make_store(handler).get(cid, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_is_retried_then_unavailable_without_credentials() -> None:
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ConnectError("[Errno 111] Connection refused")

    store = make_store(handler, retries=3)
    with pytest.raises(StoreUnavailable) as info:
        store.has(HELLO_CID)
    assert len(attempts) == 4
    assert info.value.url == "http://ipfs.test:5001"
    assert "hunter2" not in str(info.value) and "user" not in str(info.value)
    assert "Connection refused" in str(info.value)
    assert isinstance(info.value, ConnectionError)


def test_a_transient_refusal_recovers() -> None:
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) < 3:
            raise httpx.ConnectError("refused")
        return ok_json({"Key": HELLO_CID.text, "Size": 12})

    assert make_store(handler, retries=3).has(HELLO_CID)
    assert len(attempts) == 3


def test_an_upload_is_not_retried_once_it_started() -> None:
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request.read())
        raise httpx.RemoteProtocolError("server disconnected")

    with pytest.raises(StoreUnavailable):
        make_store(handler, retries=3).put(io.BytesIO(HELLO))
    assert len(attempts) == 1


def test_an_upload_is_retried_when_it_never_connected() -> None:
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) == 1:
            raise httpx.ConnectError("refused")
        request.read()
        return ok_json({"Name": "envelope", "Hash": HELLO_CID.text})

    assert make_store(handler, retries=2).put(io.BytesIO(HELLO)) == HELLO_CID


def test_a_read_timeout_is_unavailable_not_retried() -> None:
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        raise httpx.ReadTimeout("timed out")

    with pytest.raises(StoreUnavailable, match="timed out"):
        make_store(handler, retries=3).version()
    assert len(attempts) == 1


@pytest.mark.parametrize(
    "message",
    [
        "Failed to get block stats: request timed out",  # js-ipfs
        "block was not found locally (offline): ipld: could not find bafk...",  # Kubo offline
        "context deadline exceeded",  # Kubo with timeout
    ],
)
def test_daemon_not_found_answers(message: str, tmp_path: Path) -> None:
    store = make_store(lambda r: daemon_error(message))
    assert not store.has(HELLO_CID)
    with pytest.raises(ContentNotFound) as info:
        store.stream(HELLO_CID)
    assert info.value.cid == HELLO_CID.text
    with pytest.raises(ContentNotFound):
        store.pin(HELLO_CID)
    with pytest.raises(ContentNotFound):
        store.get(HELLO_CID, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_lookups_are_bounded_on_the_daemon_side() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        return daemon_error("request timed out")

    store = make_store(handler, lookup_timeout=3.5, has_timeout=0.5)
    store.has(HELLO_CID)
    with pytest.raises(ContentNotFound):
        store.stream(HELLO_CID)
    assert seen[0] == {"arg": HELLO_CID.text, "offline": "true", "timeout": "0.5s"}
    assert seen[1] == {"arg": HELLO_CID.text, "timeout": "3.5s"}


def test_other_daemon_errors_keep_the_daemon_message() -> None:
    store = make_store(lambda r: daemon_error("repo is locked by another process"))
    with pytest.raises(StoreResponseError, match="repo is locked"):
        store.has(HELLO_CID)


@pytest.mark.parametrize("status", [404, 405])
def test_not_an_ipfs_rpc(status: int) -> None:
    store = make_store(lambda r: httpx.Response(status, text="<html>nope</html>"))
    with pytest.raises(StoreResponseError, match="Kubo-compatible"):
        store.version()


@pytest.mark.parametrize("body", ["<html>", "[1, 2]"])
def test_answers_that_are_not_json_objects(body: str) -> None:
    store = make_store(lambda r: httpx.Response(200, text=body))
    with pytest.raises(StoreResponseError, match=r"not (JSON|a JSON object)"):
        store.version()


def test_pin_checks_the_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("pin/add"):
            assert request.url.params["recursive"] == "true"
            return ok_json({"Pins": []})
        return ok_json({"Key": HELLO_CID.text, "Size": 12})

    with pytest.raises(StoreResponseError, match="does not list"):
        make_store(handler).pin(HELLO_CID)


def test_every_call_is_a_post() -> None:
    methods = set()

    def handler(request: httpx.Request) -> httpx.Response:
        methods.add(request.method)
        if request.url.path.endswith("pin/add"):
            return ok_json({"Pins": [HELLO_CID.text]})
        if request.url.path.endswith("/add"):
            request.read()
            return ok_json({"Hash": HELLO_CID.text})
        if request.url.path.endswith("cat"):
            return httpx.Response(200, content=HELLO)
        return ok_json({"Key": HELLO_CID.text, "Version": "x"})

    with make_store(handler) as store:
        store.version()
        cid = store.put(io.BytesIO(HELLO))
        store.pin(cid)
        assert store.has(cid)
        assert b"".join(store.stream(cid)) == HELLO
    assert methods == {"POST"}
