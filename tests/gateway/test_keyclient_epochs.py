"""The buyer's key client across committee epochs (issue 10): around a reshare, gateways
answer with the share of the epoch in force at their confirmed head, so one fetch may get
answers of two epochs. Each answer is verified against the committee of the epoch its
receipt names, shares combine only within one epoch, and a share of an epoch the chain
does not know is a bad share of its node.

Gateways are fakes (`httpx.MockTransport`) answering real sealed shares: epoch 1 is a dealt
2-of-3, epoch 2 a 3-of-5 reshared from it by hand (tests/unit/keyrelease/test_epochs.py).
The client addresses gateways by their index in the current (epoch 2) committee document.
A fetch stops at the first epoch with t valid shares, so a test that checks how a bad answer
is named leaves the honest ones short of t: then every answer is read, in any order.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from marketplace.eip712 import Eip712Domain
from marketplace.keyclient import (
    ChainCommittees,
    FetchedKey,
    KeyClient,
    KeyFetchFailed,
    UnknownCommitteeEpoch,
)
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import Capsule, CapsuleContext, make_capsule
from marketplace.keyrelease.dealer import DealtCommittee, deal
from marketplace.keyrelease.keys import CommitteeKeys
from marketplace.keyrelease.share import make_sealed_share
from storage.keys import DataKey
from tests.audit.two_epochs import build as build_two_epochs
from tests.unit.keyrelease.test_epochs import reshare

MARKET = "0x" + "42" * 20
DEBIT = 7
TIMEOUT = 5.0


@dataclass
class Epochs:
    """Epoch 1 (2-of-3) and epoch 2 (3-of-5, same Y), a capsule and a buyer."""

    one: DealtCommittee
    two: DealtCommittee
    domain: Eip712Domain
    buyer: LocalAccount
    buyer_secret: BuyerSecretKey
    ctx: CapsuleContext
    capsule: Capsule
    data_key: DataKey
    resolved: list[int] = field(default_factory=list)

    def dealt(self, epoch: int) -> DealtCommittee:
        return {1: self.one, 2: self.two}[epoch]

    def gateway(self, epoch: int, share_of: int, *, receipt_node: int | None = None,
                claimed_epoch: int | None = None) -> httpx.Client:
        """A gateway answering epoch `epoch`'s share of node `share_of`; its receipt names
        `claimed_epoch` (default: the true one) and `receipt_node` (default: `share_of`)."""
        sealed = make_sealed_share(
            self.dealt(epoch).shares[share_of - 1], self.capsule.bind(self.ctx),
            self.buyer_secret.public_key(), DEBIT, self.ctx.version,
        )
        receipt = {"node": receipt_node or share_of, "epoch": claimed_epoch or epoch}
        answer = {"node": share_of, "sealedShare": base64.b64encode(sealed).decode(),
                  "receipt": receipt}
        return _answering(lambda _: httpx.Response(200, json=answer))

    def committees(self, epoch: int) -> CommitteeKeys:
        """The resolver a buyer gets from the chain: epochs 1 and 2 are final."""
        self.resolved.append(epoch)
        if epoch not in (1, 2):
            raise UnknownCommitteeEpoch(epoch, 2)
        return self.dealt(epoch).keys

    def fetch(self, nodes: Mapping[int, httpx.Client], *, resolver: bool = True) -> FetchedKey:
        client = KeyClient(self.two.keys, self.domain, nodes, timeout=TIMEOUT,
                           committees=self.committees if resolver else None)
        return client.fetch(self.buyer, self.buyer_secret, DEBIT, self.ctx, self.capsule)


def _answering(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler), base_url="http://gateway")


def _refusing() -> httpx.Client:
    body = {"code": "chain_unavailable", "message": "no"}
    return _answering(lambda _: httpx.Response(503, json=body))


@pytest.fixture
def epochs() -> Epochs:
    one = deal(3, 2)
    two = reshare(one, [1, 3], size=5, threshold=3)
    domain = Eip712Domain(31337, MARKET)  # type: ignore[arg-type]
    buyer: LocalAccount = Account.create()
    ctx = CapsuleContext(31337, MARKET, 1, 1, bytes.fromhex("01551220") + os.urandom(32))
    data_key = DataKey.generate()
    capsule = make_capsule(data_key, ctx, one.keys.committee_key)
    return Epochs(one, two, domain, buyer, BuyerSecretKey.from_account(buyer, domain), ctx,
                  capsule, data_key)


def test_a_gateway_still_on_epoch_1_is_not_a_fault_and_epoch_2_opens(epochs: Epochs) -> None:
    nodes = {1: epochs.gateway(1, 1), **{i: epochs.gateway(2, i) for i in (2, 3, 4)},
             5: _refusing()}
    fetched = epochs.fetch(nodes)
    assert fetched.data_key == epochs.data_key
    assert fetched.epoch == 2
    assert fetched.used_nodes == (2, 3, 4)
    assert 1 not in fetched.faults


def test_old_epoch_shares_open_when_the_old_nodes_answer_first(epochs: Epochs) -> None:
    """Gateways 4 and 5 of the epoch-2 document were epoch 1's nodes 2 and 1 (indices
    differ between epochs): their epoch-1 shares are checked against epoch 1's Y_2, Y_1."""
    nodes = {4: epochs.gateway(1, 2), 5: epochs.gateway(1, 1), 1: _refusing(), 2: _refusing(),
             3: epochs.gateway(2, 3)}
    fetched = epochs.fetch(nodes)
    assert fetched.data_key == epochs.data_key
    assert (fetched.epoch, fetched.used_nodes) == (1, (4, 5))


def test_valid_shares_of_two_epochs_are_never_combined(epochs: Epochs) -> None:
    """One epoch-1 share (t = 2) and two epoch-2 shares (t = 3): three valid shares, enough
    by count for either threshold, but no epoch has its t. A fetch that pooled them would
    have raised MixedEpochShares or produced a wrong key; it fails cleanly, naming both."""
    nodes = {1: epochs.gateway(1, 1), 2: epochs.gateway(2, 2), 3: epochs.gateway(2, 3),
             4: _refusing(), 5: _refusing()}
    with pytest.raises(KeyFetchFailed) as raised:
        epochs.fetch(nodes)
    failed = raised.value
    assert failed.by_epoch == {1: (1, 2), 2: (2, 3)}
    assert (failed.have, failed.need) == (2, 3)
    assert "epoch 1 1 of 2" in str(failed) and "epoch 2 2 of 3" in str(failed)
    assert set(failed.faults) == {4, 5}


def test_a_share_of_an_epoch_the_chain_does_not_know_names_its_node(epochs: Epochs) -> None:
    nodes = {1: epochs.gateway(2, 1, claimed_epoch=3), **{i: epochs.gateway(2, i)
                                                          for i in (2, 3)}}
    with pytest.raises(KeyFetchFailed) as raised:
        epochs.fetch({**nodes, 4: _refusing(), 5: _refusing()})
    assert "epoch 3" in raised.value.faults[1]
    assert raised.value.by_epoch == {2: (2, 3)}
    assert 3 in epochs.resolved
    # the same node next to three honest ones: never used (named if read before the 3rd)
    fetched = epochs.fetch({**nodes, 4: epochs.gateway(2, 4), 5: _refusing()})
    assert fetched.used_nodes == (2, 3, 4) and fetched.data_key == epochs.data_key
    assert "epoch 3" in fetched.faults.get(1, "epoch 3")


def test_an_epoch_1_share_sold_as_epoch_2_is_a_bad_share(epochs: Epochs) -> None:
    nodes = {1: epochs.gateway(1, 1, claimed_epoch=2),
             **{i: epochs.gateway(2, i) for i in (2, 3)}, 4: _refusing(), 5: _refusing()}
    with pytest.raises(KeyFetchFailed) as raised:
        epochs.fetch(nodes)
    assert raised.value.faults[1] == "node 1 returned a share with an invalid proof"
    assert raised.value.by_epoch == {2: (2, 3)}


def test_an_epoch_2_share_sold_as_epoch_1_is_a_bad_share(epochs: Epochs) -> None:
    nodes = {1: epochs.gateway(2, 1, claimed_epoch=1), 2: epochs.gateway(1, 2),
             3: _refusing(), 4: _refusing(), 5: _refusing()}
    with pytest.raises(KeyFetchFailed) as raised:
        epochs.fetch(nodes)
    assert raised.value.faults[1] == "node 1 returned a share with an invalid proof"
    assert raised.value.by_epoch == {1: (1, 2)}


def test_a_receipt_naming_another_node_than_the_share_is_refused(epochs: Epochs) -> None:
    nodes = {1: epochs.gateway(1, 1, receipt_node=2), 2: epochs.gateway(1, 2),
             3: _refusing(), 4: _refusing(), 5: _refusing()}
    with pytest.raises(KeyFetchFailed) as raised:
        epochs.fetch(nodes)
    assert "node 1's share, its receipt names node 2" in raised.value.faults[1]
    assert raised.value.by_epoch == {1: (1, 2)}


def test_two_gateways_with_the_same_old_share_count_once(epochs: Epochs) -> None:
    nodes = {1: epochs.gateway(1, 1), 2: epochs.gateway(1, 1),
             3: _refusing(), 4: _refusing(), 5: _refusing()}
    with pytest.raises(KeyFetchFailed) as raised:
        epochs.fetch(nodes)
    assert raised.value.by_epoch == {1: (1, 2)}
    (duplicate,) = raised.value.faults.keys() - {3, 4, 5}
    assert "already gave" in raised.value.faults[duplicate]


def test_in_its_own_epoch_a_gateway_must_answer_its_own_index(epochs: Epochs) -> None:
    nodes = {1: epochs.gateway(2, 2), 3: epochs.gateway(2, 3), 4: epochs.gateway(2, 4),
             2: _refusing(), 5: _refusing()}
    with pytest.raises(KeyFetchFailed) as raised:
        epochs.fetch(nodes)
    assert "answered with node 2's share" in raised.value.faults[1]
    assert (raised.value.have, raised.value.need) == (2, 3)


@pytest.mark.parametrize("epoch", [0, -1, "2", 2**64, None, True])
def test_a_malformed_receipt_epoch_is_a_fault(epochs: Epochs, epoch: object) -> None:
    sealed = make_sealed_share(epochs.two.shares[0], epochs.capsule.bind(epochs.ctx),
                               epochs.buyer_secret.public_key(), DEBIT, epochs.ctx.version)
    answer = {"sealedShare": base64.b64encode(sealed).decode(),
              "receipt": {"node": 1, "epoch": epoch}}
    nodes = {1: _answering(lambda _: httpx.Response(200, json=answer)),
             **{i: epochs.gateway(2, i) for i in (2, 3)}}
    with pytest.raises(KeyFetchFailed) as raised:
        epochs.fetch(nodes)
    assert "receipt.epoch" in raised.value.faults[1]


def test_without_a_resolver_only_the_clients_own_epoch_is_accepted(epochs: Epochs) -> None:
    nodes = {1: epochs.gateway(1, 1), **{i: epochs.gateway(2, i) for i in (2, 3, 4)}}
    fetched = epochs.fetch(nodes, resolver=False)
    assert fetched.epoch == 2 and fetched.data_key == epochs.data_key
    if 1 in fetched.faults:  # node 1 may answer after t epoch-2 shares are in
        assert "epoch 1" in fetched.faults[1]


def test_an_answer_without_a_receipt_is_taken_for_the_clients_epoch(epochs: Epochs) -> None:
    sealed = make_sealed_share(epochs.two.shares[0], epochs.capsule.bind(epochs.ctx),
                               epochs.buyer_secret.public_key(), DEBIT, epochs.ctx.version)
    bare = {"node": 1, "sealedShare": base64.b64encode(sealed).decode()}
    nodes = {1: _answering(lambda _: httpx.Response(200, json=bare)),
             2: epochs.gateway(2, 2), 3: epochs.gateway(2, 3)}
    fetched = epochs.fetch(nodes)
    assert fetched.used_nodes == (1, 2, 3) and fetched.epoch == 2


# ------------------------------------------------------------------ the chain resolver


@dataclass
class _Record:
    committee: _Public


@dataclass
class _Public:
    committee_key: bytes
    threshold: int
    share_keys: tuple[bytes, ...]


class _FakeMarket:
    """`current_epoch` / `committee_at` as MarketClient answers them, counting reads."""

    def __init__(self, epochs: Epochs) -> None:
        self.epochs = epochs
        self.current = 1
        self.reads: list[int] = []

    def current_epoch(self) -> int:
        return self.current

    def committee_at(self, epoch: int) -> _Record:
        self.reads.append(epoch)
        keys = self.epochs.dealt(epoch).keys
        return _Record(_Public(keys.committee_key.to_bytes(), keys.threshold,
                               tuple(k.point.to_bytes() for k in keys.share_keys)))


def test_chain_committees_reads_each_epoch_once_and_learns_new_epochs(epochs: Epochs) -> None:
    market = _FakeMarket(epochs)
    resolver = ChainCommittees(market)  # type: ignore[arg-type]
    assert resolver.current() == epochs.one.keys
    with pytest.raises(UnknownCommitteeEpoch) as raised:
        resolver(2)
    assert (raised.value.epoch, raised.value.current) == (2, 1)
    with pytest.raises(UnknownCommitteeEpoch):
        resolver(0)
    market.current = 2  # the reshare is final: epoch 2 is learnt on the next ask
    two = resolver(2)
    assert two.epoch == 2 and two.share_keys == epochs.two.keys.share_keys
    assert two.committee_key == epochs.one.keys.committee_key
    resolver(1)
    resolver(2)
    assert market.reads == [1, 2]


def test_chain_committees_on_a_market_that_reshared(tmp_path: Path) -> None:
    """`ChainCommittees` over a real contract (eth-tester) after a reshare: epoch 2 is the
    current one, each epoch's keys are the ones finalized, and a fetch with answers of both
    epochs verifies each against its own."""
    chain = build_two_epochs(tmp_path)
    chain.reshare()
    resolver = ChainCommittees(chain.market)
    one, two = chain.dealt
    assert resolver.current() == two.keys and resolver.current().epoch == 2
    assert resolver(1) == one.keys
    with pytest.raises(UnknownCommitteeEpoch):
        resolver(3)
    epochs = Epochs(one, two, chain.domain, chain.buyer,
                    BuyerSecretKey.from_account(chain.buyer, chain.domain), *_published(one))
    nodes = {1: epochs.gateway(1, 1), 2: epochs.gateway(2, 2), 3: epochs.gateway(2, 3)}
    client = KeyClient(resolver.current(), chain.domain, nodes, committees=resolver,
                       timeout=TIMEOUT)
    fetched = client.fetch(chain.buyer, epochs.buyer_secret, DEBIT, epochs.ctx, epochs.capsule)
    assert fetched.data_key == epochs.data_key and fetched.epoch in (1, 2)


def _published(one: DealtCommittee) -> tuple[CapsuleContext, Capsule, DataKey]:
    ctx = CapsuleContext(31337, MARKET, 1, 1, bytes.fromhex("01551220") + os.urandom(32))
    data_key = DataKey.generate()
    return ctx, make_capsule(data_key, ctx, one.keys.committee_key), data_key
