from tests.gateway.conftest import Stack


def test_buyer_recovers_data_key_from_two_of_three(stack: Stack) -> None:
    listing = stack.listing(auto_approve=True)
    published = stack.publish(listing)
    debit = stack.debit(listing)
    stack.sync()
    fetched = stack.key_client().fetch(
        stack.buyer, stack.buyer_secret, debit, published.ctx, published.capsule
    )
    assert fetched.data_key == published.data_key
    assert len(fetched.used_nodes) == 2
