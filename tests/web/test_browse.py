"""The application layer's reads the pages use (marketplace.app.browse and the catalog
client), and amounts in the listing's own asset (an ERC-20 listing is never shown as ETH)."""

from __future__ import annotations

import pytest

from marketplace.app.browse import (
    VersionNotPublished,
    buyer_debits,
    listing_page,
    owner_debits,
    store_purpose_bytes,
    version_of,
    versions_of,
)
from marketplace.app.catalog import CatalogRefused, SearchQuery
from marketplace.app.reads import UnknownListing
from marketplace.catalog.indexer import CatalogIndexer
from marketplace.chain.types import DebitState
from marketplace.documents import (
    DocumentSchemaError,
    DocumentTooLarge,
    ListingDocument,
    PurposeDocument,
    encode_document,
    load_listing_document,
    purpose_hash,
)
from storage.cid import Cid, Codec
from tests.app.test_tokens import deploy
from tests.chain.conftest import CompiledContract, helper_contracts  # noqa: F401 - fixture
from tests.web.conftest import PRICE, WebWorld


def test_listing_page_reads_the_verified_document_and_versions(world: WebWorld) -> None:
    page = listing_page(world.net.market, world.net.store, world.air.listing_id)
    assert page.document is not None and page.document.title == "Air quality in Lyon"
    assert page.problem is None and page.price_text == "0.001 ETH" and page.period_text == "1d"
    [version] = page.versions
    assert version.version == 1 and len(version.capsule) == 168
    assert version_of(world.net.market, world.air.listing_id, 1) == version
    with pytest.raises(VersionNotPublished):
        version_of(world.net.market, world.air.listing_id, 2)
    with pytest.raises(UnknownListing):
        listing_page(world.net.market, world.net.store, 999)
    assert versions_of(world.net.market, world.hostile.listing_id) == []


def test_owner_debits_sort_requests_and_read_purposes(world: WebWorld) -> None:
    debits = owner_debits(world.net.market, world.net.store, world.owner.address)
    pending = {row.debit.debit_id: row for row in debits.pending}
    assert set(pending) == {world.sealed.debit.debit_id, world.plain.debit.debit_id}
    sealed, plain = pending[world.sealed.debit.debit_id], pending[world.plain.debit.debit_id]
    assert sealed.sealed and sealed.purpose is None and sealed.problem is None
    assert sealed.purpose_cid == world.sealed.purpose_cid
    assert not plain.sealed and plain.purpose is not None
    assert plain.purpose.requester.startswith("Lab ") and plain.amount_text == "0.002 ETH"
    [active] = debits.active
    assert active.debit.debit_id == world.active.debit.debit_id
    assert not active.declared and active.purpose_cid is None and not active.expired
    stranger = owner_debits(world.net.market, world.net.store, world.buyer.wallet.address)
    assert stranger.pending == stranger.active == ()


def test_a_purpose_missing_from_the_store_is_a_problem_not_an_error(world: WebWorld) -> None:
    missing = PurposeDocument(requester="Ghost", purpose="never stored")
    listing = world.owner.create_listing(PRICE, 3600, False, None, "")
    debit = world.net.market.request_debit(
        world.buyer.wallet, listing.listing_id, periods=1, buyer_key=b"\x09" * 32,
        purpose_hash=purpose_hash(encode_document(missing)), value=PRICE,
    ).value
    rows = owner_debits(world.net.market, world.net.store, world.owner.address).pending
    [row] = [r for r in rows if r.debit.debit_id == debit]
    assert row.purpose is None and not row.sealed
    assert row.problem is not None and row.problem.reason == "unavailable"


def test_buyer_debits_list_entitled_versions_only_for_active_debits(world: WebWorld) -> None:
    rows = {r.debit.debit_id: r for r in buyer_debits(world.net.market,
                                                        world.buyer.wallet.address)}
    active = rows[world.active.debit.debit_id]
    assert active.debit.state is DebitState.ACTIVE
    assert [v.version for v in active.entitled] == [1]
    assert rows[world.sealed.debit.debit_id].entitled == ()
    assert list(rows) == sorted(rows, reverse=True)  # newest first
    assert buyer_debits(world.net.market, world.owner.address) == []


def test_store_purpose_bytes_checks_before_storing(world: WebWorld) -> None:
    data = encode_document(PurposeDocument(requester="B", purpose="c"))
    stored = store_purpose_bytes(world.net.store, data)
    assert stored.purpose_hash == purpose_hash(data) and not stored.sealed
    assert world.net.store.has(stored.cid)
    bad = b'{"schema":"datadebit/purpose/v1","requester":"B"}'
    with pytest.raises(DocumentSchemaError):
        store_purpose_bytes(world.net.store, bad)
    assert not world.net.store.has(Cid.of_block(Codec.RAW, bad))
    with pytest.raises(DocumentTooLarge):
        store_purpose_bytes(world.net.store, b" " * (262_144 + 1))


def test_catalog_client_reads_the_catalog_api(world: WebWorld) -> None:
    found = world.services.catalog.search(SearchQuery("lyon"))
    assert [f.id for f in found] == [world.air.listing_id]
    assert found[0].price_wei == PRICE and found[0].tags == ("air", "city")
    detail = world.services.catalog.listing(world.air.listing_id)
    assert detail.title == "Air quality in Lyon" and detail.versions[0].version == 1
    with pytest.raises(CatalogRefused) as refused:
        world.services.catalog.listing(999)
    assert (refused.value.status, refused.value.code) == (404, "unknown_listing")


def test_token_listing_is_priced_in_its_token(
    world: WebWorld, helper_contracts: dict[str, CompiledContract]  # noqa: F811
) -> None:
    token = deploy(world.net, helper_contracts["PermitToken"])
    symbol = token.functions.symbol().call()
    decimals = token.functions.decimals().call()
    created = world.owner.create_listing(
        5 * 10**decimals + 10**decimals // 4, 3600, True,
        ListingDocument(title="Token priced", description="paid in a token"),
        asset=token.address,
    )
    CatalogIndexer(world.net.market, world.catalog,
                   lambda uri: load_listing_document(world.net.store, uri),
                   confirmations=0).catch_up()
    client = world.client()
    shown = f"5.25 {symbol}"
    listing = client.get(f"/listings/{created.listing_id}").text
    assert f"{shown} per period" in listing and "ETH" not in listing.split("<main")[1]
    assert f'data-asset="{token.address}"' in listing
    found = client.get("/", params={"q": "token priced"}).text
    assert shown in found
    # a price cap in the token's symbol keeps that token's listings only (issue 12's
    # catalog: a cap compares one asset); an unknown symbol is a 400 with the reason
    capped = client.get("/", params={"q": "priced", "max_price": f"6{symbol.lower()}"})
    assert capped.status_code == 200 and f'data-listing-id="{created.listing_id}"' in capped.text
    below = client.get("/", params={"q": "priced", "max_price": f"5 {symbol}"})
    assert f'data-listing-id="{created.listing_id}"' not in below.text
    in_ether = client.get("/", params={"q": "priced", "max_price": "1000eth"})
    assert f'data-listing-id="{created.listing_id}"' not in in_ether.text
    unknown = client.get("/", params={"max_price": "5zzz"})
    assert unknown.status_code == 400 and "no listed token has the symbol" in unknown.text
