"""Driving `datadebit` in-process through typer's CliRunner.

The unit tests need no chain. The end-to-end tests run against a real anvil (the
embedded chain cannot be reached by URL) and a 2-of-3 committee of gateways served by
real uvicorn servers on loopback ports, in threads of the test process, so the buyer's
`fetch` talks HTTP to them exactly as it would to remote nodes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from eth_account import Account
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner, Result

from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import Committee
from marketplace.cli.main import app
from marketplace.committee import CommitteeNode, NodeKey, PublicCommittee
from marketplace.gateway.api import create_app
from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.service import GatewayService, Timing
from marketplace.gateway.state import GatewayState
from marketplace.keyrelease.dealer import DealtCommittee, deal
from marketplace.wallet import write_keystore
from scripts.servers.process import free_port

ETHER = 10**18
PASSPHRASE = "correct horse battery staple"
FAST_SCRYPT = 2**14


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DATADEBIT_* setting of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("DATADEBIT_"):
            monkeypatch.delenv(name)


def invoke(*args: object, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    """Run `datadebit ARGS...` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(app, [str(a) for a in args], env=env, input=input)


def make_keystore(path: Path, account: LocalAccount | None = None) -> LocalAccount:
    """A wallet in an encrypted keystore at `path` (fast scrypt) with PASSPHRASE."""
    account = account or Account.create()
    write_keystore(account, path, PASSPHRASE, scrypt_n=FAST_SCRYPT)
    return account


class ServedGateway:
    """One gateway node behind a real uvicorn server in a thread of this process."""

    def __init__(self, service: GatewayService) -> None:
        self.service = service
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(service), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"gateway {self.service.node.index} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)


@dataclass
class Deployment:
    """A market on anvil with served gateways, a LocalStore and funded owner/buyer keystores."""

    rpc: str
    market: MarketClient
    dev: DevChain
    dealt: DealtCommittee
    committee_file: Path
    store: Path
    folder: Path
    owner: LocalAccount
    buyer: LocalAccount
    owner_keystore: Path
    buyer_keystore: Path
    gateways: dict[int, ServedGateway] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The deployment's settings as the environment variables a user would set."""
        return {
            "DATADEBIT_RPC": self.rpc,
            "DATADEBIT_MARKET": self.market.address,
            "DATADEBIT_STORE": str(self.store),
            "DATADEBIT_COMMITTEE": str(self.committee_file),
            "DATADEBIT_KEYSTORE_PASSPHRASE": PASSPHRASE,
        }

    def as_owner(self, *args: object) -> Result:
        return invoke(*args, "--keystore", self.owner_keystore, env=self.env)

    def as_buyer(self, *args: object) -> Result:
        return invoke(*args, "--keystore", self.buyer_keystore, env=self.env)

    def write_committee(self, path: Path, urls: Sequence[str | None]) -> Path:
        """A committee.json for this market with the given node URLs."""
        public = PublicCommittee(
            threshold=self.dealt.keys.threshold,
            committee_key=self.dealt.keys.committee_key,
            nodes=tuple(
                CommitteeNode(i, address, self.dealt.keys.share_key(i).point, url)
                for i, (address, url) in enumerate(
                    zip(self.market.committee().nodes, urls, strict=True), start=1
                )
            ),
        )
        path.write_text(json.dumps(public.to_json()))
        return path


def deploy_market(rpc: str, folder: Path, *, serve: bool = True) -> Deployment:
    """Deploy with `datadebit deploy` (deployer from $DATADEBIT_PRIVATE_KEY) and serve
    a 2-of-3 committee of gateways for it."""
    w3 = connect(rpc)
    dev = DevChain(w3)
    deployer, owner, buyer = (Account.create() for _ in range(3))
    nodes = [Account.create() for _ in range(3)]
    for account in (deployer, owner, buyer, *nodes):
        dev.fund(account.address, 10 * ETHER)
    dealt = deal(3, 2)
    folder.mkdir(parents=True, exist_ok=True)
    public = PublicCommittee(
        threshold=2,
        committee_key=dealt.keys.committee_key,
        nodes=tuple(
            CommitteeNode(i, nodes[i - 1].address, dealt.keys.share_key(i).point, None)
            for i in (1, 2, 3)
        ),
    )
    bare = folder / "committee-no-urls.json"
    bare.write_text(json.dumps(public.to_json()))
    # the trusted-dealer development deploy (shares known here, so gateways run in process);
    # `datadebit deploy --roster` itself is tested in test_committee_cli.py
    deployed_market = MarketClient.deploy_dealt(w3, deployer, Committee(
        dealt.keys.committee_key.to_bytes(), 2, tuple(n.address for n in nodes),
        tuple(k.point.to_bytes() for k in dealt.keys.share_keys),
    ), nodes).value
    market = MarketClient(w3, deployed_market.address)
    deployment = Deployment(
        rpc=rpc, market=market, dev=dev, dealt=dealt, committee_file=bare,
        store=folder / "store", folder=folder, owner=owner, buyer=buyer,
        owner_keystore=folder / "owner.json", buyer_keystore=folder / "buyer.json",
    )
    make_keystore(deployment.owner_keystore, owner)
    make_keystore(deployment.buyer_keystore, buyer)
    if serve:
        for i in (1, 2, 3):
            service = GatewayService(
                market=MarketClient(connect(rpc), market.address),
                state=GatewayState(SqliteDatabase(":memory:")),
                node=NodeKey(dealt.shares[i - 1], nodes[i - 1]),
                timing=Timing(poll_interval=0.05, anchor_interval=3600, head_ttl=0.0),
            )
            deployment.gateways[i] = ServedGateway(service)
            deployment.gateways[i].start()
        deployment.committee_file = deployment.write_committee(
            folder / "committee.json", [g.url for g in deployment.gateways.values()]
        )
    return deployment


@pytest.fixture(scope="module")
def deployment(anvil_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    built = deploy_market(anvil_url, tmp_path_factory.mktemp("deployment"))
    yield built
    for gateway in built.gateways.values():
        gateway.stop()
