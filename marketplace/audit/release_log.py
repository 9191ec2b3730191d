"""A committee node's signed release log, as served by `GET /v1/releases?after=SEQ`.

`ReleaseLogSource` is what the auditor reads; `HttpReleaseLog` reads it over any
`httpx.Client`: a real node's URL, or an in-process `fastapi.testclient.TestClient`
(itself an httpx client) as `LocalNetwork` reaches its gateways. Nothing a node says is
trusted: the entries are checked against the chain afterwards; here they are only parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from marketplace.eip712 import MalformedSignature, ReleaseReceipt, signature_from_hex
from marketplace.errors import MarketplaceError

#: Entries per request: the gateway's maximum `limit`.
PAGE_SIZE = 1000


class ReleaseLogError(MarketplaceError):
    """A node's release log could not be read."""


class NodeUnreachable(ReleaseLogError):
    def __init__(self, node: int, reason: str) -> None:
        self.node = node
        super().__init__(f"node {node} unreachable: {reason}")


class MalformedReleaseLog(ReleaseLogError, ValueError):
    def __init__(self, node: int, reason: str) -> None:
        self.node = node
        super().__init__(f"node {node} served a malformed release log: {reason}")


@dataclass(frozen=True, slots=True)
class LoggedRelease:
    """One log entry: its sequence number, receipt and signature (empty if not 65 bytes)."""

    seq: int
    receipt: ReleaseReceipt
    signature: bytes


@dataclass(frozen=True, slots=True)
class ReleasePage:
    node: int
    address: str
    releases: tuple[LoggedRelease, ...]


class ReleaseLogSource(Protocol):
    """Where one node's log comes from."""

    def page(self, after: int, limit: int) -> ReleasePage:
        """Entries with seq > `after`, at most `limit`, in order."""
        ...


class HttpReleaseLog:
    """A node's log over HTTP; `client` carries the node's base URL."""

    def __init__(self, node: int, client: httpx.Client) -> None:
        self.node = node
        self.client = client

    @classmethod
    def connect(cls, node: int, url: str, *, timeout: float = 10.0) -> HttpReleaseLog:
        return cls(node, httpx.Client(base_url=url, timeout=timeout))

    def close(self) -> None:
        self.client.close()

    def page(self, after: int, limit: int) -> ReleasePage:
        try:
            response = self.client.get("/v1/releases", params={"after": after, "limit": limit})
        except httpx.HTTPError as e:
            raise NodeUnreachable(self.node, type(e).__name__) from e
        if response.status_code != 200:
            raise NodeUnreachable(self.node, f"HTTP {response.status_code}")
        try:
            body = response.json()
        except (ValueError, RecursionError) as e:  # a hostile node may nest deeply
            raise MalformedReleaseLog(self.node, "not JSON") from e
        return parse_page(self.node, body)


def parse_page(node: int, body: Any) -> ReleasePage:
    """Read one `GET /v1/releases` answer (DESIGN §5 wire format)."""
    if not isinstance(body, dict) or not isinstance(body.get("releases"), list):
        raise MalformedReleaseLog(node, "no `releases` list")
    entries = []
    for raw in body["releases"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("seq"), int):
            raise MalformedReleaseLog(node, "an entry without an integer `seq`")
        receipt_json = raw.get("receipt")
        if not isinstance(receipt_json, dict):
            raise MalformedReleaseLog(node, f"entry {raw['seq']} has no receipt")
        try:
            receipt = ReleaseReceipt.from_message(receipt_json)
        except ValueError as e:
            raise MalformedReleaseLog(node, f"entry {raw['seq']}: {e}") from e
        try:
            signature = signature_from_hex(raw.get("receiptSignature"))  # type: ignore[arg-type]
        except MalformedSignature:
            signature = b""
        entries.append(LoggedRelease(raw["seq"], receipt, signature))
    return ReleasePage(node, str(body.get("address", "")), tuple(entries))


def fetch_log(source: ReleaseLogSource, *, page_size: int = PAGE_SIZE) -> list[LoggedRelease]:
    """Every entry of a node's log, page by page."""
    entries: list[LoggedRelease] = []
    after = 0
    while True:
        page = source.page(after, page_size)
        entries.extend(page.releases)
        if len(page.releases) < page_size:
            return entries
        if page.releases[-1].seq <= after:
            raise MalformedReleaseLog(page.node, "sequence numbers do not increase")
        after = page.releases[-1].seq
