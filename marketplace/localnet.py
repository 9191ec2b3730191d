"""A whole datadebit network in one process, on the embedded defaults: an eth-tester
chain, a t-of-n committee of gateways (keys from a DKG among them, or dealt for tests)
on in-memory SQLite, each behind its FastAPI app (reached in-process, no sockets), and a
`LocalStore`.

The demo runs on it; so can anyone who wants to try the protocol without servers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from marketplace.chain.aggregate import AggregateClient
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import Committee, Roster
from marketplace.committee import NodeKey, node_encryption_key
from marketplace.eip712 import Eip712Domain
from marketplace.gateway.aggregate_state import AggregateState
from marketplace.gateway.aggregation import AggregationService
from marketplace.gateway.api import create_app
from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.service import GatewayService
from marketplace.gateway.state import GatewayState
from marketplace.keyclient import ChainCommittees, KeyClient
from marketplace.keyrelease import CommitteeKeys, NodeShare
from marketplace.keyrelease.dealer import DealtCommittee, deal
from storage.stores.local import LocalStore

ETHER = 10**18


@dataclass
class LocalNetwork:
    """Chain, market, committee, gateways and store; `close()` when done.

    With `dkg=True` (what the demo uses) the gateways generate the committee key among
    themselves on the chain (DESIGN §9); otherwise a trusted dealer deals it (tests)."""

    dev: DevChain
    market: MarketClient
    dealt: DealtCommittee | None
    node_accounts: list[LocalAccount]
    gateways: dict[int, GatewayService]
    clients: dict[int, TestClient]
    store: LocalStore
    deploy_gas: int
    down: set[int] = field(default_factory=set)
    #: the deploying account, the market's governor (it proposes later committees)
    deployer: LocalAccount | None = None
    #: the AggregateMarket served by the same committee (aggregate debits, DESIGN §10)
    aggregator: AggregateClient | None = None

    @classmethod
    def start(
        cls,
        store_dir: Path,
        *,
        size: int = 3,
        threshold: int = 2,
        dkg: bool = False,
        phase_seconds: int = 30,
        wait: bool = True,
        aggregate: bool = True,
    ) -> LocalNetwork:
        """Deploy and run the gateways; with `dkg`, return once epoch 1 is final unless
        `wait` is False (tests then drive the ceremony themselves). With `aggregate` an
        AggregateMarket is deployed beside the market and every gateway aggregates for it."""
        w3 = connect()
        dev = DevChain(w3)
        deployer = Account.create()
        nodes = [Account.create() for _ in range(size)]
        for account in (deployer, *nodes):
            dev.fund(account.address, 10 * ETHER)
        dealt: DealtCommittee | None = None
        if dkg:
            roster = Roster(
                tuple(a.address for a in nodes),
                tuple(node_encryption_key(a) for a in nodes),
                threshold,
            )
            sent = MarketClient.deploy(
                w3, deployer, roster, phase_seconds=phase_seconds, deadline=dev.now() + 86_400
            )
        else:
            dealt = deal(size, threshold)
            committee = Committee(
                committee_key=dealt.keys.committee_key.to_bytes(),
                threshold=threshold,
                nodes=tuple(a.address for a in nodes),
                share_keys=tuple(k.point.to_bytes() for k in dealt.keys.share_keys),
            )
            sent = MarketClient.deploy_dealt(w3, deployer, committee, nodes)
        aggregator = (
            AggregateClient.deploy(w3, deployer, sent.value.address).value if aggregate else None
        )
        net = cls(dev, sent.value, dealt, [], {}, {}, LocalStore(store_dir, fsync=False),
                  sent.gas_used, deployer=deployer, aggregator=aggregator)
        for i, account in enumerate(nodes, start=1):
            net.add_gateway(account, dealt.shares[i - 1] if dealt else None)
        if dkg and wait:
            net.await_epoch(1)
        return net

    def add_gateway(self, account: LocalAccount, share: NodeShare | None = None) -> int:
        """Run a gateway for `account` (a node of a committee now or later); its number."""
        number = len(self.gateways) + 1
        dev = self.dev

        def chain_clock() -> float:
            """The later of the wall clock and the chain's: the demo moves the chain's
            time forward, and requests must expire by the time the chain keeps."""
            return max(time.time(), dev.now())

        db = SqliteDatabase(":memory:")
        state = GatewayState(db)
        aggregation = None
        if self.aggregator is not None:
            aggregation = AggregationService(
                self.aggregator, self.market, AggregateState(db), state, account, self.store,
                now=chain_clock,
            )
        gateway = GatewayService(
            market=self.market,
            state=state,
            node=NodeKey(share, account),
            now=chain_clock,
            approve_rosters=True,
            aggregation=aggregation,
        )
        self.node_accounts.append(account)
        self.gateways[number] = gateway
        self.clients[number] = TestClient(
            create_app(gateway, run_background=False), base_url=f"http://node-{number}"
        )
        return number

    def await_epoch(self, epoch: int, *, rounds: int = 30) -> None:
        """Let the live gateways run their ceremony until `epoch` is final and every live
        member holds its share (each round is one tick of every gateway)."""
        for _ in range(rounds):
            self.sync()
            if self.market.current_epoch() >= epoch and self._members_hold(epoch):
                return
        raise RuntimeError(f"committee epoch {epoch} was not final after {rounds} rounds")

    def _members_hold(self, epoch: int) -> bool:
        members = {a.lower() for a in self.market.committee_at(epoch).nodes}
        for number, gateway in self.gateways.items():
            if number in self.down or gateway.node.address.lower() not in members:
                continue
            if gateway.share_book.get(epoch) is None:
                return False
        return True

    def reshare(self, roster: Roster, *, phase_seconds: int = 30) -> int:
        """Propose `roster` as the next committee (the deployer is the governor), let the
        gateways approve (LocalNetwork's nodes run the approve-every-roster policy) and
        run the reshare; returns the new epoch once its live members hold their shares."""
        assert self.deployer is not None
        epoch = self.market.current_epoch() + 1
        self.market.propose_committee(
            self.deployer, roster, phase_seconds=phase_seconds, deadline=self.dev.now() + 86_400
        )
        self.await_epoch(epoch)
        return epoch

    def roster_with(self, accounts: list[LocalAccount], threshold: int) -> Roster:
        """A roster of these node accounts (gateways are started for new ones)."""
        known = {g.node.address for g in self.gateways.values()}
        for account in accounts:
            if account.address not in known:
                self.dev.fund(account.address, 10 * ETHER)
                self.add_gateway(account)
        return Roster(
            tuple(a.address for a in accounts),
            tuple(node_encryption_key(a) for a in accounts),
            threshold,
        )

    @property
    def keys(self) -> CommitteeKeys:
        """The public keys of the committee in force now, read from the chain."""
        return self.committees.current()

    @property
    def committees(self) -> ChainCommittees:
        return ChainCommittees(self.market)

    @property
    def domain(self) -> Eip712Domain:
        return Eip712Domain(self.market.chain_id, self.market.address)

    def account(self, ether: int = 10) -> LocalAccount:
        """A new funded wallet."""
        account: LocalAccount = Account.create()
        self.dev.fund(account.address, ether * ETHER)
        return account

    def sync(self) -> None:
        """Let every running gateway catch up with the chain, take its turn in any
        ceremony, and anchor its releases."""
        for index, gateway in self.gateways.items():
            if index not in self.down:
                gateway.tick()

    def key_client(self) -> KeyClient:
        """A key client for the gateways of the committee in force, addressed by their
        indices in it."""
        committees = self.committees
        current = committees.current()
        members = [a.lower() for a in self.market.committee_at(current.epoch).nodes]
        live = {}
        for number, client in self.clients.items():
            address = self.gateways[number].node.address.lower()
            if number not in self.down and address in members:
                live[members.index(address) + 1] = client
        return KeyClient(current, self.domain, live, committees=committees, now=self.clock)

    def clock(self) -> float:
        """The clock the gateways judge request expiries by (see `start`)."""
        return self.gateways[min(self.gateways)].now()

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
