"""The catalog's store on SQLite and Postgres: ranking, filters, rewinds and restarts,
with synthetic events through the same `apply_logs` path the watcher uses."""

from __future__ import annotations

from marketplace.catalog.store import DocumentResult
from marketplace.chain.events import (
    DebitConsented,
    DebitRequested,
    ListingCreated,
    ListingUpdated,
    LogRef,
    MarketEvent,
)
from marketplace.chain.types import DebitId, ListingId, Wei
from marketplace.chain.watcher import Cursor, log_key
from tests.catalog.conftest import Backend

OWNER = "0x" + "11" * 20


def ref(block: int, index: int = 0) -> LogRef:
    return LogRef(block, f"0x{block:064x}", f"0x{block * 1000 + index:064x}", index)


def created(listing_id: int, block: int, price: int = 100) -> ListingCreated:
    return ListingCreated(
        ref(block, 100 + listing_id), ListingId(listing_id), OWNER, Wei(price), 3600, False,  # type: ignore[arg-type]
        b"\x00" * 32, f"ipfs://doc{listing_id}",
    )


def apply(store: object, block: int, *events: MarketEvent) -> None:
    store.apply_logs(  # type: ignore[attr-defined]
        1, [(log_key(e), [e]) for e in events], Cursor(block, f"0x{block:064x}")
    )


def described(listing_id: int, title: str, description: str = "",
              tags: tuple[str, ...] = ()) -> DocumentResult:
    return DocumentResult(listing_id, f"ipfs://doc{listing_id}", "ok", title=title,
                          description=description, tags=tags, document_json="{}")


def corpus(backend: Backend) -> object:
    store = backend.open()
    apply(store, 1, created(1, 1, 500), created(2, 1, 100), created(3, 1, 300),
          created(4, 1, 2**255))
    store.record_documents([
        described(1, "Weather stations", "hourly readings; air quality included", ("weather",)),
        described(2, "Air quality sensors", "PM2.5 from city sensors", ("air", "city")),
        described(3, "Traffic counts", "vehicles per hour", ("city",)),
        described(4, "Quality assurance logs", "factory data about air filters", ("factory",)),
    ])
    return store


def ids(found: list) -> list[int]:  # type: ignore[type-arg]
    return [s.listing_id for s in found]


def test_a_title_match_ranks_above_a_description_match(backend: Backend) -> None:
    store = corpus(backend)
    found = store.search("air quality")  # type: ignore[attr-defined]
    assert ids(found)[0] == 2  # both words in the title
    assert set(ids(found)) == {1, 2, 4}
    assert ids(store.search("sensors")) == [2]  # type: ignore[attr-defined]
    assert ids(store.search("nothing-like-this")) == []  # type: ignore[attr-defined]


def test_tag_and_max_price_filter(backend: Backend) -> None:
    store = corpus(backend)
    assert set(ids(store.search(None, tag="city"))) == {2, 3}  # type: ignore[attr-defined]
    assert set(ids(store.search(None, tag="CITY"))) == {2, 3}  # type: ignore[attr-defined]
    assert ids(store.search("air", tag="city")) == [2]  # type: ignore[attr-defined]
    assert set(ids(store.search(None, max_price=300))) == {2, 3}  # type: ignore[attr-defined]
    assert ids(store.search("air", max_price=100)) == [2]  # type: ignore[attr-defined]
    # a uint256 price beyond int64 compares as a number
    assert 4 not in ids(store.search(None, max_price=2**255 - 1))  # type: ignore[attr-defined]
    assert 4 in ids(store.search(None, max_price=2**256 - 1))  # type: ignore[attr-defined]
    assert store.listing(4).summary.price_wei == 2**255  # type: ignore[attr-defined]


def test_query_syntax_is_only_words(backend: Backend) -> None:
    store = corpus(backend)
    for q in ('"', "air OR", "NEAR(", "*", "a:b", "title:air", "'; DROP TABLE x", "\x00"):
        store.search(q)  # type: ignore[attr-defined]  # never raises
    assert ids(store.search("AIR-quality!")) == ids(store.search("air quality"))  # type: ignore[attr-defined]


def test_rewinding_an_update_restores_the_price_and_removes_later_listings(
    backend: Backend,
) -> None:
    store = corpus(backend)
    update = ListingUpdated(ref(5), ListingId(2), Wei(999), True, False)
    requested = DebitRequested(ref(5, 1), DebitId(1), ListingId(2), OWNER, 1, Wei(100),  # type: ignore[arg-type]
                               b"\x01" * 32, b"\x00" * 32, False, 0, 0)
    apply(store, 5, update, requested, created(5, 5))
    assert ids(store.search("sensors")) == []  # closed  # type: ignore[attr-defined]
    assert store.listing(2).debits == {"requested": 1}  # type: ignore[attr-defined]
    store.rewind_to(1)  # type: ignore[attr-defined]
    detail = store.listing(2)  # type: ignore[attr-defined]
    assert (detail.summary.price_wei, detail.summary.open) == (100, True)
    assert detail.debits == {}
    assert store.listing(5) is None  # type: ignore[attr-defined]
    assert store.cursor() == Cursor(1, f"0x{1:064x}")  # type: ignore[attr-defined]
    assert ids(store.search("sensors")) == [2]  # type: ignore[attr-defined]


def test_debit_counts_follow_the_latest_state(backend: Backend) -> None:
    store = corpus(backend)
    requests = [DebitRequested(ref(6, i), DebitId(i), ListingId(3), OWNER, 1, Wei(1),  # type: ignore[arg-type]
                               b"\x01" * 32, b"\x00" * 32, False, 0, 0) for i in (1, 2, 3)]
    apply(store, 6, *requests)
    apply(store, 7, DebitConsented(ref(7), DebitId(2), ListingId(3), 0, 0))
    assert store.listing(3).debits == {"requested": 2, "active": 1}  # type: ignore[attr-defined]


def test_a_restart_keeps_the_cursor_and_the_index(backend: Backend) -> None:
    corpus(backend)
    reopened = backend.open()
    assert reopened.cursor() == Cursor(1, f"0x{1:064x}")
    assert ids(reopened.search("traffic")) == [3]
    # the same log again (a poll repeated after a crash) is not applied twice
    apply(reopened, 1, created(1, 1, 500))
    assert reopened.count() == 4


TUSD = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20


def priced_in(listing_id: int, block: int, price: int, asset: str) -> ListingCreated:
    from eth_utils.address import to_checksum_address  # noqa: PLC0415

    return ListingCreated(
        ref(block, 100 + listing_id), ListingId(listing_id), OWNER, Wei(price), 3600, False,  # type: ignore[arg-type]
        b"\x00" * 32, f"ipfs://doc{listing_id}", to_checksum_address(asset),
    )


def test_token_listings_carry_their_asset_and_a_price_cap_compares_one_asset(
    backend: Backend,
) -> None:
    """Issue 12: a price is in its listing's asset. 5 TUSD (5,000,000 base units) is not
    'more than' 0.001 ETH: a cap without an asset keeps ether listings only, a cap with
    one compares that asset's base units."""
    from marketplace.chain.assets import AssetInfo  # noqa: PLC0415

    store = corpus(backend)  # listings 1-4 in ether
    apply(store, 2, priced_in(5, 2, 5_000_000, TUSD), priced_in(6, 2, 20_000_000, TUSD),
          priced_in(7, 2, 1, OTHER))
    store.record_documents([described(5, "Air in TUSD"), described(6, "Air, dearer"),
                            described(7, "Air elsewhere")])
    tusd = store.listing(5).summary  # type: ignore[attr-defined]
    assert (tusd.asset.lower(), tusd.asset_symbol, tusd.asset_decimals) == (TUSD, None, None)
    assert sorted(a.lower() for a in store.unknown_assets()) == [TUSD, OTHER]  # type: ignore[attr-defined]
    store.record_asset(AssetInfo(tusd.asset, "TUSD", 6))  # type: ignore[attr-defined]
    assert [a.lower() for a in store.unknown_assets()] == [OTHER]  # type: ignore[attr-defined]
    summary = store.listing(5).summary  # type: ignore[attr-defined]
    assert (summary.asset_symbol, summary.asset_decimals, summary.price_wei) == (
        "TUSD", 6, 5_000_000)
    ether = store.listing(2).summary  # type: ignore[attr-defined]
    assert (int(ether.asset, 16), ether.asset_symbol, ether.asset_decimals) == (0, "ETH", 18)
    assert {a.symbol for a in store.assets()} == {"ETH", "TUSD"}  # type: ignore[attr-defined]
    # a cap without an asset is in wei: no token listing, however cheap in base units
    assert set(ids(store.search(None, max_price=10**30))) == {1, 2, 3}  # type: ignore[attr-defined]
    assert set(ids(store.search("air", max_price=10**30))) == {1, 2}  # type: ignore[attr-defined]
    for q in (None, "air"):  # both search paths (newest-first and ranked)
        assert set(ids(store.search(q, asset=TUSD))) == {5, 6}  # type: ignore[attr-defined]
        assert ids(store.search(q, asset=TUSD.upper().replace("0X", "0x"),  # type: ignore[attr-defined]
                                max_price=5_000_000)) == [5]
        assert ids(store.search(q, asset=OTHER, max_price=0)) == []  # type: ignore[attr-defined]
    assert set(ids(store.search(None))) == {1, 2, 3, 4, 5, 6, 7}  # type: ignore[attr-defined]
