"""No input gives a 500: malformed ids, addresses and queries are 4xx pages with a message;
a chain, store or catalog that does not answer is a readable 503 (the catalog page still
renders); a catalog answering garbage is a message, never a traceback."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from web3 import HTTPProvider, Web3

from marketplace.app.catalog import CatalogClient
from marketplace.chain.market import MarketClient
from marketplace.web.app import create_web_app
from marketplace.web.config import WebConfig
from storage.cid import Cid
from storage.errors import StoreUnavailable
from storage.stores.base import ContentStore
from tests.web.conftest import WebWorld

DEAD_URL = "http://127.0.0.1:9"


def assert_page_message(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    assert f'data-code="{code}"' in response.text
    assert 'class="message error"' in response.text and "Traceback" not in response.text


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/listings/abc", 400, "invalid_request"),
    ("/listings/0", 400, "invalid_request"),
    ("/listings/-3", 400, "invalid_request"),
    (f"/listings/{2**64}", 400, "invalid_request"),
    ("/listings/999", 404, "unknown_listing"),
    ("/owner/0x1234", 400, "bad_address"),
    ("/owner/0x" + "g" * 40, 400, "bad_address"),
    ("/owner/" + "x" * 500, 400, "invalid_request"),
    ("/buyer/not-an-address", 400, "bad_address"),
    ("/buyer?address=0xzz", 400, "bad_address"),
    ("/owner?address=%00", 400, "bad_address"),
    ("/?max_price=abc", 400, "bad_query"),
    ("/?max_price=-1", 400, "bad_query"),
    ("/?max_price=0.0000000000000000001eth", 400, "bad_query"),
    ("/?offset=-1", 400, "invalid_request"),
    ("/?offset=x", 400, "invalid_request"),
    ("/?q=" + "a" * 201, 400, "invalid_request"),
    ("/?tag=%01", 400, "invalid_request"),
    ("/no/such/page", 404, "not_found"),
])
def test_malformed_page_input_is_a_message(
    world: WebWorld, path: str, status: int, code: str
) -> None:
    assert_page_message(world.client().get(path), status, code)


def dead_market(world: WebWorld) -> MarketClient:
    """The world's market, reached through a chain node that does not answer."""
    w3 = Web3(HTTPProvider(DEAD_URL, request_kwargs={"timeout": 2}))
    return MarketClient(w3, world.net.market.address)


@pytest.mark.parametrize("path", [
    "/listings/1", "/owner/0x" + "11" * 20, "/buyer/0x" + "11" * 20, "/audit",
])
def test_chain_down_is_a_503_page(world: WebWorld, path: str) -> None:
    services = dataclasses.replace(world.services, market=dead_market(world))
    assert_page_message(world.client(services).get(path), 503, "chain_unavailable")


def test_chain_down_is_a_503_in_the_api(world: WebWorld) -> None:
    client = world.client(dataclasses.replace(world.services, market=dead_market(world)))
    for path in ("/api/config", "/api/listings/1/versions/1"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.json()["code"] in ("chain_unavailable", "unavailable")


def test_catalog_search_survives_a_down_chain(world: WebWorld) -> None:
    """Search needs only the catalog: prices come with its answer (in each listing's
    asset), so a chain that does not answer changes nothing on the results page."""
    services = dataclasses.replace(world.services, market=dead_market(world))
    response = world.client(services).get("/", params={"q": "lyon"})
    assert response.status_code == 200
    assert f'data-listing-id="{world.air.listing_id}"' in response.text
    assert " ETH" in response.text and "price on the listing page" not in response.text


class DownStore:
    """A content store whose daemon does not answer."""

    def stream(self, cid: Cid) -> Iterator[bytes]:
        raise StoreUnavailable(DEAD_URL, "connection refused")

    def put(self, source: object) -> Cid:
        raise StoreUnavailable(DEAD_URL, "connection refused")

    def has(self, cid: Cid) -> bool:
        raise StoreUnavailable(DEAD_URL, "connection refused")


def test_store_down_is_a_503(world: WebWorld) -> None:
    store: ContentStore = DownStore()  # type: ignore[assignment]
    client = world.client(dataclasses.replace(world.services, store=store))
    content = client.get(f"/content/{world.sealed.purpose_cid.text}")  # type: ignore[union-attr]
    assert content.status_code == 503 and content.json()["code"] == "store_unavailable"
    posted = client.post("/api/documents",
                         content=b'{"schema":"datadebit/purpose/v1","requester":"a","purpose":"b"}')
    assert posted.status_code == 503 and posted.json()["code"] == "store_unavailable"
    assert DEAD_URL not in posted.text  # no endpoint in what the user sees
    page = client.get(f"/listings/{world.air.listing_id}")
    assert page.status_code == 200  # the document is unavailable: said on the page
    assert "cannot be trusted (unavailable)" in page.text
    assert 'data-document-ok="false"' in page.text


def test_catalog_down_is_a_message_on_the_catalog_page(world: WebWorld) -> None:
    services = dataclasses.replace(world.services, catalog=CatalogClient(DEAD_URL, timeout=2))
    response = world.client(services).get("/", params={"q": "lyon"})
    assert response.status_code == 503
    assert 'role="search"' in response.text and 'id="search-q"' in response.text
    assert "The catalog is unavailable right now" in response.text
    assert DEAD_URL not in response.text and "Traceback" not in response.text


@pytest.mark.parametrize("answer", [
    b"<html>not json</html>",
    b'{"listings": "x"}',
    b'{"listings": [{"id": "one"}]}',
    b"[" * 5000,
    b'{"code": "state_unavailable", "message": "down"}',
])
def test_hostile_catalog_answers_are_a_message(world: WebWorld, answer: bytes) -> None:
    status = 503 if b"state_unavailable" in answer else 200
    transport = httpx.MockTransport(lambda _: httpx.Response(status, content=answer))
    catalog = CatalogClient("http://catalog", client=httpx.Client(transport=transport))
    response = world.client(dataclasses.replace(world.services, catalog=catalog)).get("/")
    assert response.status_code == 503
    assert "The catalog is unavailable right now" in response.text


def test_services_that_cannot_open_are_a_503_and_retried(tmp_path: Path) -> None:
    config = WebConfig(rpc_url=DEAD_URL, market="0x" + "11" * 20, store=str(tmp_path),
                       catalog_url=DEAD_URL)
    client = TestClient(create_web_app(config), raise_server_exceptions=False)
    for _ in range(2):  # a failed opening is not cached: each request tries again
        response = client.get("/api/config")
        assert response.status_code == 503
        assert response.json()["code"] == "chain_unavailable"
    assert_page_message(client.get("/listings/1"), 503, "chain_unavailable")
