"""The fixtures themselves: both backends deploy the market, map reverts, and give the
development-chain controls the rest of the suite relies on (exact time travel, snapshots)."""

import pytest

from marketplace.chain.errors import UnknownListing
from tests.chain.conftest import ChainEnv, new_listing


def test_deployed_market_reports_its_committee(env: ChainEnv) -> None:
    assert env.market.committee() == env.committee
    assert env.market.listing_count() == 0


def test_revert_maps_to_custom_error_with_arguments(env: ChainEnv) -> None:
    with pytest.raises(UnknownListing) as caught:
        env.market.request_debit(env.actors.buyer, 7, periods=1, buyer_key=b"\x01" * 32, value=0)
    assert caught.value.fields == {"listingId": 7}
    with pytest.raises(UnknownListing):
        env.market.listing(7)


@pytest.mark.parametrize("seconds", [1, 977, 86_400])
def test_advance_minesBlockExactlySecondsLater(env: ChainEnv, seconds: int) -> None:
    before = env.dev.now()
    block = env.w3.eth.block_number
    assert env.dev.advance(seconds) == before + seconds
    assert env.dev.now() == before + seconds
    assert env.w3.eth.block_number == block + 1


def test_mine_addsBlocks(env: ChainEnv) -> None:
    block = env.w3.eth.block_number
    env.dev.mine(3)
    assert env.w3.eth.block_number == block + 3


def test_revert_restoresSnapshot(env: ChainEnv) -> None:
    snapshot = env.dev.snapshot()
    block, now = env.w3.eth.block_number, env.dev.now()
    new_listing(env)
    env.dev.advance(1_000)
    env.dev.revert(snapshot)
    assert env.market.listing_count() == 0
    assert (env.w3.eth.block_number, env.dev.now()) == (block, now)
