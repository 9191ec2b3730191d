"""The indexer on the embedded chain: bad documents are indexed with their reason, an
unavailable one is retried, reorgs and restarts, on SQLite and Postgres."""

from __future__ import annotations

import json

from marketplace.documents import encode_document
from storage.cid import Cid, Codec
from tests.catalog.conftest import Backend, Market, doc, raw_uri


def test_every_bad_document_is_indexed_with_its_reason(
    backend: Backend, chain_market: Market
) -> None:
    m = chain_market
    good = m.listing_with(doc("Air quality", "PM2.5", ("air",)))
    missing = m.listing(raw_uri(b"never stored"))
    swapped_cid = Cid.of_block(Codec.RAW, b"what the owner published")
    m.store.blocks[swapped_cid] = b"something else"  # a store that lies
    wrong_cid = m.listing("ipfs://" + swapped_cid.text)
    bad_json = m.listing_with_bytes(b"{not json")
    wrong_schema = m.listing_with_bytes(json.dumps({"schema": "datadebit/listing/v9",
                                                    "title": "x"}).encode())
    not_uri = m.listing("https://example.com/listing.json")
    no_doc = m.listing("")
    store = backend.open()
    m.indexer(store).catch_up()
    status = {i: store.listing(i).summary.document_status  # type: ignore[union-attr]
              for i in (good, missing, wrong_cid, bad_json, wrong_schema, not_uri, no_doc)}
    assert status == {
        good: "ok", missing: "unavailable", wrong_cid: "cid_mismatch",
        bad_json: "invalid_json", wrong_schema: "invalid_schema", not_uri: "bad_uri",
        no_doc: "none",
    }
    detail = store.listing(wrong_schema)
    assert detail is not None and detail.document is None and detail.document_error
    assert store.listing(good).document["title"] == "Air quality"  # type: ignore[union-attr,index]
    assert [s.listing_id for s in store.search("air")] == [good]


def test_an_unavailable_document_is_retried_until_the_store_has_it(
    backend: Backend, chain_market: Market
) -> None:
    m = chain_market
    listing_doc = doc("Traffic counts", "per hour", ("city",))
    data = encode_document(listing_doc)
    listing = m.listing(raw_uri(data))
    store = backend.open()
    indexer = m.indexer(store, retry_delay=10.0)
    m.store.down = True
    indexer.catch_up()
    assert store.listing(listing).summary.document_status == "unavailable"  # type: ignore[union-attr]
    m.store.down = False
    m.store.put_bytes(data)
    indexer.poll_once()  # not due yet: the retry waits
    assert store.listing(listing).summary.document_status == "unavailable"  # type: ignore[union-attr]
    m.clock[0] += 11
    indexer.poll_once()
    assert store.listing(listing).summary.document_status == "ok"  # type: ignore[union-attr]
    assert [s.listing_id for s in store.search("traffic")] == [listing]


def test_a_store_that_goes_down_never_stops_the_indexer(
    backend: Backend, chain_market: Market
) -> None:
    m = chain_market
    m.store.down = True
    first = m.listing_with_bytes(encode_document(doc("One")))
    store = backend.open()
    indexer = m.indexer(store)
    indexer.catch_up()
    m.store.down = False
    second = m.listing_with(doc("Two"))
    indexer.catch_up()
    assert store.listing(first).summary.document_status == "unavailable"  # type: ignore[union-attr]
    assert store.listing(second).summary.document_status == "ok"  # type: ignore[union-attr]


def test_a_reorg_that_removes_a_listing_removes_it_from_the_index(
    backend: Backend, chain_market: Market
) -> None:
    m = chain_market
    kept = m.listing_with(doc("Kept listing", "stays"))
    store = backend.open()
    indexer = m.indexer(store)
    indexer.catch_up()
    snapshot = m.dev.snapshot()
    dropped = m.listing_with(doc("Dropped listing", "reorganised away"))
    m.debit(kept)
    indexer.catch_up()
    assert store.listing(dropped) is not None
    assert store.listing(kept).debits == {"requested": 1}  # type: ignore[union-attr]
    m.dev.revert(snapshot)
    m.dev.mine(2)
    indexer.catch_up()
    assert store.listing(dropped) is None
    assert [s.listing_id for s in store.search("listing")] == [kept]
    assert store.listing(kept).debits == {}  # type: ignore[union-attr]
    cursor = store.cursor()
    assert cursor is not None and cursor.block_number == m.market.w3.eth.block_number


def test_a_restart_resumes_from_the_cursor(backend: Backend, chain_market: Market) -> None:
    m = chain_market
    first = m.listing_with(doc("First"))
    store = backend.open()
    assert m.indexer(store).catch_up() >= 1  # the deployment's logs and the listing's
    m.listing_with(doc("Second"))
    reopened = backend.open()
    restarted = m.indexer(reopened)
    assert restarted.catch_up() == 1  # only the new log: the first is not re-read
    assert reopened.count() == 2
    assert reopened.listing(first).summary.document_status == "ok"  # type: ignore[union-attr]
