"""A whole datadebit network in one process, on the embedded defaults: an eth-tester
chain, a freshly dealt t-of-n committee of gateways on in-memory SQLite, each behind
its FastAPI app (reached in-process, no sockets), and a `LocalStore`.

The demo runs on it; so can anyone who wants to try the protocol without servers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import Committee
from marketplace.committee import NodeKey
from marketplace.eip712 import Eip712Domain
from marketplace.gateway.api import create_app
from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.service import GatewayService
from marketplace.gateway.state import GatewayState
from marketplace.keyclient import KeyClient
from marketplace.keyrelease.dealer import DealtCommittee, deal
from storage.stores.local import LocalStore

ETHER = 10**18


@dataclass
class LocalNetwork:
    """Chain, market, committee, gateways and store; `close()` when done."""

    dev: DevChain
    market: MarketClient
    dealt: DealtCommittee
    node_accounts: list[LocalAccount]
    gateways: dict[int, GatewayService]
    clients: dict[int, TestClient]
    store: LocalStore
    deploy_gas: int
    down: set[int] = field(default_factory=set)

    @classmethod
    def start(cls, store_dir: Path, *, size: int = 3, threshold: int = 2) -> LocalNetwork:
        w3 = connect()
        dev = DevChain(w3)
        deployer = Account.create()
        nodes = [Account.create() for _ in range(size)]
        for account in (deployer, *nodes):
            dev.fund(account.address, 10 * ETHER)
        dealt = deal(size, threshold)
        committee = Committee(
            committee_key=dealt.keys.committee_key.to_bytes(),
            threshold=threshold,
            nodes=tuple(a.address for a in nodes),
            share_keys=tuple(k.point.to_bytes() for k in dealt.keys.share_keys),
        )
        sent = MarketClient.deploy(w3, deployer, committee)
        market = sent.value

        def chain_clock() -> float:
            """The later of the wall clock and the chain's: the demo moves the chain's
            time forward, and requests must expire by the time the chain keeps."""
            return max(time.time(), dev.now())

        gateways = {
            i: GatewayService(
                market=market,
                state=GatewayState(SqliteDatabase(":memory:")),
                node=NodeKey(dealt.shares[i - 1], nodes[i - 1]),
                now=chain_clock,
            )
            for i in range(1, size + 1)
        }
        clients = {
            i: TestClient(create_app(g, run_background=False), base_url=f"http://node-{i}")
            for i, g in gateways.items()
        }
        store = LocalStore(store_dir, fsync=False)
        return cls(dev, market, dealt, nodes, gateways, clients, store, sent.gas_used)

    @property
    def domain(self) -> Eip712Domain:
        return Eip712Domain(self.market.chain_id, self.market.address)

    def account(self, ether: int = 10) -> LocalAccount:
        """A new funded wallet."""
        account: LocalAccount = Account.create()
        self.dev.fund(account.address, ether * ETHER)
        return account

    def sync(self) -> None:
        """Let every running gateway catch up with the chain and anchor its releases."""
        for index, gateway in self.gateways.items():
            if index not in self.down:
                gateway.tick()

    def key_client(self) -> KeyClient:
        live = {i: c for i, c in self.clients.items() if i not in self.down}
        return KeyClient(self.dealt.keys, self.domain, live, now=self.clock)

    def clock(self) -> float:
        """The clock the gateways judge request expiries by (see `start`)."""
        return self.gateways[min(self.gateways)].now()

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
