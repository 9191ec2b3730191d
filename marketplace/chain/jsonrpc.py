"""Bare JSON-RPC over one keep-alive http.client connection per thread, without web3.

Shared by the gateway's hot reads (`hot_reads.HotReads`: ~0.1 ms per call against ~3 ms
through web3) and the CLI's chain reads (`light.LightMarket`: no web3 import, which
alone costs 0.7-0.9 s of a command's start-up). Transport failures raise
`ChainUnavailable`, error answers `ChainError`; revert data is decoded into the
contract's own errors (`RevertDecoder`), as `MarketClient` does.
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

from marketplace.chain.errors import ChainError, ChainUnavailable, ContractRevert
from marketplace.chain.reverts import RevertDecoder

DEFAULT_TIMEOUT = 10.0


def redact(url: str) -> str:
    """A URL fit for messages and logs: scheme, host and port only (no keys, no paths)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


class JsonRpc:
    """JSON-RPC calls and batches to an http(s) node."""

    def __init__(
        self, url: str, reverts: RevertDecoder, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) JSON-RPC URL: {redact(url)}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.endpoint = redact(url)
        self._reverts = reverts
        self._timeout = timeout
        self._local = threading.local()

    def call(self, method: str, params: list[Any]) -> Any:
        """The `result` of one call."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        return self._result(method, self._round_trip(body))

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one JSON-RPC batch; results in the calls' order. The first
        error in call order is raised, as if the calls had been made one by one."""
        body = json.dumps([
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ])
        answers = self._round_trip(body)
        if not isinstance(answers, list):
            raise ChainError(f"chain node {self.endpoint} answered a batch with a non-list")
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        if set(by_id) != set(range(len(calls))):
            raise ChainError(f"chain node {self.endpoint} answered a batch incompletely")
        return [self._result(method, by_id[i]) for i, (method, _) in enumerate(calls)]

    def close(self) -> None:
        """Close this thread's connection (the next call opens a new one)."""
        self._drop()

    def _round_trip(self, body: str) -> Any:
        try:
            answer = self._post(body)
        except TimeoutError as e:  # a node that does not answer gets no second wait
            self._drop()
            raise ChainUnavailable(self.endpoint, type(e).__name__) from e
        except (OSError, http.client.HTTPException):
            self._drop()  # a kept-alive connection the server closed: one fresh try
            try:
                answer = self._post(body)
            except (OSError, http.client.HTTPException) as e:
                self._drop()
                # named as through web3 (requests' ConnectionError): the same CLI message
                # whether a command reads through web3 or here
                raise ChainUnavailable(self.endpoint, "ConnectionError") from e
        return answer

    def _result(self, method: str, answer: Any) -> Any:
        if not isinstance(answer, dict):
            raise ChainError(f"chain node {self.endpoint} answered {method} with a non-object")
        error = answer.get("error")
        if error is not None:
            raise self._error(method, error)
        return answer.get("result")

    def _post(self, body: str) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = kind(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        conn.request("POST", self._path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        if response.status != 200:
            raise ChainError(f"chain node {self.endpoint} answered HTTP {response.status}")
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ChainError(f"chain node {self.endpoint} answered with invalid JSON") from e

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _error(self, method: str, error: Any) -> ChainError:
        data = error.get("data") if isinstance(error, dict) else None
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            try:
                return self._reverts.decode(bytes.fromhex(data[2:]))
            except ValueError:
                pass
        message = error.get("message") if isinstance(error, dict) else error
        if "revert" in str(message).lower():
            return ContractRevert({"message": str(message)}, name="revert")
        return ChainError(f"chain node {self.endpoint} refused {method}: {message}")


def quantity(value: Any, what: str) -> int:
    """A hex quantity of an answer (`0x1a`), or ChainError."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ChainError(f"chain node answered a {what} that is not a hex quantity")
    try:
        return int(value, 16)
    except ValueError as e:
        raise ChainError(f"chain node answered a {what} that is not a hex quantity") from e


def hex_bytes(value: Any, what: str, endpoint: str, size: int | None = None) -> bytes:
    """The bytes of a 0x-hex answer (of exactly `size` bytes when given), or ChainError."""
    text = value[2:] if isinstance(value, str) and value[:2] == "0x" else None
    try:
        data = bytes.fromhex(text) if text is not None else None
    except ValueError:
        data = None  # not hex: refused just below
    if data is None or (size is not None and len(data) != size):
        raise ChainError(f"chain node {endpoint} answered {what} with {value!r:.80}")
    return data
