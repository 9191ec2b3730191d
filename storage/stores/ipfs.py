"""An IPFS node as a store, over the Kubo HTTP RPC (`/api/v0/...`, POST only) with httpx.

Any Kubo-compatible daemon works; tests run js-ipfs. Everything streams both ways. `put`
computes our CID from the bytes as they are uploaded and refuses a daemon that answers with
another one (different chunker, leaves, layout or CID version). Reads check the content
against its CID. Connection failures are retried a few times, then reported as
`StoreUnavailable` naming the API URL (never its credentials); a CID the daemon cannot find
within `lookup_timeout` is `ContentNotFound`.

Calls used, and what js-ipfs 0.66 does with them (it ignores query options it does not know):
- `add` with `cid-version=1, raw-leaves=true, chunker=size-262144, hash=sha2-256, pin=true,
  cid-base=base32`: js-ipfs honours all of them (max 174 links is its and Kubo's default).
- `block/stat` with `timeout=<n>s`: the bounded existence check. Without it both daemons wait
  indefinitely for an unknown block from the network. `has` also sends `offline=true`, which
  Kubo honours (answers at once) and js-ipfs ignores (it waits until the timeout).
- `cat`, streamed, with no server-side timeout (it would cut a long download short); a stalled
  stream trips the client's read timeout instead.
- `pin/add` with `recursive=true`.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

import httpx

from storage.cid import Cid
from storage.errors import (
    CidMismatch,
    ContentNotFound,
    InvalidCid,
    StoreResponseError,
    StoreUnavailable,
)
from storage.stores.base import save_verified, verified
from storage.unixfs import CHUNK_SIZE, READ_SIZE, DagBuilder

log = logging.getLogger(__name__)

DEFAULT_API_URL = "http://127.0.0.1:5001"
ADD_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "chunker": f"size-{CHUNK_SIZE}",
    "hash": "sha2-256",
    "pin": "true",
    "cid-base": "base32",
}
_NOT_FOUND_HINTS = ("timed out", "not found", "could not find", "deadline exceeded")
_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)
_T = TypeVar("_T")


class _Upload:
    """A one-file multipart body streamed from `source`, hashed into our CID on the way."""

    def __init__(self, source: BinaryIO) -> None:
        self.boundary = f"datadebit-{secrets.token_hex(12)}"
        self.builder = DagBuilder()
        self.started = False
        self.finished = False
        self._source = source

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        yield (
            f"--{self.boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="envelope"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        while piece := self._source.read(READ_SIZE):
            self.builder.update(piece)
            yield piece
        self.finished = True
        yield f"\r\n--{self.boundary}--\r\n".encode()


class IpfsStore:
    """A Kubo-compatible daemon at `api_url` (the base URL, without `/api/v0`).

    `timeout`: seconds any request may wait for the daemon's next bytes; `connect_timeout`:
    for a connection; `lookup_timeout`: for the daemon to find a CID before it counts as not
    found; `has_timeout`: the same for `has`; `retries` and `backoff` (seconds, doubled per
    attempt): for connection failures.
    """

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        lookup_timeout: float = 10.0,
        has_timeout: float = 2.0,
        retries: int = 2,
        backoff: float = 0.25,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = httpx.URL(api_url.rstrip("/"))
        self.url = str(url.copy_with(username=None, password=None))
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._lookup_timeout = lookup_timeout
        self._has_timeout = has_timeout
        self._retries = retries
        self._backoff = backoff
        self._client = httpx.Client(
            base_url=f"{url}/api/v0/", timeout=self._timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"IpfsStore({self.url!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> IpfsStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------------

    def _with_retries(
        self, operation: str, send: Callable[[], _T], may_retry: Callable[[], bool]
    ) -> _T:
        """Run `send`, retrying connection failures; any transport failure ends as an error."""
        for attempt in range(self._retries + 1):
            try:
                return send()
            except _RETRYABLE as e:
                if attempt == self._retries or not may_retry():
                    raise StoreUnavailable(self.url, f"{operation}: {_reason(e)}") from e
                log.debug("%s: %s; retry %d", operation, _reason(e), attempt + 1)
                time.sleep(self._backoff * 2**attempt)
            except httpx.TimeoutException as e:
                raise StoreUnavailable(self.url, f"{operation}: timed out ({_reason(e)})") from e
            except httpx.TransportError as e:
                raise StoreUnavailable(self.url, f"{operation}: {_reason(e)}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(
        self, operation: str, params: dict[str, str], timeout: float | None = None
    ) -> dict[str, Any]:
        """POST a small request and return its JSON object, raising on any error answer."""
        extent = (
            self._timeout
            if timeout is None
            else httpx.Timeout(timeout, connect=self._timeout.connect)
        )

        def send() -> httpx.Response:
            return self._client.post(operation, params=params, timeout=extent)

        response = self._with_retries(operation, send, lambda: True)
        if response.status_code != httpx.codes.OK:
            raise self._error(operation, response, params.get("arg"))
        try:
            answer = response.json()
        except ValueError as e:
            raise StoreResponseError(self.url, operation, "the answer is not JSON") from e
        if not isinstance(answer, dict):
            raise StoreResponseError(self.url, operation, "the answer is not a JSON object")
        return answer

    def _error(
        self, operation: str, response: httpx.Response, cid: str | None
    ) -> ContentNotFound | StoreResponseError:
        """The daemon's error answer as one of ours: not-found, or the daemon's own message."""
        detail = _message(response)
        if cid is not None and any(hint in detail.lower() for hint in _NOT_FOUND_HINTS):
            return ContentNotFound(cid, self.url, detail)
        if response.status_code in (httpx.codes.NOT_FOUND, httpx.codes.METHOD_NOT_ALLOWED):
            detail += " (is this the RPC API of a Kubo-compatible daemon?)"
        return StoreResponseError(self.url, operation, f"HTTP {response.status_code}: {detail}")

    # -- the store ----------------------------------------------------------------------------

    def version(self) -> str:
        """The daemon's version string: a cheap check that the API answers."""
        return str(self._call("version", {}).get("Version", "unknown"))

    def put(self, source: BinaryIO) -> Cid:
        """Upload `source`; the daemon pins it and must agree with us on its CID."""
        upload = _Upload(source)

        def send() -> httpx.Response:
            return self._client.post(
                "add",
                params=ADD_PARAMS,
                content=iter(upload),
                headers={"Content-Type": upload.content_type},
            )

        response = self._with_retries("add", send, lambda: not upload.started)
        if response.status_code != httpx.codes.OK:
            raise self._error("add", response, None)
        if not upload.finished:
            raise StoreResponseError(self.url, "add", "answered before reading the whole file")
        ours = upload.builder.finish()
        theirs = _added_cid(response, self.url)
        if theirs != ours.text:
            raise CidMismatch(ours.text, theirs, self.url)
        return ours

    def _require(self, cid: Cid) -> None:
        """Bounded check that the daemon can find the root block (or raise ContentNotFound)."""
        params = {"arg": cid.text, "timeout": f"{self._lookup_timeout:g}s"}
        try:
            self._call("block/stat", params, timeout=self._lookup_timeout + 5.0)
        except ContentNotFound as e:
            detail = f"within {self._lookup_timeout:g} s; daemon: {e.detail}"
            raise ContentNotFound(cid.text, self.url, detail) from e

    def stream(self, cid: Cid) -> Iterator[bytes]:
        """`cat`, streamed and checked against `cid`; not-found is raised here, at once."""
        return verified(cid, self._fetch(cid))

    def get(self, cid: Cid, dest: Path) -> int:
        """Download to `dest`, which appears only once the content matched `cid`."""
        return save_verified(cid, self._fetch(cid), dest)

    def _fetch(self, cid: Cid) -> Iterator[bytes]:
        self._require(cid)
        return self._cat(cid)

    def _cat(self, cid: Cid) -> Iterator[bytes]:
        request = self._client.build_request("POST", "cat", params={"arg": cid.text})
        response = self._with_retries(
            "cat", lambda: self._client.send(request, stream=True), lambda: True
        )
        try:
            if response.status_code != httpx.codes.OK:
                response.read()
                raise self._error("cat", response, cid.text)
            yield from response.iter_bytes(READ_SIZE)
        except httpx.TimeoutException as e:
            raise StoreUnavailable(self.url, f"cat {cid.text} stalled: {_reason(e)}") from e
        except httpx.TransportError as e:
            raise StoreUnavailable(self.url, f"cat {cid.text} broke off: {_reason(e)}") from e
        finally:
            response.close()

    def pin(self, cid: Cid) -> None:
        self._require(cid)
        answer = self._call("pin/add", {"arg": cid.text, "recursive": "true", "cid-base": "base32"})
        pins = answer.get("Pins", [])
        if cid.text not in pins:
            raise StoreResponseError(self.url, "pin/add", f"answer does not list {cid.text}")

    def has(self, cid: Cid) -> bool:
        params = {"arg": cid.text, "offline": "true", "timeout": f"{self._has_timeout:g}s"}
        try:
            self._call("block/stat", params, timeout=self._has_timeout + 5.0)
        except ContentNotFound:
            return False
        return True


def _added_cid(response: httpx.Response, url: str) -> str:
    """The root CID from `add`'s newline-delimited JSON (the last entry with a Hash)."""
    hashes = []
    try:
        entries = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    except ValueError as e:
        raise StoreResponseError(url, "add", "the answer is not JSON lines") from e
    for entry in entries:
        if isinstance(entry, dict) and "Hash" in entry:
            hashes.append(str(entry["Hash"]))
    if not hashes:
        raise StoreResponseError(url, "add", "no CID in the answer")
    try:
        return Cid.parse(hashes[-1]).text
    except InvalidCid:
        return hashes[-1]


def _message(response: httpx.Response) -> str:
    """The daemon's error text (Kubo and js-ipfs answer `{"Message": ...}`), on one line."""
    try:
        text = str(response.json().get("Message", ""))
    except (ValueError, AttributeError):
        text = response.text
    return " ".join(text.split())[:300] or response.reason_phrase


def _reason(error: httpx.HTTPError) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
