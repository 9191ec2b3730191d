"""A 2-of-3 committee of in-process gateways over one chain.

Each test gets a fresh chain, market and gateway state: the chain fixture is cheap
enough on eth-tester (deploy ~25 ms), and fresh state keeps the tests independent.
The `stack` fixture runs each test twice, with the nodes' state in SQLite files and in
databases on a real Postgres (`state_backend`). `build_stack` also runs on a real
anvil (tests/integration/gateway).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from web3 import Web3

from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import Committee
from marketplace.committee import NodeKey
from marketplace.eip712 import Eip712Domain, KeyRequest, sign
from marketplace.gateway.api import create_app
from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.service import GatewayService
from marketplace.gateway.state import GatewayState
from marketplace.keyclient import KeyClient
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import Capsule, CapsuleContext, make_capsule
from marketplace.keyrelease.dealer import DealtCommittee, deal
from scripts.servers.postgres import start_postgres
from storage.keys import DataKey
from tests.gateway.state_backends import BACKENDS, StateBackend

ETHER = 10**18
PRICE = 10**15
PERIOD = 3600


@dataclass
class Published:
    listing_id: int
    version: int
    data_key: DataKey
    capsule: Capsule
    ctx: CapsuleContext


@dataclass
class Stack:
    dev: DevChain
    market: MarketClient
    dealt: DealtCommittee
    services: dict[int, GatewayService]
    clients: dict[int, TestClient]
    owner: LocalAccount
    buyer: LocalAccount
    stranger: LocalAccount
    buyer_secret: BuyerSecretKey
    domain: Eip712Domain
    node_accounts: list[LocalAccount]

    def key_client(
        self, nodes: list[int] | None = None, *, transports: dict[int, httpx.Client] | None = None
    ) -> KeyClient:
        chosen = nodes or sorted(self.clients)
        clients: dict[int, httpx.Client] = {i: self.clients[i] for i in chosen}
        clients.update(transports or {})
        return KeyClient(self.dealt.keys, self.domain, clients)

    def publish(self, listing_id: int) -> Published:
        listing = self.market.listing(listing_id)
        version = listing.version_count + 1
        cid = bytes.fromhex("01551220") + os.urandom(32)
        ctx = CapsuleContext(self.market.chain_id, self.market.address, listing_id, version, cid)
        data_key = DataKey.generate()
        capsule = make_capsule(data_key, ctx, self.dealt.keys.committee_key)
        self.market.publish_version(self.owner, listing_id, cid, capsule.to_bytes())
        return Published(listing_id, version, data_key, capsule, ctx)

    def listing(self, *, auto_approve: bool) -> int:
        return self.market.create_listing(
            self.owner, price_per_period=PRICE, period_seconds=PERIOD, auto_approve=auto_approve
        ).value

    def debit(self, listing_id: int, *, periods: int = 1, buyer: LocalAccount | None = None) -> int:
        who = buyer or self.buyer
        key = BuyerSecretKey.from_account(who, self.domain).public_key().key
        return self.market.request_debit(who, listing_id, periods=periods, buyer_key=key).value

    def sync(self) -> None:
        for service in self.services.values():
            service.tick(anchor=False)

    def fetch(self, published: Published, debit_id: int, nodes: list[int] | None = None) -> Any:
        return self.key_client(nodes).fetch(
            self.buyer, self.buyer_secret, debit_id, published.ctx, published.capsule
        )

    # ------------------------------------------------------------ raw requests

    def body(
        self,
        debit_id: int,
        version: int,
        *,
        signer: LocalAccount | None = None,
        expiry: int | None = None,
        nonce: bytes | None = None,
    ) -> dict[str, Any]:
        """A `POST /v1/keys` body signed by `signer` (the buyer by default)."""
        request = KeyRequest(
            debit_id=debit_id,
            version=version,
            expiry=int(time.time()) + 60 if expiry is None else expiry,
            nonce=os.urandom(32) if nonce is None else nonce,
        )
        signature = sign(signer or self.buyer, self.domain, request)
        return {"request": request.to_message(), "signature": "0x" + signature.hex()}

    def ask(self, node: int, body: Any) -> httpx.Response:
        return self.clients[node].post("/v1/keys", json=body)


def build_stack(
    w3: Web3,
    *,
    confirmations: int = 0,
    open_state: Callable[[int], GatewayState] | None = None,
    size: int = 3,
    threshold: int = 2,
) -> Stack:
    """Deploy a market with a freshly dealt `threshold`-of-`size` committee (2-of-3 by
    default) and a gateway per node; `open_state(node)` gives each node's state (in-memory
    SQLite by default)."""
    new_state = open_state or (lambda _node: GatewayState(SqliteDatabase(":memory:")))
    dev = DevChain(w3)
    deployer, owner, buyer, stranger = (Account.create() for _ in range(4))
    node_accounts = [Account.create() for _ in range(size)]
    for acct in (deployer, owner, buyer, stranger, *node_accounts):
        dev.fund(acct.address, 10 * ETHER)
    dealt = deal(size, threshold)
    committee = Committee(
        committee_key=dealt.keys.committee_key.to_bytes(),
        threshold=threshold,
        nodes=tuple(a.address for a in node_accounts),
        share_keys=tuple(k.point.to_bytes() for k in dealt.keys.share_keys),
    )
    market = MarketClient.deploy_dealt(w3, deployer, committee, node_accounts).value
    services = {
        i: GatewayService(
            market=market,
            state=new_state(i),
            node=NodeKey(dealt.shares[i - 1], node_accounts[i - 1]),
            confirmations=confirmations,
        )
        for i in range(1, size + 1)
    }
    clients = {i: TestClient(create_app(s, run_background=False)) for i, s in services.items()}
    domain = Eip712Domain(market.chain_id, market.address)
    return Stack(
        dev, market, dealt, services, clients, owner, buyer, stranger,
        BuyerSecretKey.from_account(buyer, domain), domain, node_accounts,
    )


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """One throwaway Postgres server for the session, started only if a test asks."""
    with start_postgres() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def state_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    admin_url = None
    if request.param == "postgres":
        admin_url = request.getfixturevalue("postgres_admin_url")
    backend = StateBackend(request.param, tmp_path, admin_url)
    yield backend
    backend.close()


def node_states(backend: StateBackend) -> Callable[[int], GatewayState]:
    """Each node's state on `backend`, named node1..node3."""
    return lambda node: backend.open(f"node{node}")


@pytest.fixture
def stack(state_backend: StateBackend) -> Iterator[Stack]:
    built = build_stack(connect(), open_state=node_states(state_backend))
    yield built
    for client in built.clients.values():
        client.close()


def code_of(response: httpx.Response) -> tuple[int, str]:
    """(HTTP status, stable error code) of a refusal."""
    return response.status_code, response.json()["code"]
