"""Benchmark the catalog at 100,000 listings: indexing rate, search p95, indexer memory.

    .venv/bin/python -m scripts.bench_catalog [--listings 100000] [--state sqlite|URL]
                                              [--runs 200]

How the listings are made: 100,000 real listing documents (canonical JSON, validated)
are put in an in-memory content store, and one synthetic `ListingCreated` event per listing goes
through `CatalogStore.apply_logs`, the path the chain watcher feeds, in ranges of 100
blocks x 100 logs; then `CatalogIndexer.refresh_documents` reads every document through
`documents.load_listing_document` (read, CID check, JSON, schema). Creating 100,000
listings on eth-tester costs ~20 ms a transaction (over half an hour) and measures py-evm,
not the catalog; the chain-reading half of the indexer is the gateway's watcher, measured
in the gateway benchmarks. Words are picked deterministically from SHA-256 of the
listing number (reproducible, no RNG).

Reported: listings indexed per second (events + documents, untraced), search p95 over
`--runs` runs of each query, and the indexer's tracemalloc peak while indexing the first
and the last 10,000 listings (flat = the same). Never used by tests.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from marketplace.catalog.indexer import DocumentReader
from marketplace.catalog.store import CatalogStore
from marketplace.chain.events import ListingCreated, LogRef
from marketplace.chain.types import ListingId, Wei
from marketplace.chain.watcher import Cursor, log_key
from marketplace.db import open_database
from marketplace.documents import (
    ListingDocument,
    document_uri,
    encode_document,
    load_listing_document,
)
from storage.cid import Cid, Codec
from storage.errors import ContentNotFound

WORDS = (  # noqa: SIM905 - a paragraph reads better than 84 quoted words
    "air quality weather traffic energy water soil noise rainfall temperature "
    "humidity sensor station city river forest coastal urban rural hourly daily "
    "monthly annual pollution ozone nitrogen particulate emissions solar wind grid "
    "demand consumption transport bicycle pedestrian parking housing prices rent "
    "census health hospital clinic vaccine mortality birth school education library "
    "museum tourism hotel retail sales inventory shipping port freight rail airport "
    "flights delays crops harvest yield livestock fishing catch satellite imagery "
    "elevation land cover biodiversity species birds insects pollen allergy "
    "earthquake flood drought fire"
).split()
TAGS = WORDS[:40]
OWNER = "0x" + "11" * 20
PER_BLOCK = 100
CHUNK = 10_000


class MemoryStore:
    """Documents in a dict: the benchmark measures the catalog, not a disk store (a
    LocalStore put costs ~3.5 ms a file on this machine, a read ~0.8 ms)."""

    def __init__(self) -> None:
        self.blocks: dict[Cid, bytes] = {}

    def put(self, data: bytes) -> Cid:
        cid = Cid.of_block(Codec.RAW, data)
        self.blocks[cid] = data
        return cid

    def stream(self, cid: Cid) -> Iterator[bytes]:
        if cid not in self.blocks:
            raise ContentNotFound(cid.text, "memory")
        yield self.blocks[cid]


def _pick(seed: bytes, n: int, choices: list[str]) -> list[str]:
    digest = b""
    counter = 0
    while len(digest) < 2 * n:
        digest += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return [choices[int.from_bytes(digest[2 * i:2 * i + 2], "big") % len(choices)]
            for i in range(n)]


def make_document(i: int) -> ListingDocument:
    seed = i.to_bytes(8, "big")
    words = _pick(seed, 64, WORDS)
    return ListingDocument(
        title=" ".join(words[:5]).capitalize() + f" #{i}",
        description=" ".join(words[5:60]),
        tags=sorted(set(_pick(seed + b"t", 3, TAGS))),
        license="CC-BY-4.0", cadence="daily",
    )


def event(i: int, uri: str) -> ListingCreated:
    block = 1 + (i - 1) // PER_BLOCK
    ref = LogRef(block, f"0x{block:064x}", f"0x{i:064x}", (i - 1) % PER_BLOCK)
    price = Wei(10**12 * (1 + i % 1000))
    return ListingCreated(ref, ListingId(i), OWNER, price, 3600, False,  # type: ignore[arg-type]
                          bytes(32), uri)


def index_range(store: CatalogStore, indexer: DocumentReader, first: int, last: int,
                uris: dict[int, str]) -> None:
    """Listings first..last: their events by block ranges of 100 blocks, then documents."""
    step = 100 * PER_BLOCK
    for start in range(first, last + 1, step):
        ids = range(start, min(start + step, last + 1))
        events = [event(i, uris[i]) for i in ids]
        end_block = events[-1].ref.block_number
        store.apply_logs(1, [(log_key(e), [e]) for e in events],
                         Cursor(end_block, f"0x{end_block:064x}"))
        while indexer.refresh(limit=1000):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--state", default="sqlite")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    n = args.listings
    with tempfile.TemporaryDirectory() as tmp:
        content = MemoryStore()
        t0 = time.perf_counter()
        uris = {}
        for i in range(1, n + 1):
            cid = content.put(encode_document(make_document(i)))
            uris[i] = document_uri(cid)
        print(f"generated and stored {n} documents in {time.perf_counter() - t0:.1f} s")
        url = str(Path(tmp) / "catalog.db") if args.state == "sqlite" else args.state
        store = CatalogStore(open_database(url))
        indexer = DocumentReader(store, lambda uri: load_listing_document(content, uri))  # type: ignore[arg-type]
        chunk = min(CHUNK, n // 10)
        tracemalloc.start()
        index_range(store, indexer, 1, chunk, uris)
        first_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        t0 = time.perf_counter()
        index_range(store, indexer, chunk + 1, n - chunk, uris)
        untraced = time.perf_counter() - t0
        tracemalloc.start()
        index_range(store, indexer, n - chunk + 1, n, uris)
        last_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert store.count() == n
        rate = (n - 2 * chunk) / untraced
        print(f"indexing: {rate:,.0f} listings/s (events + documents, "
              f"{n - 2 * chunk} listings in {untraced:.1f} s)")
        print(f"indexer tracemalloc peak: first {chunk} listings "
              f"{first_peak / 2**20:.1f} MiB, last {chunk} {last_peak / 2**20:.1f} MiB")
        queries: list[tuple[str, dict[str, object]]] = [
            ("q=air", {"q": "air"}),
            ("q=air quality", {"q": "air quality"}),
            ("q=solar grid demand", {"q": "solar grid demand"}),
            ("q=earthquake, tag=flood", {"q": "earthquake", "tag": "flood"}),
            ("q=weather, max_price=0.0001 eth", {"q": "weather", "max_price": 10**14}),
            ("no q (newest), tag=city", {"q": None, "tag": "city"}),
        ]
        for name, params in queries:
            times = []
            hits = 0
            for _ in range(args.runs):
                t = time.perf_counter()
                hits = len(store.search(params.get("q"), tag=params.get("tag"),  # type: ignore[arg-type]
                                        max_price=params.get("max_price"), limit=20))  # type: ignore[arg-type]
                times.append(time.perf_counter() - t)
            p95 = statistics.quantiles(times, n=20)[18] * 1000
            print(f"search {name}: p50 {statistics.median(times) * 1000:.1f} ms, "
                  f"p95 {p95:.1f} ms ({hits} shown)")
        store.close()


if __name__ == "__main__":
    main()
