"""The chain suite runs every test against the embedded chain and against a real anvil.

One market is deployed per backend per session; each test runs inside a snapshot that
is reverted afterwards, so tests see a fresh market and cannot leak state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import Committee
from scripts.servers.anvil import start_anvil

ETHER = 10**18


@dataclass
class Actors:
    deployer: LocalAccount
    owner: LocalAccount
    buyer: LocalAccount
    other_buyer: LocalAccount
    stranger: LocalAccount
    nodes: list[LocalAccount]


@dataclass
class ChainEnv:
    backend: str
    w3: Web3
    dev: DevChain
    market: MarketClient
    actors: Actors
    committee: Committee


def _committee(nodes: list[LocalAccount], threshold: int = 2) -> Committee:
    return Committee(
        committee_key=b"\x11" * 32,
        threshold=threshold,
        nodes=tuple(n.address for n in nodes),
        share_keys=tuple(bytes([0x20 + i]) * 32 for i in range(len(nodes))),
    )


def _env(backend: str, w3: Web3) -> ChainEnv:
    dev = DevChain(w3)
    actors = Actors(
        deployer=Account.create(), owner=Account.create(), buyer=Account.create(),
        other_buyer=Account.create(), stranger=Account.create(),
        nodes=[Account.create() for _ in range(3)],
    )
    for acct in (actors.deployer, actors.owner, actors.buyer, actors.other_buyer,
                 actors.stranger, *actors.nodes):
        dev.fund(acct.address, 100 * ETHER)
    committee = _committee(actors.nodes)
    market = MarketClient.deploy(w3, actors.deployer, committee).value
    return ChainEnv(backend, w3, dev, market, actors, committee)


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    with start_anvil() as url:
        yield url


@pytest.fixture(scope="session", params=["embedded", "anvil"])
def chain_session(request: pytest.FixtureRequest) -> ChainEnv:
    if request.param == "embedded":
        return _env("embedded", connect())
    return _env("anvil", connect(request.getfixturevalue("anvil_url")))


@pytest.fixture
def env(chain_session: ChainEnv) -> Iterator[ChainEnv]:
    snapshot = chain_session.dev.snapshot()
    try:
        yield chain_session
    finally:
        chain_session.dev.revert(snapshot)
