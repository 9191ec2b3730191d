"""The catalog on both backends (SQLite FTS5 files, databases on a real Postgres), over an
embedded chain and an in-memory content store whose failures a test controls."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from marketplace.catalog.indexer import CatalogIndexer
from marketplace.catalog.store import CatalogStore
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import Committee
from marketplace.db import PostgresDatabase, SqliteDatabase, open_database
from marketplace.documents import ListingDocument, document_uri, load_listing_document
from marketplace.keyrelease.dealer import deal
from scripts.servers.postgres import create_database, start_postgres
from storage.cid import Cid, Codec
from storage.errors import ContentNotFound, StoreUnavailable
from storage.stores.base import ContentStore

ETHER = 10**18
PRICE = 10**15
PERIOD = 3600
BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.integration)]


class Backend:
    """Catalog databases for one test; `open(name)` again is a restart on the same data."""

    def __init__(self, kind: str, tmp_path: Path, admin_url: str | None) -> None:
        self.kind = kind
        self._tmp_path = tmp_path
        self._admin_url = admin_url
        self._urls: dict[str, str] = {}
        self._opened: list[SqliteDatabase | PostgresDatabase] = []

    def url(self, name: str) -> str:
        if name not in self._urls:
            if self._admin_url is None:
                self._urls[name] = str(self._tmp_path / f"{name}.db")
            else:
                db_name = f"cat_{name}_{uuid.uuid4().hex[:12]}"
                self._urls[name] = create_database(self._admin_url, db_name)
        return self._urls[name]

    def open(self, name: str = "catalog") -> CatalogStore:
        db = open_database(self.url(name))
        self._opened.append(db)
        return CatalogStore(db)

    def close(self) -> None:
        for db in self._opened:
            db.close()
        if self._admin_url is not None and self._urls:
            import psycopg  # noqa: PLC0415

            with psycopg.connect(self._admin_url, autocommit=True) as conn:
                for url in self._urls.values():
                    conn.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture(scope="session")
def catalog_postgres_url() -> Iterator[str]:
    with start_postgres() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    admin = request.getfixturevalue("catalog_postgres_url") if request.param == "postgres" else None
    made = Backend(request.param, tmp_path, admin)
    yield made
    made.close()


class MemoryStore:
    """A content store in a dict: `blocks` may hold bytes that do not match their CID (a
    lying store), and `down` makes every read fail as an unreachable daemon does."""

    def __init__(self) -> None:
        self.blocks: dict[Cid, bytes] = {}
        self.down = False

    def put(self, source: io.BufferedIOBase | io.BytesIO) -> Cid:  # type: ignore[override]
        data = source.read()
        cid = Cid.of_block(Codec.RAW, data)
        self.blocks[cid] = data
        return cid

    def stream(self, cid: Cid) -> Iterator[bytes]:
        if self.down:
            raise StoreUnavailable("http://127.0.0.1:5001", "connection refused")
        if cid not in self.blocks:
            raise ContentNotFound(cid.text, "memory")
        yield self.blocks[cid]

    def put_bytes(self, data: bytes) -> Cid:
        return self.put(io.BytesIO(data))

    def has(self, cid: Cid) -> bool:
        return cid in self.blocks


def raw_uri(data: bytes) -> str:
    """The ipfs:// URI a document with these bytes has."""
    return document_uri(Cid.of_block(Codec.RAW, data))


@dataclass
class Market:
    dev: DevChain
    market: MarketClient
    owner: LocalAccount
    buyer: LocalAccount
    store: MemoryStore
    clock: list[float] = field(default_factory=lambda: [1_000_000.0])

    def listing(self, metadata_uri: str = "", *, price: int = PRICE, auto: bool = False) -> int:
        return self.market.create_listing(
            self.owner, price_per_period=price, period_seconds=PERIOD, auto_approve=auto,
            metadata_uri=metadata_uri,
        ).value

    def listing_with(self, doc: ListingDocument, *, price: int = PRICE) -> int:
        from marketplace.documents import put_document  # noqa: PLC0415

        cid = put_document(self.store, doc)  # type: ignore[arg-type]
        return self.listing(document_uri(cid), price=price)

    def listing_with_bytes(self, data: bytes) -> int:
        """A listing whose document is these bytes, stored under their true CID."""
        return self.listing(document_uri(self.store.put_bytes(data)))

    def debit(self, listing_id: int) -> int:
        return self.market.request_debit(
            self.buyer, listing_id, periods=1, buyer_key=b"\x09" * 32
        ).value

    def indexer(self, store: CatalogStore, **kwargs: object) -> CatalogIndexer:
        content: ContentStore = self.store  # type: ignore[assignment]
        return CatalogIndexer(
            self.market, store, lambda uri: load_listing_document(content, uri),
            confirmations=0, now=lambda: self.clock[0], **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def chain_market() -> Market:
    w3 = connect()
    dev = DevChain(w3)
    deployer, owner, buyer = (Account.create() for _ in range(3))
    nodes = [Account.create() for _ in range(3)]
    for acct in (deployer, owner, buyer, *nodes):
        dev.fund(acct.address, 10 * ETHER)
    dealt = deal(3, 2)
    committee = Committee(
        committee_key=dealt.keys.committee_key.to_bytes(), threshold=2,
        nodes=tuple(a.address for a in nodes),
        share_keys=tuple(k.point.to_bytes() for k in dealt.keys.share_keys),
    )
    market = MarketClient.deploy_dealt(w3, deployer, committee, nodes).value
    return Market(dev, market, owner, buyer, MemoryStore())


NewDoc = Callable[..., ListingDocument]


def doc(title: str, description: str = "", tags: tuple[str, ...] = ()) -> ListingDocument:
    return ListingDocument(title=title, description=description, tags=list(tags))
