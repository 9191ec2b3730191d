"""The catalog's index: listings with their documents, versions and debit counts, and a
full-text index over the documents (SQLite FTS5 embedded, Postgres `tsvector` + GIN).

It is also the catalog's `WatcherState`: the generic chain watcher records each market
log here exactly once, with the event itself as its row, and a reorg rewinds it. Every
row derived from a log carries that log's block; a listing's price and policy are kept
as a history of (block, log) rows so that rewinding an update restores the one before.

Prices are uint256: they are stored as 78-digit zero-padded decimal text, which compares
like the numbers on both backends (no int64 overflow, no NUMERIC dialects).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from eth_utils.address import to_checksum_address

from marketplace.chain.assets import AssetInfo
from marketplace.chain.events import (
    DebitCancelled,
    DebitConsented,
    DebitRejected,
    DebitRequested,
    DebitRevoked,
    ListingCreated,
    ListingUpdated,
    MarketEvent,
    VersionPublished,
)
from marketplace.chain.types import ETHER
from marketplace.chain.watcher import (
    Cursor,
    LogKey,
    advance_cursor,
    read_cursor,
    read_seen_blocks,
    rewind_cursor,
    watcher_tables,
)
from marketplace.db import PostgresDatabase, SqliteDatabase, StateStoreError, Tx, first_time
from storage.cid import Cid
from storage.errors import InvalidCid

#: The layout below; a catalog written by another layout is refused (rebuild it: the
#: indexer replays the chain).
SCHEMA_VERSION = 2
#: The prefix of the watcher's bookkeeping tables (cursor, seen blocks) in this store.
_PREFIX = "catalog_"
#: Logs recorded per transaction.
LOGS_PER_TRANSACTION = 500
#: Document statuses besides the loader's `DocumentError.reason` codes.
STATUS_OK = "ok"
STATUS_PENDING = "pending"
STATUS_NONE = "none"  # the listing names no document (empty metadataURI)
#: Statuses the indexer tries again later (a store that was down may come back).
RETRIED_STATUSES = ("unavailable", "error")
#: Debit states counted per listing, by the event that set them.
_DEBIT_STATUS = {
    DebitRequested: "requested",
    DebitConsented: "active",
    DebitRejected: "rejected",
    DebitCancelled: "cancelled",
    DebitRevoked: "revoked",
}
_PRICE_DIGITS = 78  # 2**256 has 78 decimal digits

_COMMON_SCHEMA = (
    *watcher_tables(_PREFIX),
    """CREATE INDEX IF NOT EXISTS catalog_processed_logs_by_block
        ON catalog_processed_logs (block_number)""",
    """CREATE TABLE IF NOT EXISTS catalog_listing_history (
        listing_id BIGINT NOT NULL, block_number BIGINT NOT NULL, log_index BIGINT NOT NULL,
        price_key TEXT NOT NULL, auto_approve INTEGER NOT NULL, open INTEGER NOT NULL,
        PRIMARY KEY (listing_id, block_number, log_index))""",
    """CREATE INDEX IF NOT EXISTS catalog_listing_history_by_block
        ON catalog_listing_history (block_number)""",
    """CREATE TABLE IF NOT EXISTS catalog_tags (
        listing_id BIGINT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (listing_id, tag))""",
    "CREATE INDEX IF NOT EXISTS catalog_tags_by_tag ON catalog_tags (tag, listing_id)",
    """CREATE TABLE IF NOT EXISTS catalog_versions (
        listing_id BIGINT NOT NULL, version BIGINT NOT NULL, cid TEXT NOT NULL,
        block_number BIGINT NOT NULL, PRIMARY KEY (listing_id, version))""",
    """CREATE TABLE IF NOT EXISTS catalog_debits (
        debit_id BIGINT NOT NULL, listing_id BIGINT NOT NULL, status TEXT NOT NULL,
        block_number BIGINT NOT NULL, log_index BIGINT NOT NULL,
        PRIMARY KEY (debit_id, block_number, log_index))""",
    "CREATE INDEX IF NOT EXISTS catalog_debits_by_listing ON catalog_debits (listing_id)",
    "CREATE INDEX IF NOT EXISTS catalog_debits_by_block ON catalog_debits (block_number)",
    # how each payment asset is shown (symbol NULL: none that is safe to show; a listing
    # whose asset has no row yet is shown in base units until the indexer reads it)
    """CREATE TABLE IF NOT EXISTS catalog_assets (
        asset TEXT PRIMARY KEY, symbol TEXT, decimals BIGINT NOT NULL)""",
)
_LISTINGS = """CREATE TABLE IF NOT EXISTS catalog_listings (
    listing_id BIGINT PRIMARY KEY, owner TEXT NOT NULL, price_key TEXT NOT NULL,
    period_seconds BIGINT NOT NULL, auto_approve INTEGER NOT NULL, open INTEGER NOT NULL,
    metadata_uri TEXT NOT NULL, terms_hash TEXT NOT NULL, block_number BIGINT NOT NULL,
    doc_status TEXT NOT NULL, doc_error TEXT, doc_json TEXT, title TEXT,
    description TEXT, tags TEXT, doc_attempts BIGINT NOT NULL DEFAULT 0,
    doc_retry_at BIGINT NOT NULL DEFAULT 0, asset TEXT NOT NULL{extra})"""
_LISTING_INDEXES = (
    "CREATE INDEX IF NOT EXISTS catalog_listings_by_block ON catalog_listings (block_number)",
    "CREATE INDEX IF NOT EXISTS catalog_listings_by_doc ON catalog_listings (doc_status)",
    "CREATE INDEX IF NOT EXISTS catalog_listings_by_price ON catalog_listings (asset, price_key)",
)
_SQLITE_SCHEMA = (
    _LISTINGS.format(extra=""),
    *_LISTING_INDEXES,
    """CREATE VIRTUAL TABLE IF NOT EXISTS catalog_fts USING fts5(
        title, tags, description, tokenize = 'porter unicode61')""",
)
_POSTGRES_SCHEMA = (
    _LISTINGS.format(extra=", tsv TSVECTOR"),
    *_LISTING_INDEXES,
    "CREATE INDEX IF NOT EXISTS catalog_listings_fts ON catalog_listings USING GIN (tsv)",
)
#: Weights: a title match counts 3x a description match, a tag 2x (bm25 column weights;
#: Postgres' ts_rank weighs A/B/C as 1.0/0.4/0.2, the same order).
_BM25 = "bm25(catalog_fts, 3.0, 2.0, 1.0)"
_PG_TSV = (
    "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(tags, '')), 'B') || "
    "setweight(to_tsvector('english', coalesce(description, '')), 'C')"
)
_SUMMARY_COLUMNS = (
    "l.listing_id, l.owner, l.price_key, l.period_seconds, l.auto_approve, l.open, "
    "l.doc_status, l.title, l.description, l.tags, l.asset, "
    "(SELECT a.symbol FROM catalog_assets a WHERE a.asset = l.asset), "
    "(SELECT a.decimals FROM catalog_assets a WHERE a.asset = l.asset)"
)
_SUMMARY_WIDTH = 13
_WORD = re.compile(r"\w+")
#: FTS5 search: ranked rowids fetched = (offset + limit) x _OVERFETCH + _FETCH_SLACK (room
#: for closed listings), grown x _FETCH_GROWTH while a page comes back short.
_OVERFETCH = 2
_FETCH_SLACK = 32
#: A query (without tag or price filter) matching more listings than this ranks only the
#: newest this-many matches.
#: bm25 scores every match before any limit (~0.65 µs each here), so a word in most of
#: 100,000 listings cost 51-74 ms p95; such a word says little about relevance, and among
#: the 20,000 newest matches the best are as good a first page (the budget is 50 ms).
BROAD_QUERY_WINDOW = 20_000
_FETCH_GROWTH = 4


@dataclass(frozen=True, slots=True)
class ListingSummary:
    listing_id: int
    owner: str
    price_wei: int
    period_seconds: int
    auto_approve: bool
    open: bool
    document_status: str
    title: str | None
    description: str | None  # the first 280 characters
    tags: tuple[str, ...]
    #: What the price is in: `ETHER` or an ERC-20's address; its symbol and decimals once
    #: the indexer has read them (`asset_decimals` None: not yet, show base units).
    asset: str = ETHER
    asset_symbol: str | None = "ETH"
    asset_decimals: int | None = 18


@dataclass(frozen=True, slots=True)
class VersionRow:
    version: int
    cid: str
    block_number: int


@dataclass(frozen=True, slots=True)
class ListingDetail:
    summary: ListingSummary
    metadata_uri: str
    terms_hash: str
    block_number: int
    document_error: str | None
    document: dict[str, object] | None  # the verified document, as stored
    versions: tuple[VersionRow, ...]
    debits: dict[str, int]  # status -> count (requested, active, rejected, ...)


@dataclass(frozen=True, slots=True)
class DocumentResult:
    """What loading one listing's document gave: fields of a valid document, or the
    reason it could not be used."""

    listing_id: int
    metadata_uri: str
    status: str
    title: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    document_json: str | None = None
    error: str | None = None
    retry_at: int = 0


def price_key(wei: int) -> str:
    if not 0 <= wei < 10**_PRICE_DIGITS:
        raise ValueError("a price is a uint256")
    return f"{wei:0{_PRICE_DIGITS}d}"


def fts_words(query: str) -> list[str]:
    """The query's words, lower case: every word must match (no query syntax reaches the
    full-text engine, so no input can make it fail)."""
    return [w.lower() for w in _WORD.findall(query)][:32]


class CatalogStore:
    """Typed access to the catalog's tables; each method is one transaction."""

    def __init__(self, db: SqliteDatabase | PostgresDatabase) -> None:
        self.db = db
        self.postgres = isinstance(db, PostgresDatabase)
        with db.transaction() as tx:
            row = (
                tx.one("SELECT version FROM catalog_schema_version WHERE id = 1")
                if "catalog_schema_version" in tx.tables() else None
            )
            if row is not None and row[0] != SCHEMA_VERSION:
                raise StateStoreError(
                    f"the catalog's state has layout {row[0]}, this version reads "
                    f"{SCHEMA_VERSION}: delete it and let the indexer replay the chain"
                )
            for statement in (
                *_COMMON_SCHEMA, *(_POSTGRES_SCHEMA if self.postgres else _SQLITE_SCHEMA)
            ):
                tx.execute(statement)
            tx.execute(
                "INSERT INTO catalog_schema_version VALUES (1, ?) ON CONFLICT DO NOTHING",
                (SCHEMA_VERSION,),
            )
            tx.execute("INSERT INTO catalog_assets VALUES (?, 'ETH', 18) ON CONFLICT DO NOTHING",
                       (ETHER,))

    def close(self) -> None:
        self.db.close()

    # ---------------------------------------------------------------- WatcherState

    def cursor(self) -> Cursor | None:
        with self.db.read() as tx:
            return read_cursor(tx, _PREFIX)

    def seen_blocks(self) -> list[Cursor]:
        with self.db.read() as tx:
            return read_seen_blocks(tx, _PREFIX)

    def rewind_to(self, ancestor: int) -> None:
        """Forget everything derived from blocks after `ancestor`: listings created
        there, updates made there (the previous price and policy come back), versions
        and debit state changes."""
        with self.db.transaction() as tx:
            gone = [r[0] for r in tx.all(
                "SELECT listing_id FROM catalog_listings WHERE block_number > ?", (ancestor,)
            )]
            for listing_id in gone:
                self._delete_text(tx, listing_id)
                tx.execute("DELETE FROM catalog_tags WHERE listing_id = ?", (listing_id,))
            tx.execute("DELETE FROM catalog_listings WHERE block_number > ?", (ancestor,))
            updated = [r[0] for r in tx.all(
                "SELECT DISTINCT listing_id FROM catalog_listing_history WHERE block_number > ?",
                (ancestor,),
            )]
            for table in (
                "catalog_listing_history", "catalog_processed_logs", "catalog_versions",
                "catalog_debits",
            ):
                tx.execute(f"DELETE FROM {table} WHERE block_number > ?", (ancestor,))  # noqa: S608
            for listing_id in updated:
                latest = tx.one(
                    "SELECT price_key, auto_approve, open FROM catalog_listing_history "
                    "WHERE listing_id = ? ORDER BY block_number DESC, log_index DESC LIMIT 1",
                    (listing_id,),
                )
                if latest is not None:
                    tx.execute(
                        "UPDATE catalog_listings SET price_key = ?, auto_approve = ?, open = ? "
                        "WHERE listing_id = ?",
                        (*latest, listing_id),
                    )
            rewind_cursor(tx, ancestor, _PREFIX)

    def apply_logs(
        self,
        chain_id: int,
        logs: Sequence[tuple[LogKey, Sequence[MarketEvent]]],
        new_cursor: Cursor,
    ) -> list[LogKey]:
        """Apply each log not processed before (its rows are the events themselves) and
        advance the cursor; returns the logs that were new."""
        fresh: list[LogKey] = []
        chunks = [logs[i:i + LOGS_PER_TRANSACTION]
                  for i in range(0, len(logs), LOGS_PER_TRANSACTION)] or [[]]
        for n, chunk in enumerate(chunks):
            with self.db.transaction() as tx:
                for key, events in chunk:
                    if not first_time(tx, "catalog_processed_logs", chain_id, key):
                        continue
                    for event in events:
                        _apply(tx, event)
                    fresh.append(key)
                if n == len(chunks) - 1:
                    advance_cursor(tx, new_cursor, _PREFIX)
        return fresh

    # ---------------------------------------------------------------- documents

    def documents_to_load(self, now: int, limit: int) -> list[tuple[int, str]]:
        """(listing id, metadata URI) of listings whose document is yet to be read, or
        whose store was unavailable and is due another try."""
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT listing_id, metadata_uri FROM catalog_listings WHERE doc_status = ? "
                "OR (doc_status IN (?, ?) AND doc_retry_at <= ?) ORDER BY listing_id LIMIT ?",
                (STATUS_PENDING, *RETRIED_STATUSES, now, limit),
            )
        return [(int(r[0]), str(r[1])) for r in rows]

    def record_documents(self, results: Sequence[DocumentResult]) -> None:
        """Store what loading gave, for listings that still name the same document."""
        with self.db.transaction() as tx:
            for r in results:
                found = tx.one(
                    "SELECT doc_status FROM catalog_listings WHERE listing_id = ? "
                    "AND metadata_uri = ?",
                    (r.listing_id, r.metadata_uri),
                )
                if found is None:  # rewound away meanwhile
                    continue
                self._delete_text(tx, r.listing_id)
                tx.execute("DELETE FROM catalog_tags WHERE listing_id = ?", (r.listing_id,))
                tags = " ".join(r.tags) if r.tags else None
                tx.execute(
                    "UPDATE catalog_listings SET doc_status = ?, doc_error = ?, doc_json = ?, "
                    "title = ?, description = ?, tags = ?, "
                    "doc_attempts = CASE WHEN ? THEN doc_attempts + 1 ELSE 0 END, "
                    "doc_retry_at = ? WHERE listing_id = ?",
                    (r.status, r.error, r.document_json, r.title, r.description, tags,
                     r.status in RETRIED_STATUSES, r.retry_at, r.listing_id),
                )
                for tag in r.tags:
                    tx.execute(
                        "INSERT INTO catalog_tags VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (r.listing_id, tag),
                    )
                if r.status == STATUS_OK:
                    self._insert_text(tx, r.listing_id, r.title or "", tags or "",
                                      r.description or "")

    def document_attempts(self, listing_id: int) -> int:
        with self.db.read() as tx:
            row = tx.one(
                "SELECT doc_attempts FROM catalog_listings WHERE listing_id = ?", (listing_id,)
            )
        return int(row[0]) if row else 0

    def _insert_text(self, tx: Tx, listing_id: int, title: str, tags: str, text: str) -> None:
        if self.postgres:
            tx.execute(
                f"UPDATE catalog_listings SET tsv = {_PG_TSV} WHERE listing_id = ?",  # noqa: S608
                (listing_id,),
            )
        else:
            tx.execute(
                "INSERT INTO catalog_fts (rowid, title, tags, description) VALUES (?, ?, ?, ?)",
                (listing_id, title, tags, text),
            )

    def _delete_text(self, tx: Tx, listing_id: int) -> None:
        if self.postgres:
            tx.execute("UPDATE catalog_listings SET tsv = NULL WHERE listing_id = ?", (listing_id,))
        else:
            tx.execute("DELETE FROM catalog_fts WHERE rowid = ?", (listing_id,))

    # ---------------------------------------------------------------- assets

    def unknown_assets(self) -> list[str]:
        """Payment assets of indexed listings whose symbol and decimals are not read yet."""
        with self.db.read() as tx:
            rows = tx.all("SELECT DISTINCT l.asset FROM catalog_listings l WHERE NOT EXISTS "
                          "(SELECT 1 FROM catalog_assets a WHERE a.asset = l.asset)")
        return [to_checksum_address(str(r[0])) for r in rows]

    def record_asset(self, info: AssetInfo) -> None:
        """How `info.address` is shown (a token's metadata never changes: first read wins)."""
        with self.db.transaction() as tx:
            tx.execute("INSERT INTO catalog_assets VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                       (info.address.lower(), info.symbol, info.decimals))

    def assets(self) -> list[AssetInfo]:
        """Every payment asset with a listing in the catalog and known metadata."""
        with self.db.read() as tx:
            rows = tx.all("SELECT a.asset, a.symbol, a.decimals FROM catalog_assets a WHERE "
                          "EXISTS (SELECT 1 FROM catalog_listings l WHERE l.asset = a.asset) "
                          "ORDER BY a.asset")
        return [AssetInfo(to_checksum_address(str(a)), s if isinstance(s, str) else None,
                          int(str(d))) for a, s, d in rows]

    # ---------------------------------------------------------------- queries

    def search(
        self,
        q: str | None = None,
        *,
        tag: str | None = None,
        max_price: int | None = None,
        asset: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[ListingSummary]:
        """Open listings matching every word of `q` (best first: a title match above a
        tag match above a description match), optionally with `tag`, priced in `asset`
        (an address, `ETHER` for ether) and at most `max_price` of its base units per
        period; without words, the newest first. A price cap compares amounts of one asset
        only: without `asset` it is in wei and keeps ether listings."""
        words = fts_words(q or "")
        where = ["l.open = 1"]
        params: list[object] = []
        tag_key = tag.strip().lower() if tag is not None else None
        price = price_key(max_price) if max_price is not None else None
        if asset is None and price is not None:
            asset = ETHER
        if asset is not None:
            asset = asset.lower()
        if tag_key is not None:
            where.append(
                "EXISTS (SELECT 1 FROM catalog_tags t WHERE t.listing_id = l.listing_id "
                "AND t.tag = ?)"
            )
            params.append(tag_key)
        if asset is not None:
            where.append("l.asset = ?")
            params.append(asset)
        if price is not None:
            where.append("l.price_key <= ?")
            params.append(price)
        if words and not self.postgres:
            return self._search_fts5(words, tag_key, asset, price, limit, offset)
        if not words:
            sql = (f"SELECT {_SUMMARY_COLUMNS} FROM catalog_listings l "  # noqa: S608
                   f"WHERE {' AND '.join(where)} ORDER BY l.listing_id DESC LIMIT ? OFFSET ?")
            args = [*params, limit, offset]
        else:
            sql = (f"SELECT {_SUMMARY_COLUMNS} FROM catalog_listings l, "  # noqa: S608
                   "plainto_tsquery('english', ?) query WHERE l.tsv @@ query AND "
                   f"{' AND '.join(where)} ORDER BY ts_rank(l.tsv, query) DESC, "
                   "l.listing_id DESC LIMIT ? OFFSET ?")
            args = [" ".join(words), *params, limit, offset]
        with self.db.read() as tx:
            rows = tx.all(sql, args)
        return [_summary(r) for r in rows]

    def _search_fts5(
        self, words: list[str], tag_key: str | None, asset: str | None, price: str | None,
        limit: int, offset: int,
    ) -> list[ListingSummary]:
        """Rank inside the FTS5 table, then join only the page's rows to the listings.

        bm25 costs a look-up per row it scores, and scoring each of 100,000 matches of a
        common word, then joining each to the listings and sorting wide rows, is what made
        search slow. So: the tag/price filters become a set of candidate rowids (from their
        indexes) that the FTS5 scan checks before scoring (`+rowid IN (...)`: the `+` keeps
        SQLite from handing the set to FTS5 as rowid look-ups, one full-text query per
        rowid), bm25 scores only the matches that pass, the best `fetch` rowids are kept
        (`ORDER BY r LIMIT`: a top-N sort) and only those are joined to the listings.
        Closed listings are dropped after the join: a short page from a partial fetch
        grows it (x4) until the matches are exhausted. The order (bm25, then newest) is
        total, so each fetch's page is a prefix of the full ranking."""
        match = " ".join(f'"{w}"' for w in words)
        candidates: list[str] = []
        args: list[object] = [match]
        if tag_key is not None:
            candidates.append("SELECT listing_id FROM catalog_tags WHERE tag = ?")
            args.append(tag_key)
        if asset is not None:
            if price is None:
                candidates.append("SELECT listing_id FROM catalog_listings WHERE asset = ?")
                args.append(asset)
            else:
                candidates.append("SELECT listing_id FROM catalog_listings WHERE asset = ? "
                                  "AND price_key <= ?")
                args.extend([asset, price])
        within = f"AND +rowid IN ({' INTERSECT '.join(candidates)}) " if candidates else ""
        floor = None
        if not candidates:  # (a filter narrows the scan itself: no second pass for it)
            with self.db.read() as tx:  # walks rowids newest first, no scoring: cheap
                floor = tx.one(
                    "SELECT rowid FROM catalog_fts WHERE catalog_fts MATCH ? "
                    "ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                    [match, BROAD_QUERY_WINDOW - 1],
                )
        if floor is not None:  # a broad query: rank its newest window only
            within += "AND rowid >= ? "
            args.append(int(floor[0]))
        sql = (f"SELECT {_SUMMARY_COLUMNS} FROM (SELECT rowid AS id, {_BM25} AS r "  # noqa: S608
               f"FROM catalog_fts WHERE catalog_fts MATCH ? {within}"
               "ORDER BY r, rowid DESC LIMIT ?) f "
               "JOIN catalog_listings l ON l.listing_id = f.id WHERE l.open = 1 "
               "ORDER BY f.r, l.listing_id DESC LIMIT ? OFFSET ?")
        fetch = (offset + limit) * _OVERFETCH + _FETCH_SLACK
        matches: int | None = None
        while True:
            with self.db.read() as tx:
                rows = tx.all(sql, [*args, fetch, limit, offset])
            if len(rows) == limit:
                break
            if matches is None:  # counted only for a short page (a pass, without bm25)
                with self.db.read() as tx:
                    row = tx.one(
                        "SELECT COUNT(*) FROM catalog_fts "  # noqa: S608
                        f"WHERE catalog_fts MATCH ? {within}", args,
                    )
                matches = int(row[0]) if row else 0
            if fetch >= matches:
                break
            fetch *= _FETCH_GROWTH
        return [_summary(r) for r in rows]

    def listing(self, listing_id: int) -> ListingDetail | None:
        with self.db.transaction() as tx:  # one consistent snapshot of four reads
            row = tx.one(
                f"SELECT {_SUMMARY_COLUMNS}, l.metadata_uri, l.terms_hash, l.block_number, "  # noqa: S608
                "l.doc_error, l.doc_json FROM catalog_listings l WHERE l.listing_id = ?",
                (listing_id,),
            )
            if row is None:
                return None
            versions = tx.all(
                "SELECT version, cid, block_number FROM catalog_versions WHERE listing_id = ? "
                "ORDER BY version", (listing_id,),
            )
            statuses = tx.all(
                "SELECT d.status, COUNT(*) FROM catalog_debits d WHERE d.listing_id = ? "
                "AND NOT EXISTS (SELECT 1 FROM catalog_debits n WHERE n.debit_id = d.debit_id "
                "AND (n.block_number > d.block_number OR (n.block_number = d.block_number "
                "AND n.log_index > d.log_index))) GROUP BY d.status",
                (listing_id,),
            )
        w = _SUMMARY_WIDTH
        doc = json.loads(row[w + 4]) if row[w + 4] else None
        return ListingDetail(
            summary=_summary(row[:w], full=True),
            metadata_uri=row[w], terms_hash=row[w + 1], block_number=int(row[w + 2]),
            document_error=row[w + 3], document=doc,
            versions=tuple(VersionRow(int(v), str(c), int(b)) for v, c, b in versions),
            debits={str(s): int(n) for s, n in statuses},
        )

    def count(self) -> int:
        with self.db.read() as tx:
            row = tx.one("SELECT COUNT(*) FROM catalog_listings")
        return int(row[0]) if row else 0


def _summary(row: Sequence[object], *, full: bool = False) -> ListingSummary:
    description = row[8]
    if isinstance(description, str) and not full:
        description = description[:280]
    tags = row[9]
    return ListingSummary(
        listing_id=int(str(row[0])), owner=str(row[1]), price_wei=int(str(row[2])),
        period_seconds=int(str(row[3])), auto_approve=bool(row[4]), open=bool(row[5]),
        document_status=str(row[6]),
        title=row[7] if isinstance(row[7], str) else None,
        description=description if isinstance(description, str) else None,
        tags=tuple(tags.split()) if isinstance(tags, str) else (),
        asset=to_checksum_address(str(row[10])),
        asset_symbol=row[11] if isinstance(row[11], str) else None,
        asset_decimals=None if row[12] is None else int(str(row[12])),
    )


def _apply(tx: Tx, event: MarketEvent) -> None:
    """One market event's effect on the index (events the catalog ignores do nothing)."""
    ref = event.ref
    if isinstance(event, ListingCreated):
        status = STATUS_PENDING if event.metadata_uri else STATUS_NONE
        tx.execute(
            "INSERT INTO catalog_listings (listing_id, owner, price_key, period_seconds, "
            "auto_approve, open, metadata_uri, terms_hash, block_number, doc_status, asset) "
            "VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (event.listing_id, event.owner, price_key(event.price_per_period),
             event.period_seconds, int(event.auto_approve), event.metadata_uri,
             "0x" + event.terms_hash.hex(), ref.block_number, status, event.asset.lower()),
        )
        _history(tx, event.listing_id, ref.block_number, ref.log_index,
                 price_key(event.price_per_period), event.auto_approve, True)
    elif isinstance(event, ListingUpdated):
        key = price_key(event.price_per_period)
        tx.execute(
            "UPDATE catalog_listings SET price_key = ?, auto_approve = ?, open = ? "
            "WHERE listing_id = ?",
            (key, int(event.auto_approve), int(event.open), event.listing_id),
        )
        _history(tx, event.listing_id, ref.block_number, ref.log_index, key,
                 event.auto_approve, event.open)
    elif isinstance(event, VersionPublished):
        tx.execute(
            "INSERT INTO catalog_versions VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (event.listing_id, event.version, _cid_text(event.cid), ref.block_number),
        )
    elif isinstance(event, DebitRequested | DebitConsented | DebitRejected | DebitCancelled
                    | DebitRevoked):
        tx.execute(
            "INSERT INTO catalog_debits VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (event.debit_id, event.listing_id, _DEBIT_STATUS[type(event)],
             ref.block_number, ref.log_index),
        )


def _history(
    tx: Tx, listing_id: int, block: int, log_index: int, key: str, auto: bool, is_open: bool
) -> None:
    tx.execute(
        "INSERT INTO catalog_listing_history VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (listing_id, block, log_index, key, int(auto), int(is_open)),
    )


def _cid_text(cid: bytes) -> str:
    """The version's CID as text when it parses (it is the owner's bytes: may be junk)."""
    try:
        return Cid.parse(cid).text
    except InvalidCid:
        return "0x" + cid.hex()
