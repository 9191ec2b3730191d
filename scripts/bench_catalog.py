"""Benchmark the catalog at 100,000 listings: indexing rate, search p95, indexer memory.

    .venv/bin/python -m scripts.bench_catalog [--listings 100000] [--runs 200]
                                              [--state sqlite|PATH|URL] [--search-only]

How the listings are made: 100,000 real listing documents (canonical JSON, validated)
are put in an in-memory content store, and one synthetic `ListingCreated` event per listing goes
through `CatalogStore.apply_logs`, the path the chain watcher feeds, in ranges of 100
blocks x 100 logs; then `CatalogIndexer.refresh_documents` reads every document through
`documents.load_listing_document` (read, CID check, JSON, schema). Creating 100,000
listings on eth-tester costs ~20 ms a transaction (over half an hour) and measures py-evm,
not the catalog; the chain-reading half of the indexer is the gateway's watcher, measured
in the gateway benchmarks. The corpus (see `Corpus`) comes from a seeded
`random.Random`: a 4,000-word Zipf vocabulary, so that, as in a real catalog, a few words
are in nearly every listing and most are in few; the queries span those selectivities.

Reported: listings indexed per second (events + documents, untraced), search p50/p95 over
`--runs` runs of each query (20 results; with how many listings match it), and the
indexer's tracemalloc peak while indexing the first and the last 10,000 listings (flat =
the same). Never used by tests.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
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

#: Real words at the head of the vocabulary, most frequent first, so that the broad
#: queries are readable ("data" is in nearly every listing, as in a real catalog).
HEAD_WORDS = (  # noqa: SIM905 - a paragraph reads better than quoted words
    "data hourly daily city air quality weather sensor station traffic energy water "
    "readings monthly annual urban rural river forest coastal soil noise rainfall "
    "temperature humidity pollution ozone nitrogen particulate emissions solar wind grid "
    "demand consumption transport bicycle pedestrian parking housing prices rent census "
    "health hospital clinic vaccine mortality birth school education library museum "
    "tourism hotel retail sales inventory shipping port freight rail airport flights "
    "delays crops harvest yield livestock fishing catch satellite imagery elevation land "
    "cover biodiversity species birds insects pollen allergy earthquake flood drought fire"
).split()
VOCABULARY_SIZE = 4000
TAG_COUNT = 200
ZIPF_EXPONENT = 1.0
SEED = 11
_SYLLABLES = (  # noqa: SIM905 - as above
    "ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo fu ga ge gi go gu ha he hi "
    "ho hu ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu pa pe pi po pu ra "
    "re ri ro ru sa se si so su ta te ti to tu va ve vi vo vu za ze zi zo zu"
).split()
_CODAS = ("", "", "n", "r", "s", "l", "m", "t", "x", "nd", "rk", "st")


def vocabulary(rng: random.Random) -> list[str]:
    """`HEAD_WORDS`, then made-up words of 2-4 syllables (letters only, so one word is one
    FTS token and the porter stemmer leaves distinct words distinct), most frequent
    first."""
    words = list(HEAD_WORDS)
    seen = set(words)
    while len(words) < VOCABULARY_SIZE:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
        word += rng.choice(_CODAS)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def zipf_weights(n: int) -> list[float]:
    """Cumulative Zipf weights: the word of rank r is drawn in proportion to 1/r^s."""
    total = 0.0
    cumulative = []
    for rank in range(1, n + 1):
        total += 1.0 / rank**ZIPF_EXPONENT
        cumulative.append(total)
    return cumulative


class Corpus:
    """Listing documents drawn from a seeded `random.Random`: this is benchmark data, not
    a secret (no key, nonce or share comes from it), and a fixed seed makes every run index
    the same 100,000 documents. Titles 3-8 words, descriptions 30-120 words, both drawn
    from a 4,000-word Zipf vocabulary; 1-5 tags of 200, also Zipf (a few tags are on many
    listings, most on few); prices 1e12..1e16 wei, uniform."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)  # benchmark data, reproducible; never crypto
        self.words = vocabulary(self.rng)
        self.cumulative = zipf_weights(len(self.words))
        self.tags = self.words[:TAG_COUNT]
        self.tag_cumulative = zipf_weights(TAG_COUNT)

    def draw(self, k: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cumulative, k=k)

    def document(self, i: int) -> ListingDocument:
        rng = self.rng
        title = self.draw(rng.randint(3, 8))
        description = self.draw(rng.randint(30, 120))
        tags = set(rng.choices(self.tags, cum_weights=self.tag_cumulative,
                               k=rng.randint(1, 5)))
        return ListingDocument(
            title=" ".join(title).capitalize() + f" #{i}",
            description=" ".join(description),
            tags=sorted(tags), license="CC-BY-4.0", cadence="daily",
        )

    def price(self) -> int:
        return 10**12 * self.rng.randint(1, 10_000)


OWNER = "0x" + "11" * 20
PER_BLOCK = 100
CHUNK = 10_000
_WORD = re.compile(r"\w+")


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


def event(i: int, uri: str, price: int) -> ListingCreated:
    block = 1 + (i - 1) // PER_BLOCK
    ref = LogRef(block, f"0x{block:064x}", f"0x{i:064x}", (i - 1) % PER_BLOCK)
    return ListingCreated(ref, ListingId(i), OWNER, Wei(price), 3600, False,  # type: ignore[arg-type]
                          bytes(32), uri)


def index_range(store: CatalogStore, indexer: DocumentReader, first: int, last: int,
                uris: dict[int, tuple[str, int]]) -> None:
    """Listings first..last: their events by block ranges of 100 blocks, then documents."""
    step = 100 * PER_BLOCK
    for start in range(first, last + 1, step):
        ids = range(start, min(start + step, last + 1))
        events = [event(i, *uris[i]) for i in ids]
        end_block = events[-1].ref.block_number
        store.apply_logs(1, [(log_key(e), [e]) for e in events],
                         Cursor(end_block, f"0x{end_block:064x}"))
        while indexer.refresh(limit=1000):
            pass


@dataclass
class Query:
    """One benchmarked search, and how many listings match it (counted while the corpus is
    generated, so the table says how selective each query is)."""

    name: str
    q: str | None = None
    tag: str | None = None
    max_price: int | None = None
    matches: int = 0

    def match(self, doc: ListingDocument, price: int) -> bool:
        words = set(_WORD.findall(f"{doc.title} {doc.description} {' '.join(doc.tags)}".lower()))
        return (all(w in words for w in _WORD.findall((self.q or "").lower()))
                and (self.tag is None or self.tag in doc.tags)
                and (self.max_price is None or price <= self.max_price))


def queries(corpus: Corpus) -> list[Query]:
    """Queries of every selectivity, picked by vocabulary rank (not by speed): the most
    frequent word, frequent, mid and rare words, two mid words, a pair of frequent words,
    a tag filter (a common and a rare tag, and one no listing has), a price filter."""
    w = corpus.words
    t = corpus.tags
    return [
        Query(f"most frequent word `{w[0]}` (rank 1)", q=w[0]),
        Query(f"frequent word `{w[4]}` (rank 5)", q=w[4]),
        Query(f"mid word `{w[149]}` (rank 150)", q=w[149]),
        Query(f"rare word `{w[2999]}` (rank 3000)", q=w[2999]),
        Query(f"two mid words `{w[39]} {w[119]}` (ranks 40, 120)", q=f"{w[39]} {w[119]}"),
        Query(f"frequent pair `{w[4]} {w[5]}` (ranks 5, 6)", q=f"{w[4]} {w[5]}"),
        Query(f"`{w[0]}` + common tag `{t[2]}` (tag rank 3)", q=w[0], tag=t[2]),
        Query(f"`{w[0]}` + rare tag `{t[179]}` (tag rank 180)", q=w[0], tag=t[179]),
        Query(f"`{w[0]}` + a tag no listing has", q=w[0], tag="no-such-tag"),
        Query(f"`{w[149]}` + common tag `{t[2]}`", q=w[149], tag=t[2]),
        Query(f"`{w[0]}` + max_price 0.0001 eth (1%)", q=w[0], max_price=10**14),
        Query(f"`{w[4]}` + max_price 0.001 eth (10%)", q=w[4], max_price=10**15),
        Query(f"no words (newest first), tag `{t[2]}`", tag=t[2]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--state", default="sqlite",
                        help="sqlite (a temporary file), a file path or a postgresql:// URL")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--search-only", action="store_true",
                        help="the --state catalog already holds this corpus: only search")
    args = parser.parse_args()
    n = args.listings
    with tempfile.TemporaryDirectory() as tmp:
        content = MemoryStore()
        corpus = Corpus()
        benched = queries(corpus)
        t0 = time.perf_counter()
        uris = {}
        for i in range(1, n + 1):
            doc = corpus.document(i)
            price = corpus.price()
            for query in benched:
                query.matches += query.match(doc, price)
            uris[i] = (document_uri(content.put(encode_document(doc))), price)
        print(f"generated and stored {n} documents in {time.perf_counter() - t0:.1f} s")
        url = str(Path(tmp) / "catalog.db") if args.state == "sqlite" else args.state
        store = CatalogStore(open_database(url))
        if not args.search_only:
            index(store, content, uris, n)
        assert store.count() == n
        for query in benched:
            times = []
            hits: list[int] = []
            for _ in range(args.runs):
                t = time.perf_counter()
                found = store.search(query.q, tag=query.tag, max_price=query.max_price,
                                     limit=20)
                times.append(time.perf_counter() - t)
                hits = [s.listing_id for s in found]
            p95 = statistics.quantiles(times, n=20)[18] * 1000
            print(f"| {query.name} | {query.matches:,} | {len(hits)} | "
                  f"{statistics.median(times) * 1000:.1f} ms | {p95:.1f} ms |")
        store.close()


def index(store: CatalogStore, content: MemoryStore, uris: dict[int, tuple[str, int]],
          n: int) -> None:
    """Index the corpus; print the rate and the indexer's memory peaks."""
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
    rate = (n - 2 * chunk) / untraced
    print(f"indexing: {rate:,.0f} listings/s (events + documents, "
          f"{n - 2 * chunk} listings in {untraced:.1f} s)")
    print(f"indexer tracemalloc peak: first {chunk} listings "
          f"{first_peak / 2**20:.1f} MiB, last {chunk} {last_peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
