"""A chain node that is down, or dies mid-session, surfaces as ChainUnavailable."""

from __future__ import annotations

import pytest
from eth_account import Account

from marketplace.chain.errors import ChainUnavailable
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from scripts.servers.anvil import free_port, start_anvil
from tests.chain.conftest import ETHER, make_committee


def test_connect_raisesChainUnavailable_whenNothingListens() -> None:
    port = free_port()  # bound and released: nothing listens there now
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(ChainUnavailable) as e:
        connect(url, timeout=2)
    assert e.value.endpoint == url
    assert isinstance(e.value, ConnectionError)


def test_marketClient_raisesChainUnavailable_whenNodeDiesMidSession() -> None:
    owner, buyer = Account.create(), Account.create()
    with start_anvil() as url:
        w3 = connect(url, timeout=2)
        dev = DevChain(w3)
        for account in (owner, buyer):
            dev.fund(account.address, ETHER)
        node = Account.create()
        market = MarketClient.deploy_dealt(w3, owner, make_committee([node], 1), [node]).value
        listing_id = market.create_listing(owner, price_per_period=1, period_seconds=60,
                                           auto_approve=True).value
        assert market.listing_count() == 1
    # the node is gone: views and transactions fail the same typed way
    with pytest.raises(ChainUnavailable) as e:
        market.listing_count()
    assert e.value.endpoint == url
    with pytest.raises(ChainUnavailable):
        market.listing(listing_id)
    with pytest.raises(ChainUnavailable):
        market.request_debit(buyer, listing_id, periods=1, buyer_key=b"\x01" * 32, value=1)
    with pytest.raises(ChainUnavailable):
        market.contract_balance()
