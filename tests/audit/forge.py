"""Signed release-log entries built by hand, as a cheating (or honest) node would log them:
the receipt with the hardening fields, signed by a node key, and the buyer's signed
`KeyRequest` beside it. Tests change one thing at a time to stage each attack."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

from eth_account.signers.local import LocalAccount

from marketplace.audit.release_log import REQUEST_MISSING, LoggedRelease, ReleasePage
from marketplace.eip712 import Eip712Domain, KeyRequest, ReleaseReceipt, digest, sign


def signed_request(
    buyer: LocalAccount, domain: Eip712Domain, debit_id: int, version: int, expiry: int
) -> tuple[KeyRequest, bytes]:
    request = KeyRequest(debit_id, version, expiry, os.urandom(32))
    return request, sign(buyer, domain, request)


def entry(
    seq: int,
    *,
    domain: Eip712Domain,
    node: int,
    node_account: LocalAccount,
    request: KeyRequest,
    request_signature: bytes,
    buyer: str,
    buyer_key: bytes,
    block: int,
    epoch: int = 1,
) -> LoggedRelease:
    """An entry whose receipt names `request` (by digest), `buyer` and `buyer_key`."""
    receipt = ReleaseReceipt.for_sealed_share(
        request.debit_id, request.version, node, os.urandom(100), block, epoch=epoch,
        buyer=buyer, buyer_key=buyer_key, request_digest=digest(domain, request),
    )
    return LoggedRelease(seq, receipt, sign(node_account, domain, receipt), request,
                         request_signature, "")


def resign(item: LoggedRelease, node_account: LocalAccount, domain: Eip712Domain,
           **changes: object) -> LoggedRelease:
    """The entry with receipt fields changed and signed again (the node means it)."""
    receipt = replace(item.receipt, **changes)  # type: ignore[arg-type]
    return replace(item, receipt=receipt, signature=sign(node_account, domain, receipt))


def without_request(item: LoggedRelease) -> LoggedRelease:
    return replace(item, request=None, request_signature=b"", request_problem=REQUEST_MISSING)


def buyer_key_hash(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class ListLog:
    """A release-log source serving a fixed list of entries (renumbered 1..n)."""

    def __init__(self, entries: list[LoggedRelease], node: int = 1, address: str = "") -> None:
        self.entries = [replace(e, seq=i) for i, e in enumerate(entries, start=1)]
        self.node = node
        self.address = address

    def page(self, after: int, limit: int) -> ReleasePage:
        rows = tuple(e for e in self.entries if e.seq > after)[:limit]
        return ReleasePage(self.node, self.address, rows)
