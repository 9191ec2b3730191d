"""createListing, updateListing, publishVersion and the listing/version views."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak

from marketplace.chain.errors import (
    MalformedCapsule,
    MalformedCid,
    NotListingOwner,
    UnknownListing,
    UnknownVersion,
    ZeroPeriodSeconds,
)
from marketplace.chain.events import ListingCreated, ListingUpdated, VersionPublished
from marketplace.chain.types import Listing
from tests.chain.conftest import (
    CAPSULE,
    CID,
    TERMS,
    ChainEnv,
    block_time,
    new_debit,
    new_listing,
    only_event,
    publish,
)

# ---------------------------------------------------------------- createListing


def test_createListing_storesListing(env: ChainEnv) -> None:
    owner = env.actors.owner
    sent = env.market.create_listing(
        owner, price_per_period=5 * 10**15, period_seconds=86_400, auto_approve=True,
        terms_hash=TERMS, metadata_uri="ipfs://bafymeta",
    )
    assert sent.value == 1
    assert env.market.listing(1) == Listing(
        listing_id=1, owner=owner.address, price_per_period=5 * 10**15, period_seconds=86_400,
        version_count=0, auto_approve=True, open=True,
    )
    assert env.market.listing_count() == 1


def test_createListing_emitsListingCreated(env: ChainEnv) -> None:
    sent = env.market.create_listing(
        env.actors.stranger, price_per_period=7, period_seconds=60, auto_approve=False,
        terms_hash=TERMS, metadata_uri="ipfs://bafy-feed/descr.json",
    )
    event = only_event(env, sent, ListingCreated)
    assert event == ListingCreated(
        event.ref, 1, env.actors.stranger.address, 7, 60, False, TERMS,
        "ipfs://bafy-feed/descr.json",
    )


def test_createListing_numbersListingsFromOne(env: ChainEnv) -> None:
    ids = [new_listing(env, owner=o) for o in (env.actors.owner, env.actors.stranger,
                                               env.actors.owner)]
    assert ids == [1, 2, 3]
    assert env.market.listing_count() == 3
    assert env.market.listing(2).owner == env.actors.stranger.address


def test_createListing_acceptsExtremeValues(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=2**96 - 1, period=2**32 - 1, auto=False)
    listing = env.market.listing(listing_id)
    assert (listing.price_per_period, listing.period_seconds) == (2**96 - 1, 2**32 - 1)
    free = new_listing(env, price=0, period=1)
    assert env.market.listing(free).price_per_period == 0


def test_createListing_revertsWhen_zeroPeriodSeconds(env: ChainEnv) -> None:
    with pytest.raises(ZeroPeriodSeconds) as e:
        env.market.create_listing(env.actors.owner, price_per_period=1, period_seconds=0,
                                  auto_approve=True)
    assert e.value.fields == {}
    assert env.market.listing_count() == 0


# ---------------------------------------------------------------- updateListing


def test_updateListing_changesTerms(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=100, period=60, auto=True)
    env.market.update_listing(env.actors.owner, listing_id, price_per_period=250,
                              auto_approve=False, open=False)
    listing = env.market.listing(listing_id)
    assert (listing.price_per_period, listing.auto_approve, listing.open) == (250, False, False)
    assert (listing.owner, listing.period_seconds) == (env.actors.owner.address, 60)


def test_updateListing_emitsListingUpdated(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    sent = env.market.update_listing(env.actors.owner, listing_id, price_per_period=9,
                                     auto_approve=False, open=False)
    event = only_event(env, sent, ListingUpdated)
    assert event == ListingUpdated(event.ref, listing_id, 9, False, False)
    sent = env.market.update_listing(env.actors.owner, listing_id, price_per_period=0,
                                     auto_approve=True, open=True)
    event = only_event(env, sent, ListingUpdated)
    assert event == ListingUpdated(event.ref, listing_id, 0, True, True)


def test_updateListing_keepsExistingDebitsTerms(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=100, period=60, auto=False)
    debit_id = new_debit(env, listing_id, periods=2).value
    env.market.update_listing(env.actors.owner, listing_id, price_per_period=1_000,
                              auto_approve=True, open=True)
    env.market.consent(env.actors.owner, debit_id)
    debit = env.market.debit(debit_id)
    assert (debit.amount, debit.duration) == (200, 120)
    assert env.market.contract_balance() == 200


def test_updateListing_revertsWhen_notOwner(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    with pytest.raises(NotListingOwner) as e:
        env.market.update_listing(env.actors.stranger, listing_id, price_per_period=0,
                                  auto_approve=True, open=False)
    assert e.value.fields == {"listingId": listing_id, "caller": env.actors.stranger.address}
    assert env.market.listing(listing_id).open is True


def test_updateListing_revertsWhen_unknownListing(env: ChainEnv) -> None:
    new_listing(env)
    for listing_id in (0, 2, 2**256 - 1):
        with pytest.raises(UnknownListing) as e:
            env.market.update_listing(env.actors.owner, listing_id, price_per_period=1,
                                      auto_approve=True, open=True)
        assert e.value.fields == {"listingId": listing_id}


# ---------------------------------------------------------------- publishVersion


def test_publishVersion_storesVersion(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    first = publish(env, listing_id)
    second = env.market.publish_version(env.actors.owner, listing_id, CID + b"\x02", CAPSULE)
    assert (first.value, second.value) == (1, 2)
    assert env.market.listing(listing_id).version_count == 2
    v1 = env.market.version(listing_id, 1)
    assert (v1.listing_id, v1.version) == (listing_id, 1)
    assert v1.published_at == block_time(env, first)
    assert v1.cid_digest == keccak(CID)[:27]
    v2 = env.market.version(listing_id, 2)
    assert v2.published_at == block_time(env, second)
    assert v2.cid_digest == keccak(CID + b"\x02")[:27]


def test_publishVersion_emitsVersionPublished(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    publish(env, listing_id)
    capsule = bytes(reversed(CAPSULE))
    sent = env.market.publish_version(env.actors.owner, listing_id, CID, capsule)
    event = only_event(env, sent, VersionPublished)
    assert event == VersionPublished(event.ref, listing_id, 2, CID, capsule)


def test_publishVersion_numbersVersionsPerListing(env: ChainEnv) -> None:
    first = new_listing(env)
    second = new_listing(env)
    publish(env, first)
    publish(env, first)
    assert publish(env, second).value == 1
    assert env.market.listing(first).version_count == 2
    assert env.market.listing(second).version_count == 1


def test_publishVersion_acceptsLongestCid(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    cid = b"\x01" + b"\xff" * 127
    sent = env.market.publish_version(env.actors.owner, listing_id, cid, CAPSULE)
    assert only_event(env, sent, VersionPublished).cid == cid
    assert env.market.version(listing_id, 1).cid_digest == keccak(cid)[:27]


def test_publishVersion_acceptsClosedListing(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    env.market.update_listing(env.actors.owner, listing_id, price_per_period=1,
                              auto_approve=True, open=False)
    assert publish(env, listing_id).value == 1


def test_publishVersion_revertsWhen_notOwner(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    with pytest.raises(NotListingOwner) as e:
        publish(env, listing_id, owner=env.actors.stranger)
    assert e.value.fields == {"listingId": listing_id, "caller": env.actors.stranger.address}
    assert env.market.listing(listing_id).version_count == 0


def test_publishVersion_revertsWhen_unknownListing(env: ChainEnv) -> None:
    with pytest.raises(UnknownListing) as e:
        publish(env, 1)
    assert e.value.fields == {"listingId": 1}


@pytest.mark.parametrize("length", [0, 32, 104, 167, 169, 336])
def test_publishVersion_revertsWhen_malformedCapsule(env: ChainEnv, length: int) -> None:
    listing_id = new_listing(env)
    with pytest.raises(MalformedCapsule) as e:
        env.market.publish_version(env.actors.owner, listing_id, CID, b"\x07" * length)
    assert e.value.fields == {"length": length}


@pytest.mark.parametrize(
    "cid",
    [b"", b"\x01" + b"\x00" * 128, b"\x12\x20" + b"\x00" * 32, b"\x00" + CID[1:]],
    ids=["empty", "tooLong", "cidV0", "notStartingWith01"],
)
def test_publishVersion_revertsWhen_malformedCid(env: ChainEnv, cid: bytes) -> None:
    listing_id = new_listing(env)
    with pytest.raises(MalformedCid) as e:
        env.market.publish_version(env.actors.owner, listing_id, cid, CAPSULE)
    assert e.value.fields == {"length": len(cid)}
    assert env.market.listing(listing_id).version_count == 0


def test_publishVersion_checksOwnerBeforeShape(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    with pytest.raises(NotListingOwner):
        env.market.publish_version(env.actors.stranger, listing_id, b"", b"")


# ---------------------------------------------------------------- views


def test_getListing_revertsWhen_unknownListing(env: ChainEnv) -> None:
    new_listing(env)
    for listing_id in (0, 2):
        with pytest.raises(UnknownListing) as e:
            env.market.listing(listing_id)
        assert e.value.fields == {"listingId": listing_id}


def test_getVersion_revertsWhen_unknownListing(env: ChainEnv) -> None:
    with pytest.raises(UnknownListing) as e:
        env.market.version(3, 1)
    assert e.value.fields == {"listingId": 3}


def test_getVersion_revertsWhen_unknownVersion(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    publish(env, listing_id)
    for version in (0, 2, 2**32 - 1):
        with pytest.raises(UnknownVersion) as e:
            env.market.version(listing_id, version)
        assert e.value.fields == {"listingId": listing_id, "version": version}
