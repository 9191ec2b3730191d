"""The web app on a LocalNetwork (embedded chain, in-process gateways, LocalStore) with a
real catalog indexed from it (SQLite, its API in-process): one network per module, a
market with listings (one whose texts are hostile HTML), a sealed and a plain request, an
active debit with a published version."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from marketplace.app.buyer import BuyerApp, RequestedDebit
from marketplace.app.catalog import CatalogClient
from marketplace.app.owner import CreatedListing, OwnerApp
from marketplace.audit.release_log import HttpReleaseLog
from marketplace.catalog.api import create_app as create_catalog_app
from marketplace.catalog.indexer import CatalogIndexer
from marketplace.catalog.store import CatalogStore
from marketplace.db import open_database
from marketplace.documents import (
    FieldSpec,
    ListingDocument,
    PurposeDocument,
    load_listing_document,
)
from marketplace.localnet import LocalNetwork
from marketplace.web.app import create_web_app
from marketplace.web.config import WebConfig
from marketplace.web.services import Gateway, WebServices

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

PRICE = 10**15
PERIOD = 86_400
HOSTILE = '<script>alert("x")</script>'


@dataclass
class WebWorld:
    net: LocalNetwork
    owner: OwnerApp
    buyer: BuyerApp
    air: CreatedListing
    hostile: CreatedListing
    sealed: RequestedDebit
    plain: RequestedDebit
    active: RequestedDebit
    catalog: CatalogStore
    services: WebServices
    config: WebConfig

    def client(self, services: WebServices | None = None) -> TestClient:
        return TestClient(create_web_app(self.config, services=services or self.services),
                          raise_server_exceptions=False)


def web_services(net: LocalNetwork, catalog: CatalogClient) -> WebServices:
    return WebServices(
        market=net.market, store=net.store, catalog=catalog,
        gateways=tuple(Gateway(i, f"http://node-{i}") for i in sorted(net.clients)),
        audit_logs=lambda: {i: HttpReleaseLog(i, c) for i, c in net.clients.items()},
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebWorld]:
    folder: Path = tmp_path_factory.mktemp("web")
    net = LocalNetwork.start(folder / "store")
    owner = OwnerApp(net.market, net.store, net.account())
    buyer = BuyerApp(net.market, net.store, net.account(), net.key_client)
    air = owner.create_listing(PRICE, PERIOD, False, ListingDocument(
        title="Air quality in Lyon", description="Hourly PM2.5 readings from 40 sensors",
        tags=["air", "city"], license="CC-BY-4.0", cadence="hourly",
        terms="No resale.", sample="time,pm25\n2026-01-01T00:00Z,12.5",
        fields=[FieldSpec(name="pm25", type="number", unit="µg/m³")],
    ))
    hostile = owner.create_listing(PRICE, PERIOD, True, ListingDocument(
        title=f"Evil {HOSTILE}", description=f"read me {HOSTILE}", tags=["evil"],
        terms=HOSTILE, sample=HOSTILE,
    ))
    sealed = buyer.request(air.listing_id, 1, PurposeDocument(
        requester="A lab", purpose="asthma study"))
    plain = buyer.request(air.listing_id, 2, PurposeDocument(
        requester=f"Lab {HOSTILE}", purpose=f"study {HOSTILE}"), seal_purpose=False)
    active = buyer.request(air.listing_id, 1, None)
    owner.consent(active.debit.debit_id)
    data = folder / "v1.csv"
    data.write_bytes(b"time,pm25\n" * 100)
    owner.publish(air.listing_id, data)
    net.sync()
    catalog = CatalogStore(open_database(str(folder / "catalog.db")))
    CatalogIndexer(net.market, catalog, lambda uri: load_listing_document(net.store, uri),
                   confirmations=0).catch_up()
    catalog_http = TestClient(create_catalog_app(catalog), base_url="http://catalog")
    services = web_services(net, CatalogClient("http://catalog", client=catalog_http))
    config = WebConfig(rpc_url="http://127.0.0.1:9", market=net.market.address,
                       store=str(folder / "store"), catalog_url="http://catalog")
    yield WebWorld(net, owner, buyer, air, hostile, sealed, plain, active, catalog, services,
                   config)
    catalog_http.close()
    catalog.close()
    net.close()
