"""Signed release-log entries built by hand, as a cheating (or honest) node would log them:
the receipt with the hardening fields, signed by a node key, and the buyer's signed
`KeyRequest` beside it. Tests change one thing at a time to stage each attack."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.audit.release_log import (
    REQUEST_MISSING,
    LoggedRelease,
    ReleaseLogSource,
    ReleasePage,
    fetch_log,
)
from marketplace.eip712 import Eip712Domain, KeyRequest, ReleaseReceipt, digest, sign
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.merkle import merkle_root
from tests.audit.scenario import Scenario


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


# -- on the scenario's network ----------------------------------------------------------


def forged(
    scenario: Scenario, node: int, debit_id: int, version: int, *,
    signer: LocalAccount | None = None, block: int | None = None,
    buyer: LocalAccount | None = None,
) -> LoggedRelease:
    """A release as node `node` would log it: the receipt signed by `signer` (default: the
    node's own key), dated `block` (default: the latest), for a live request signed by
    `buyer` (default: the debit's buyer), naming that buyer and their key."""
    net = scenario.net
    buyer = buyer or scenario.buyers[debit_id]
    request, signature = signed_request(buyer, net.domain, debit_id, version, scenario.now() + 60)
    return entry(
        0, domain=net.domain, node=node, node_account=signer or net.node_accounts[node - 1],
        request=request, request_signature=signature, buyer=buyer.address,
        buyer_key=BuyerSecretKey.from_account(buyer, net.domain).public_key().key,
        block=net.market.w3.eth.block_number if block is None else block,
    )


def anchor(scenario: Scenario, node: int, entries: list[LoggedRelease]) -> int:
    """Anchor `entries` on-chain with node `node`'s key, as the node does; the block."""
    net = scenario.net
    root = merkle_root([digest(net.domain, e.receipt) for e in entries])
    sent = net.market.anchor_releases(net.node_accounts[node - 1], root, len(entries))
    return sent.block_number


def serve(scenario: Scenario, node: int, log: list[LoggedRelease]) -> dict[int, ReleaseLogSource]:
    """The scenario's log sources, with node `node` serving `log` instead of its own."""
    sources = scenario.sources()
    sources[node] = ListLog(log, node)
    return sources


def real_log(scenario: Scenario, node: int) -> list[LoggedRelease]:
    return fetch_log(scenario.sources()[node]).entries


def append_forged(scenario: Scenario, node: int, extra: list[LoggedRelease],
                  *, anchored: bool = True) -> dict[int, ReleaseLogSource]:
    """Node `node` logs `extra` after its real releases and (by default) anchors them."""
    if anchored:
        anchor(scenario, node, extra)
    return serve(scenario, node, [*real_log(scenario, node), *extra])


def force_ether(w3: Web3, to: str, wei: int) -> None:
    """Create-and-SELFDESTRUCT a contract holding `wei`, beneficiary `to`."""
    init_code = bytes([0x73]) + bytes.fromhex(to[2:]) + bytes([0xFF])
    tx_hash = w3.eth.send_transaction(
        {"from": w3.eth.accounts[0], "data": init_code, "value": wei}  # type: ignore[typeddict-item]
    )
    assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
