import pytest

from marketplace.chain.errors import UnknownListing
from tests.chain.conftest import ChainEnv


def test_deployed_market_reports_its_committee(env: ChainEnv) -> None:
    assert env.market.committee() == env.committee
    assert env.market.listing_count() == 0


def test_revert_maps_to_custom_error_with_arguments(env: ChainEnv) -> None:
    with pytest.raises(UnknownListing) as caught:
        env.market.request_debit(env.actors.buyer, 7, periods=1, buyer_key=b"\x01" * 32, value=0)
    assert caught.value.fields == {"listingId": 7}
    with pytest.raises(UnknownListing):
        env.market.listing(7)
