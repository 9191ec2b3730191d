"""Follows the market into the catalog: the generic chain watcher records listing, version
and debit events in `CatalogStore`, then each listing's document is read from the content
store and verified (`documents.load_listing_document`).

Documents are read after their logs are recorded, outside the chain's transactions: a
slow or dead store never holds the cursor back. A document that cannot be used is indexed
with its reason (`DocumentError.reason`) and shown as such; one whose store was
unavailable is tried again later, with a growing delay. Nothing a document holds can stop
the indexer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from marketplace.catalog.store import (
    STATUS_OK,
    CatalogStore,
    DocumentResult,
)
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
from marketplace.chain.market import MarketClient
from marketplace.chain.watcher import ChainWatcher
from marketplace.documents import DocumentError, ListingDocument, encode_document

log = logging.getLogger(__name__)

#: Reads and verifies the listing document a metadata URI names.
DocumentLoader = Callable[[str], ListingDocument]
#: Reads how a payment asset is shown (a token's symbol and decimals).
AssetReader = Callable[[str], AssetInfo]

_INDEXED = (
    ListingCreated, ListingUpdated, VersionPublished, DebitRequested, DebitConsented,
    DebitRejected, DebitCancelled, DebitRevoked,
)
#: Documents read per batch (one transaction records a batch's results).
DOCUMENT_BATCH = 256


def catalog_rows(event: MarketEvent) -> Sequence[MarketEvent]:
    """The catalog records the events it indexes as they are."""
    return (event,) if isinstance(event, _INDEXED) else ()


class DocumentReader:
    """Reads the documents the store says are due (pending, or unavailable and due a
    retry) and records what each gave."""

    def __init__(
        self,
        store: CatalogStore,
        load_document: DocumentLoader,
        *,
        now: Callable[[], float] = time.time,
        retry_delay: float = 30.0,
        max_retry_delay: float = 3600.0,
    ) -> None:
        self.store = store
        self.load_document = load_document
        self.now = now
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay

    def refresh(self, limit: int = DOCUMENT_BATCH) -> int:
        """Read one batch of documents that are pending or due a retry; returns how many."""
        due = self.store.documents_to_load(int(self.now()), limit)
        if due:
            self.store.record_documents([self.read(i, uri) for i, uri in due])
        return len(due)

    def read(self, listing_id: int, uri: str) -> DocumentResult:
        """Load, verify and extract one listing's document, or say why it cannot be used."""
        try:
            doc = self.load_document(uri)
        except DocumentError as e:
            return self._failed(listing_id, uri, e.reason, str(e))
        except Exception as e:  # a loader bug or an unforeseen store error: never fatal
            log.exception("reading the document of listing %d failed", listing_id)
            return self._failed(listing_id, uri, "error", type(e).__name__)
        return DocumentResult(
            listing_id, uri, STATUS_OK, title=doc.title, description=doc.description,
            tags=tuple(doc.tags), document_json=encode_document(doc).decode(),
        )

    def _failed(self, listing_id: int, uri: str, reason: str, message: str) -> DocumentResult:
        attempts = self.store.document_attempts(listing_id)
        delay = min(self.max_retry_delay, self.retry_delay * 2 ** min(attempts, 32))
        log.info("listing %d: document %s (%s)", listing_id, reason, message)
        return DocumentResult(
            listing_id, uri, reason, error=message[:1000], retry_at=int(self.now() + delay)
        )


class CatalogIndexer:
    """The catalog's chain watcher plus its document reader; `poll_once` is thread-safe."""

    def __init__(
        self,
        market: MarketClient,
        store: CatalogStore,
        load_document: DocumentLoader,
        *,
        confirmations: int,
        start_block: int = 0,
        max_block_range: int = 500,
        now: Callable[[], float] = time.time,
        retry_delay: float = 30.0,
        max_retry_delay: float = 3600.0,
        read_asset: AssetReader | None = None,
    ) -> None:
        self.store = store
        if read_asset is None:
            from marketplace.chain.tokens import asset_info  # noqa: PLC0415

            def read_asset(asset: str) -> AssetInfo:
                return asset_info(market.w3, asset)
        self.read_asset = read_asset
        self.watcher = ChainWatcher(
            market, store, catalog_rows, confirmations=confirmations,
            start_block=start_block, max_block_range=max_block_range,
        )
        self.documents = DocumentReader(
            store, load_document, now=now, retry_delay=retry_delay,
            max_retry_delay=max_retry_delay,
        )

    def poll_once(self) -> int:
        """Index the next batch of confirmed logs, then read the documents that are due;
        returns the number of new logs."""
        new = self.watcher.poll_once()
        self.refresh_assets()
        self.refresh_documents()
        return new

    def catch_up(self) -> int:
        """Index up to the confirmed head and read every document that is due."""
        new = self.watcher.catch_up()
        self.refresh_assets()
        while self.refresh_documents():
            pass
        return new

    def refresh_documents(self, limit: int = DOCUMENT_BATCH) -> int:
        """Read one batch of documents that are pending or due a retry; returns how many."""
        return self.documents.refresh(limit)

    def refresh_assets(self) -> int:
        """Read the symbol and decimals of payment assets first seen in new listings; one
        that cannot be read now (node down) is tried again at the next poll, its listings
        shown in base units meanwhile. Returns how many were recorded."""
        recorded = 0
        for asset in self.store.unknown_assets():
            try:
                info = self.read_asset(asset)
            except Exception as e:  # never fatal: the listings are indexed either way
                log.info("payment asset %s: not read yet (%s)", asset, type(e).__name__)
                continue
            self.store.record_asset(info)
            recorded += 1
        return recorded

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Poll until `stop` is set; a failing poll (chain or database down) is logged
        and retried at the next interval."""
        while not stop.is_set():
            try:
                busy = self.watcher.catch_up(max_rounds=20) > 0
                self.refresh_assets()
                busy = self.refresh_documents() > 0 or busy
            except Exception:
                log.exception("catalog poll failed; retrying in %.1f s", interval)
                busy = False
            if not busy:
                stop.wait(interval)
