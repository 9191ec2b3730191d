"""A small market history on the in-process `LocalNetwork`, for the auditor to replay.

Two listings (auto-approved and consent-only), three stored versions, debits in every
end state (active, consented then revoked, cancelled, rejected, still requested), key
releases by every node, claims, a withdrawal, and every release anchored.

The chain's clock is moved forward (eth-tester time travel) to let escrow accrue, so the
in-process gateways (`LocalNetwork` gives them the chain's clock) and the buyers here read
time from the chain, as nodes and wallets on a live chain read a wall clock that agrees
with it: a gateway judging a request's expiry by
the wall clock, days behind the chain, would release at blocks stamped after the request
expired (the auditor reports that as `outside_request_window`).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount

from marketplace.audit.auditor import Auditor
from marketplace.audit.release_log import HttpReleaseLog, ReleaseLogSource
from marketplace.audit.report import AuditReport
from marketplace.eip712 import KeyRequest, sign
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import CapsuleContext, make_capsule
from marketplace.localnet import LocalNetwork
from storage.cid import Cid
from storage.keys import DataKey

PRICE = 10**15
DAY = 86_400


def warning_kinds(report: AuditReport) -> list[str]:
    """The report's warnings, but the one about a dealt committee: `LocalNetwork` deploys
    with the trusted dealer, so every audit here warns `trusted_dealer` once (epoch 1)."""
    dealt = [w for w in report.warnings if w.kind == "trusted_dealer"]
    assert len(dealt) <= 1
    return [w.kind for w in report.warnings if w.kind != "trusted_dealer"]


@dataclass
class Scenario:
    net: LocalNetwork
    owner: LocalAccount
    auto_listing: int
    consent_listing: int
    cids: list[Cid] = field(default_factory=list)
    #: a debit on the consent-only listing that was requested and never consented
    unconsented_debit: int = 0
    active_debit: int = 0
    buyers: dict[int, LocalAccount] = field(default_factory=dict)

    def now(self) -> int:
        """The chain's time: its latest block's, or the wall clock if that is later (the
        clock `LocalNetwork`'s gateways judge expiries by)."""
        return int(self.net.clock())

    def sources(self) -> dict[int, ReleaseLogSource]:
        return {i: HttpReleaseLog(i, client) for i, client in self.net.clients.items()}

    def auditor(self, sources: dict[int, ReleaseLogSource] | None = None, **kwargs: int) -> Auditor:
        return Auditor(self.net.market, self.net.store, sources or self.sources(), **kwargs)

    def buyer(self) -> LocalAccount:
        return self.net.account()

    def publish(self, listing_id: int, size: int) -> int:
        market = self.net.market
        content = os.urandom(size)
        cid = self.net.store.put(io.BytesIO(content))
        version = market.listing(listing_id).version_count + 1
        ctx = CapsuleContext(market.chain_id, market.address, listing_id, version, cid.binary)
        capsule = make_capsule(DataKey.generate(), ctx, self.net.dealt.keys.committee_key)
        market.publish_version(self.owner, listing_id, cid.binary, capsule.to_bytes())
        self.cids.append(cid)
        return version

    def request(self, buyer: LocalAccount, listing_id: int, periods: int = 3) -> int:
        key = BuyerSecretKey.from_account(buyer, self.net.domain).public_key().key
        debit_id = self.net.market.request_debit(
            buyer, listing_id, periods=periods, buyer_key=key
        ).value
        self.buyers[debit_id] = buyer
        return debit_id

    def release(self, buyer: LocalAccount, debit_id: int, version: int) -> None:
        """Ask every node for its share (each logs one release)."""
        self.net.sync()
        for client in self.net.clients.values():
            request = KeyRequest(debit_id, version, self.now() + 60, os.urandom(32))
            body = {"request": request.to_message(),
                    "signature": "0x" + sign(buyer, self.net.domain, request).hex()}
            response = client.post("/v1/keys", json=body)
            assert response.status_code == 200, response.text


def build_scenario(folder: Path) -> Scenario:
    net = LocalNetwork.start(folder / "store")
    owner = net.account()
    market = net.market
    auto = market.create_listing(owner, price_per_period=PRICE, period_seconds=DAY,
                                 auto_approve=True).value
    manual = market.create_listing(owner, price_per_period=2 * PRICE, period_seconds=DAY,
                                   auto_approve=False).value
    s = Scenario(net, owner, auto, manual)
    auto_v1 = s.publish(auto, 600_000)        # a dag-pb file of three leaves
    manual_v1 = s.publish(manual, 1_000)      # a single raw block

    buyer_a = s.buyer()
    s.active_debit = s.request(buyer_a, auto, periods=7)
    s.release(buyer_a, s.active_debit, auto_v1)

    buyer_c = s.buyer()
    consented = s.request(buyer_c, manual)
    market.consent(owner, consented)
    s.release(buyer_c, consented, manual_v1)
    net.dev.advance(DAY // 2)
    market.revoke(owner, consented)

    buyer_d = s.buyer()
    market.cancel(buyer_d, s.request(buyer_d, manual))
    s.unconsented_debit = s.request(s.buyer(), manual)
    rejected = s.request(s.buyer(), manual)
    market.reject(owner, rejected)

    s.publish(auto, 300_000)
    net.dev.advance(DAY)
    market.claim(owner, [s.active_debit])
    market.withdraw(owner)
    net.sync()
    return s
