"""A market that lived through a reshare, on eth-tester, for the auditor's epoch checks.

Epoch 1: a dealt 2-of-3 committee (A1, A2, A3), deployed with `deploy_dealt`. Epoch 2: a
2-of-3 committee (B1, A3, B3) reshared from it by hand (old nodes 1 and 3 deal; the test
reshare of tests/unit/keyrelease/test_epochs.py), proposed by the governor, approved by
t_old = 2 old nodes and finalized with signatures of all new and t_old old nodes. A3 is in
both epochs at different indices (3, then 2). No gateways: releases are logged by hand
(tests/audit/forge.py) and served by `ListLog`s keyed by node address, as a node that
served in both epochs keeps one log.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from marketplace.audit.auditor import Auditor
from marketplace.audit.release_log import LoggedRelease, ReleaseLogSource
from marketplace.chain.market import TRUSTED_DEALER_TRANSCRIPT, MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import Committee, Roster
from marketplace.committee import node_encryption_key
from marketplace.eip712 import CommitteeResult, Eip712Domain, digest, sign
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import CapsuleContext, make_capsule
from marketplace.keyrelease.dealer import DealtCommittee, deal
from marketplace.merkle import merkle_root
from storage.keys import DataKey
from storage.stores.local import LocalStore
from tests.audit.forge import ListLog, entry, signed_request
from tests.unit.keyrelease.test_epochs import reshare

ETHER = 10**18
PRICE = 10**15
DAY = 86_400


def committee_of(dealt: DealtCommittee, accounts: list[LocalAccount]) -> Committee:
    return Committee(dealt.keys.committee_key.to_bytes(), dealt.keys.threshold,
                     tuple(a.address for a in accounts),
                     tuple(k.point.to_bytes() for k in dealt.keys.share_keys))


@dataclass
class TwoEpochs:
    dev: DevChain
    market: MarketClient
    store: LocalStore
    deployer: LocalAccount
    one: list[LocalAccount]
    two: list[LocalAccount]
    buyer: LocalAccount
    listing: int
    version: int
    #: epoch 1's and epoch 2's shares (same Y)
    dealt: tuple[DealtCommittee, DealtCommittee]
    epoch_2_block: int = 0
    logs: dict[str, list[LoggedRelease]] = field(default_factory=dict)

    @property
    def domain(self) -> Eip712Domain:
        return self.market.domain

    def new_debit(self) -> int:
        """Another auto-approved debit of the buyer: each release below gets its own, so
        no log names a (debit, version, buyer key) twice."""
        key = BuyerSecretKey.from_account(self.buyer, self.domain).public_key().key
        return self.market.request_debit(self.buyer, self.listing, periods=7,
                                         buyer_key=key).value

    def release(self, signer: LocalAccount, *, node: int, epoch: int, block: int | None = None,
                debit_id: int | None = None) -> LoggedRelease:
        """`signer` logs a release as node `node` of `epoch`, dated `block` (default: the
        latest), for a live request of the buyer on `debit_id` (default: a new debit)."""
        debit_id = self.new_debit() if debit_id is None else debit_id
        request, signature = signed_request(self.buyer, self.domain, debit_id, self.version,
                                            self.dev.now() + 60)
        key = BuyerSecretKey.from_account(self.buyer, self.domain).public_key().key
        item = entry(0, domain=self.domain, node=node, node_account=signer, request=request,
                     request_signature=signature, buyer=self.buyer.address, buyer_key=key,
                     block=self.market.w3.eth.block_number if block is None else block,
                     epoch=epoch)
        self.logs.setdefault(signer.address, []).append(item)
        return item

    def anchor_all(self) -> None:
        """Every node anchors its whole log (an old-epoch node may: previous epoch)."""
        for address, log in self.logs.items():
            account = next(a for a in (*self.one, *self.two) if a.address == address)
            root = merkle_root([digest(self.domain, e.receipt) for e in log])
            self.market.anchor_releases(account, root, len(log))

    def sources(self) -> dict[str, ReleaseLogSource]:
        addresses = {a.address for a in (*self.one, *self.two)}
        return {address: ListLog(self.logs.get(address, []), address=address)
                for address in addresses}

    def auditor(self, sources: dict[str, ReleaseLogSource] | None = None) -> Auditor:
        return Auditor(self.market, self.store,
                       self.sources() if sources is None else sources)

    def reshare(self, *, transcript_hash: bytes = TRUSTED_DEALER_TRANSCRIPT) -> None:
        """Epoch 2 becomes current (its block is `epoch_2_block`)."""
        two_dealt = self.dealt[1]
        committee = committee_of(two_dealt, self.two)
        roster = Roster(committee.nodes, tuple(node_encryption_key(a) for a in self.two),
                        committee.threshold)
        ceremony = self.market.propose_committee(
            self.deployer, roster, phase_seconds=30, deadline=self.dev.now() + DAY).value
        for old in self.one[:2]:
            self.market.approve_committee(old, ceremony)
        result = CommitteeResult(ceremony=ceremony, epoch=2,
                                 committee_key=committee.committee_key,
                                 share_keys=committee.share_keys, qualified=0b101,
                                 transcript_hash=transcript_hash)
        final = self.market.finalize_committee(
            self.deployer, ceremony, result, [sign(a, self.domain, result) for a in self.two],
            [sign(a, self.domain, result) for a in self.one[:2]],
        )
        self.epoch_2_block = final.block_number


def build(folder: Path) -> TwoEpochs:
    w3 = connect()
    dev = DevChain(w3)
    deployer, owner, buyer = Account.create(), Account.create(), Account.create()
    one = [Account.create() for _ in range(3)]
    two = [Account.create(), one[2], Account.create()]
    for account in (deployer, owner, buyer, *one, two[0], two[2]):
        dev.fund(account.address, 10 * ETHER)
    one_dealt = deal(3, 2)
    two_dealt = reshare(one_dealt, [1, 3], size=3, threshold=2)
    market = MarketClient.deploy_dealt(w3, deployer, committee_of(one_dealt, one), one).value
    store = LocalStore(folder / "store")
    listing = market.create_listing(owner, price_per_period=PRICE, period_seconds=DAY,
                                    auto_approve=True).value
    cid = store.put(io.BytesIO(os.urandom(1000)))
    ctx = CapsuleContext(market.chain_id, market.address, listing, 1, cid.binary)
    capsule = make_capsule(DataKey.generate(), ctx, one_dealt.keys.committee_key)
    market.publish_version(owner, listing, cid.binary, capsule.to_bytes())
    return TwoEpochs(dev, market, store, deployer, one, two, buyer, listing, 1,
                     (one_dealt, two_dealt))
