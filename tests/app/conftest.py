"""A LocalNetwork (eth-tester chain, dealt 2-of-3 committee of in-process gateways, a
LocalStore) per test module, and apps for an owner and a buyer on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account.signers.local import LocalAccount

from marketplace.app.buyer import BuyerApp
from marketplace.app.owner import OwnerApp
from marketplace.localnet import LocalNetwork


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    network = LocalNetwork.start(tmp_path_factory.mktemp("net") / "store")
    yield network
    network.close()


@pytest.fixture
def owner(net: LocalNetwork) -> OwnerApp:
    return OwnerApp(net.market, net.store, net.account())


def buyer_app(net: LocalNetwork, wallet: LocalAccount | None = None) -> BuyerApp:
    return BuyerApp(net.market, net.store, wallet or net.account(), net.key_client)


@pytest.fixture
def buyer(net: LocalNetwork) -> BuyerApp:
    return buyer_app(net)
