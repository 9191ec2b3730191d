"""EventReader: confirmation depth, chunked ranges, kinds, and logs of look-alike contracts."""

from __future__ import annotations

import pytest

from marketplace.chain.events import (
    DebitRequested,
    EventReader,
    ForeignLog,
    ListingCreated,
    VersionPublished,
)
from marketplace.chain.market import MarketClient
from tests.chain.conftest import (
    ChainEnv,
    new_debit,
    new_listing,
    publish,
    receipt_of,
)


def test_read_returnsEventsInChainOrder(env: ChainEnv) -> None:
    first = env.w3.eth.block_number + 1
    listing_id = new_listing(env)
    publish(env, listing_id)
    new_debit(env, listing_id)
    events = env.market.events().read(first)
    assert [type(e) for e in events] == [ListingCreated, VersionPublished, DebitRequested]
    assert [e.ref.block_number for e in events] == [first, first + 1, first + 2]


def test_read_withConfirmationsSkipsNewestBlocks(env: ChainEnv) -> None:
    first = env.w3.eth.block_number + 1
    sents = [env.market.create_listing(env.actors.owner, price_per_period=1, period_seconds=1,
                                       auto_approve=True) for _ in range(4)]
    head = env.w3.eth.block_number
    assert [s.block_number for s in sents] == [first, first + 1, first + 2, first + 3] == [
        head - 3, head - 2, head - 1, head]
    for k in range(5):
        reader = env.market.events(confirmations=k)
        assert reader.confirmed_head() == head - k
        events = reader.read(first)
        assert [e.listing_id for e in events] == list(range(1, 5 - k))  # type: ignore[union-attr]
    env.dev.mine(2)
    events = env.market.events(confirmations=2).read(first)
    assert [e.listing_id for e in events] == [1, 2, 3, 4]  # type: ignore[union-attr]


def test_read_explicitRangeAndKinds(env: ChainEnv) -> None:
    first = env.w3.eth.block_number + 1
    listing_id = new_listing(env)
    sent = publish(env, listing_id)
    new_debit(env, listing_id)
    reader = env.market.events()
    only = reader.read(sent.block_number, sent.block_number)
    assert [type(e) for e in only] == [VersionPublished]
    assert only[0].ref.tx_hash == sent.tx_hash
    debits = reader.read(first, kinds=[DebitRequested, ListingCreated])
    assert [type(e) for e in debits] == [ListingCreated, DebitRequested]


def test_read_inSmallChunksMatchesOneRange(env: ChainEnv) -> None:
    first = env.w3.eth.block_number + 1
    listing_id = new_listing(env)
    for _ in range(3):
        publish(env, listing_id)
    env.dev.mine(2)
    new_debit(env, listing_id)
    wide = env.market.events(max_block_range=500).read(first)
    narrow = env.market.events(max_block_range=2).read(first)
    assert len(wide) == 5
    assert narrow == wide


def test_reader_refusesBadSettings(env: ChainEnv) -> None:
    with pytest.raises(ValueError, match="confirmations"):
        env.market.events(confirmations=-1)
    with pytest.raises(ValueError, match="max_block_range"):
        EventReader(env.w3, env.market.decoder, max_block_range=0)


def test_read_neverReturnsLogsOfLookAlikeMarket(env: ChainEnv) -> None:
    twin = MarketClient.deploy_dealt(
        env.w3, env.actors.deployer, env.committee, env.actors.nodes).value
    first = env.w3.eth.block_number + 1  # after the twin's own committee events
    assert twin.address != env.market.address
    # the same calls on both markets emit identical events (same ids, same arguments)
    twin_sent = twin.create_listing(env.actors.owner, price_per_period=1, period_seconds=1,
                                    auto_approve=True)
    ours = env.market.create_listing(env.actors.owner, price_per_period=1, period_seconds=1,
                                     auto_approve=True)
    twin.publish_version(env.actors.owner, 1, b"\x01\x02", bytes(168))
    events = env.market.events().read(first)
    assert [(type(e), e.ref.tx_hash) for e in events] == [(ListingCreated, ours.tx_hash)]
    twin_events = twin.events().read(first)
    assert [type(e) for e in twin_events] == [ListingCreated, VersionPublished]
    assert twin_events[0].ref.tx_hash == twin_sent.tx_hash


def test_decode_raisesForeignLogFromLookAlikeMarket(env: ChainEnv) -> None:
    twin = MarketClient.deploy_dealt(
        env.w3, env.actors.deployer, env.committee, env.actors.nodes).value
    sent = twin.create_listing(env.actors.owner, price_per_period=1, period_seconds=1,
                               auto_approve=True)
    (log,) = receipt_of(env, sent)["logs"]
    assert twin.decoder.decode(log).ref.tx_hash == sent.tx_hash  # a valid market event...
    with pytest.raises(ForeignLog, match="not the market contract") as e:
        env.market.decoder.decode(log)  # ...but not from this market
    assert e.value.address.lower() == twin.address.lower()


def test_decode_raisesForeignLogForUnknownTopic(env: ChainEnv) -> None:
    sent = env.market.create_listing(env.actors.owner, price_per_period=1, period_seconds=1,
                                     auto_approve=True)
    (log,) = receipt_of(env, sent)["logs"]
    forged = dict(log)
    forged["topics"] = [b"\x99" * 32, *log["topics"][1:]]
    with pytest.raises(ForeignLog, match="not a market event"):
        env.market.decoder.decode(forged)
    with pytest.raises(ForeignLog, match="not a market event"):
        env.market.decoder.decode({**forged, "topics": []})
