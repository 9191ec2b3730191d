"""A committee node's signed release log, as served by `GET /v1/releases?after=SEQ`.

`ReleaseLogSource` is what the auditor reads; `HttpReleaseLog` reads it over any
`httpx.Client`: a real node's URL, or an in-process `fastapi.testclient.TestClient`
(itself an httpx client) as `LocalNetwork` reaches its gateways. Nothing a node says is
trusted: the entries are checked against the chain afterwards; here they are only parsed,
and what a node may cost the auditor is bounded: bytes per page (counted on the wire,
never after decompression), seconds per page, and entries per log (`fetch_log`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import httpx
from eth_utils.address import is_address, to_checksum_address

from marketplace import jsonsafe
from marketplace.eip712 import (
    KeyRequest,
    MalformedSignature,
    PartialReceipt,
    PartialRequest,
    ReleaseReceipt,
    signature_from_hex,
)
from marketplace.errors import MarketplaceError

#: Entries per request: the gateway's maximum `limit`.
PAGE_SIZE = 1000

#: Raw bytes one page may take. An entry with the hardening fields (receipt, request, two
#: signatures) is about 1.1 KiB as the gateway writes it and at most ~1.4 KiB with every
#: integer at its type's maximum, so 1000 entries stay under 1.5 MiB; the rest is room for
#: the page's `anchors` list.
MAX_PAGE_BYTES = 4 * 1024 * 1024

#: Seconds one page may take in all (httpx's own timeout bounds each read, not the sum, so
#: a node trickling a byte at a time would otherwise hold the audit for ever).
PAGE_DEADLINE = 30.0

#: `LoggedRelease.request_problem` of an entry that carries no request at all.
REQUEST_MISSING = "missing"


class ReleaseLogError(MarketplaceError):
    """A node's release log could not be read; `kind` is the audit finding it becomes."""

    kind = "node_unreachable"


class NodeUnreachable(ReleaseLogError):
    def __init__(self, node: int, reason: str) -> None:
        self.node = node
        self.reason = reason
        super().__init__(f"node {node} unreachable: {reason}")


class MalformedReleaseLog(ReleaseLogError, ValueError):
    kind = "log_malformed"

    def __init__(self, node: int, reason: str) -> None:
        self.node = node
        self.reason = reason
        super().__init__(f"node {node} served a malformed release log: {reason}")


class OversizedReleasePage(MalformedReleaseLog):
    """A page larger than the auditor reads (counted in raw bytes, as they arrived)."""

    kind = "log_oversized"

    def __init__(self, node: int, limit: int) -> None:
        self.limit = limit
        super().__init__(node, f"a page of more than {limit} bytes")


@dataclass(frozen=True, slots=True)
class LoggedRelease:
    """One log entry: its sequence number, the receipt and its signature (empty if not
    65 bytes), and the buyer-signed `KeyRequest` that caused the release.

    `request` is None when the node logged none or an unreadable one; `request_problem`
    then says which (`REQUEST_MISSING` or the parse error), for the checks to report.
    """

    seq: int
    receipt: ReleaseReceipt
    signature: bytes
    request: KeyRequest | None = None
    request_signature: bytes = b""
    request_problem: str = REQUEST_MISSING


@dataclass(frozen=True, slots=True)
class LoggedPartial:
    """A partial release of an aggregate debit in the same log (`"kind": "partial"`): the
    `PartialReceipt` signed in the domain of the AggregateMarket `aggregator`, and the
    buyer-signed `PartialRequest` that asked for it (None with `request_problem` as for a
    key release)."""

    seq: int
    aggregator: str
    receipt: PartialReceipt
    signature: bytes
    request: PartialRequest | None = None
    request_signature: bytes = b""
    request_problem: str = REQUEST_MISSING


#: One entry of a node's log: a key release or a partial release.
LogEntry: TypeAlias = LoggedRelease | LoggedPartial


@dataclass(frozen=True, slots=True)
class ReleasePage:
    node: int
    address: str
    releases: tuple[LogEntry, ...]


class ReleaseLogSource(Protocol):
    """Where one node's log comes from."""

    def page(self, after: int, limit: int) -> ReleasePage:
        """Entries with seq > `after`, at most `limit`, in order."""
        ...


class HttpReleaseLog:
    """A node's log over HTTP; `client` carries the node's base URL.

    The answer is read as raw bytes (`Accept-Encoding: identity`; a content-encoded answer
    is refused unread, so a small gzip bomb costs nothing) up to `max_page_bytes`, within
    `page_deadline` seconds.
    """

    def __init__(
        self,
        node: int,
        client: httpx.Client,
        *,
        max_page_bytes: int = MAX_PAGE_BYTES,
        page_deadline: float = PAGE_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_page_bytes < 1 or page_deadline <= 0:
            raise ValueError("max_page_bytes and page_deadline must be positive")
        self.node = node
        self.client = client
        self.max_page_bytes = max_page_bytes
        self.page_deadline = page_deadline
        self.clock = clock

    @classmethod
    def connect(cls, node: int, url: str, *, timeout: float = 10.0) -> HttpReleaseLog:
        """A source for `url`; `timeout` bounds each read and each whole page."""
        return cls(node, httpx.Client(base_url=url, timeout=timeout), page_deadline=timeout)

    def close(self) -> None:
        self.client.close()

    def page(self, after: int, limit: int) -> ReleasePage:
        raw = self._read(after, limit)
        try:
            body = jsonsafe.loads(raw)
        except (ValueError, RecursionError) as e:  # a hostile node may nest deeply
            raise MalformedReleaseLog(self.node, "not JSON") from e
        return parse_page(self.node, body)

    def _read(self, after: int, limit: int) -> bytes:
        deadline = self.clock() + self.page_deadline
        body = bytearray()
        try:
            with self.client.stream(
                "GET", "/v1/releases", params={"after": after, "limit": limit},
                headers={"Accept-Encoding": "identity"},
            ) as response:
                if response.status_code != 200:
                    raise NodeUnreachable(self.node, f"HTTP {response.status_code}")
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise MalformedReleaseLog(
                        self.node, f"a {encoding[:20]!r}-encoded answer to a request that "
                        "accepts only identity (refused unread)",
                    )
                if _declared_length(response) > self.max_page_bytes:
                    raise OversizedReleasePage(self.node, self.max_page_bytes)
                for chunk in response.iter_raw():
                    body += chunk
                    if len(body) > self.max_page_bytes:
                        raise OversizedReleasePage(self.node, self.max_page_bytes)
                    if self.clock() > deadline:
                        raise NodeUnreachable(
                            self.node, f"no complete page within {self.page_deadline:g} s"
                        )
        except httpx.HTTPError as e:
            raise NodeUnreachable(self.node, type(e).__name__) from e
        return bytes(body)


def _declared_length(response: httpx.Response) -> int:
    try:
        return int(response.headers.get("content-length", "0"))
    except ValueError:
        return 0


def parse_page(node: int, body: Any) -> ReleasePage:
    """Read one `GET /v1/releases` answer (docs/protocol.md wire format)."""
    if not isinstance(body, dict) or not isinstance(body.get("releases"), list):
        raise MalformedReleaseLog(node, "no `releases` list")
    entries: list[LogEntry] = []
    for raw in body["releases"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("seq"), int):
            raise MalformedReleaseLog(node, "an entry without an integer `seq`")
        receipt_json = raw.get("receipt")
        if not isinstance(receipt_json, dict):
            raise MalformedReleaseLog(node, f"entry {raw['seq']} has no receipt")
        kind = raw.get("kind", "key")
        if kind == "partial":
            entries.append(_partial(node, raw, receipt_json))
            continue
        if kind != "key":
            raise MalformedReleaseLog(node, f"entry {raw['seq']} has an unknown kind")
        try:
            receipt = ReleaseReceipt.from_message(receipt_json)
        except ValueError as e:
            raise MalformedReleaseLog(node, f"entry {raw['seq']}: {e}") from e
        entries.append(LoggedRelease(raw["seq"], receipt, _signature(raw.get("receiptSignature")),
                                     *_request(raw)))
    return ReleasePage(node, str(body.get("address", "")), tuple(entries))


def _partial(node: int, raw: dict[str, Any], receipt_json: dict[str, Any]) -> LoggedPartial:
    """A `"kind": "partial"` entry (protocol §20): its AggregateMarket, receipt and request."""
    aggregator = raw.get("aggregator")
    if not isinstance(aggregator, str) or not is_address(aggregator):
        raise MalformedReleaseLog(node, f"entry {raw['seq']}: no AggregateMarket address")
    try:
        receipt = PartialReceipt.from_message(receipt_json)
    except ValueError as e:
        raise MalformedReleaseLog(node, f"entry {raw['seq']}: {e}") from e
    request: PartialRequest | None = None
    request_signature, problem = b"", ""
    message = raw.get("request")
    if message is None and raw.get("requestSignature") is None:
        problem = REQUEST_MISSING
    elif not isinstance(message, dict):
        problem = "the request is not an object"
    else:
        try:
            request = PartialRequest.from_message(message)
            request_signature = signature_from_hex(raw.get("requestSignature"))  # type: ignore[arg-type]
        except ValueError as e:
            request, problem = None, str(e)
    return LoggedPartial(raw["seq"], to_checksum_address(aggregator), receipt,
                         _signature(raw.get("receiptSignature")), request, request_signature,
                         problem)


def _signature(value: object) -> bytes:
    try:
        return signature_from_hex(value)  # type: ignore[arg-type]
    except MalformedSignature:
        return b""


def _request(raw: dict[str, Any]) -> tuple[KeyRequest | None, bytes, str]:
    """(request, its signature, problem): a missing or unreadable request is recorded for
    the checks to report, never a reason to drop the node's whole log."""
    message, signature = raw.get("request"), raw.get("requestSignature")
    if message is None and signature is None:
        return None, b"", REQUEST_MISSING
    if not isinstance(message, dict):
        return None, b"", "the request is not an object"
    try:
        request = KeyRequest.from_message(message)
        return request, signature_from_hex(signature), ""  # type: ignore[arg-type]
    except ValueError as e:
        return None, b"", str(e)


@dataclass(frozen=True, slots=True)
class FetchedLog:
    """The entries read from one node, and whether it had more than the auditor reads."""

    entries: list[LogEntry]
    cut: bool = False


def fetch_log(
    source: ReleaseLogSource, *, page_size: int = PAGE_SIZE, max_entries: int | None = None
) -> FetchedLog:
    """A node's log page by page, at most `max_entries` entries (`cut` if it had more: one
    entry beyond the bound is asked for, so a log of exactly `max_entries` is not cut)."""
    if page_size < 1 or (max_entries is not None and max_entries < 0):
        raise ValueError("page_size must be >= 1 and max_entries >= 0")
    entries: list[LogEntry] = []
    after = 0
    while True:
        want = page_size
        if max_entries is not None:
            want = min(page_size, max_entries + 1 - len(entries))
        page = source.page(after, want)
        if len(page.releases) > want:
            raise MalformedReleaseLog(page.node, f"{len(page.releases)} entries for a page "
                                      f"of at most {want}")
        entries.extend(page.releases)
        if max_entries is not None and len(entries) > max_entries:
            return FetchedLog(entries[:max_entries], cut=True)
        if len(page.releases) < want:
            return FetchedLog(entries)
        if page.releases[-1].seq <= after:
            raise MalformedReleaseLog(page.node, "sequence numbers do not increase")
        after = page.releases[-1].seq
