"""The catalog's API and the buyer's `market search` / `market show`, against an indexed
embedded chain; bad input is a JSON 422, an unknown id a JSON 404, never a 500."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from marketplace.catalog.api import create_app
from marketplace.catalog.store import CatalogStore
from marketplace.cli.main import app as cli
from scripts.servers.process import free_port
from tests.catalog.conftest import PRICE, Backend, Market, doc
from tests.chain.conftest import CompiledContract, helper_contracts  # noqa: F401 - fixture


@dataclass
class Indexed:
    store: CatalogStore
    air: int
    broken: int


@pytest.fixture
def indexed(backend: Backend, chain_market: Market) -> Indexed:
    m = chain_market
    air = m.listing_with(doc("Air quality in Lyon", "hourly PM2.5", ("air", "city")))
    m.listing_with(doc("Traffic counts", "vehicles", ("city",)), price=10 * PRICE)
    broken = m.listing_with_bytes(b'{"schema": "datadebit/listing/v1"}')  # no title
    m.debit(air)
    store = backend.open()
    m.indexer(store).catch_up()
    return Indexed(store, air, broken)


def test_search_and_show(indexed: Indexed) -> None:
    client = TestClient(create_app(indexed.store))
    found = client.get("/v1/listings", params={"q": "air lyon"}).json()["listings"]
    assert [x["id"] for x in found] == [indexed.air]
    assert found[0]["price_wei"] == str(PRICE)
    cheap = client.get("/v1/listings", params={"tag": "city", "max_price": PRICE}).json()
    assert [x["id"] for x in cheap["listings"]] == [indexed.air]
    detail = client.get(f"/v1/listings/{indexed.air}").json()
    assert detail["document"]["title"] == "Air quality in Lyon"
    assert detail["debits"] == {"requested": 1}
    broken = client.get(f"/v1/listings/{indexed.broken}").json()
    assert broken["document_status"] == "invalid_schema" and broken["document_error"]
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["listings"] == 3


@pytest.mark.parametrize("params", [
    {"max_price": "-1"}, {"max_price": "0.01eth"}, {"max_price": str(2**256)},
    {"limit": "0"}, {"limit": "1000"}, {"offset": "-5"}, {"offset": "x"},
    {"q": "a" * 201}, {"tag": ""}, {"tag": "x" * 41}, {"tag": "a\x00b"},
])
def test_bad_query_input_is_a_json_422(indexed: Indexed, params: dict[str, str]) -> None:
    response = TestClient(create_app(indexed.store)).get("/v1/listings", params=params)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize("path", ["/v1/listings/abc", "/v1/listings/-1",
                                  f"/v1/listings/{2**64}", "/v1/listings/1.5"])
def test_bad_listing_ids_are_a_json_422(indexed: Indexed, path: str) -> None:
    response = TestClient(create_app(indexed.store)).get(path)
    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")


def test_an_unknown_listing_is_a_json_404(indexed: Indexed) -> None:
    response = TestClient(create_app(indexed.store)).get("/v1/listings/999")
    assert (response.status_code, response.json()["code"]) == (404, "unknown_listing")


class ServedCatalog:
    """The catalog's API behind a real uvicorn server in a thread of this process."""

    def __init__(self, store: CatalogStore) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(store), host="127.0.0.1", port=self.port,
                                log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> ServedCatalog:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the catalog did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)


@pytest.fixture
def served(indexed: Indexed) -> Iterator[tuple[Indexed, str]]:
    with ServedCatalog(indexed.store) as server:
        yield indexed, server.url


def test_market_search_and_show_through_the_cli(served: tuple[Indexed, str]) -> None:
    indexed, url = served
    runner = CliRunner()
    found = runner.invoke(cli, ["market", "search", "air quality", "--catalog", url])
    assert found.exit_code == 0, found.output
    assert f"#{indexed.air}  Air quality in Lyon" in found.stdout
    none = runner.invoke(cli, ["market", "search", "air", "--max-price", "0.0001eth"],
                         env={"DATADEBIT_CATALOG": url})
    assert none.exit_code == 0 and "no listings found" in none.stdout
    shown = runner.invoke(cli, ["market", "show", str(indexed.air), "--catalog", url])
    assert shown.exit_code == 0, shown.output
    assert "hourly PM2.5" in shown.stdout and "1 requested" in shown.stdout
    broken = runner.invoke(cli, ["market", "show", str(indexed.broken), "--catalog", url])
    assert "invalid_schema" in broken.stdout
    missing = runner.invoke(cli, ["market", "show", "999", "--catalog", url])
    assert missing.exit_code == 1 and "no listing 999" in missing.stderr
    bad = runner.invoke(cli, ["market", "search", "x", "--max-price", "lots", "--catalog", url])
    assert bad.exit_code == 1 and "--max-price" in bad.stderr


def test_token_listings_are_shown_and_capped_in_the_tokens_units(
    backend: Backend, chain_market: Market,
    helper_contracts: dict[str, CompiledContract],  # noqa: F811
) -> None:
    """Issue 12: the indexer reads a listing token's symbol and decimals once; the API
    gives them beside the price; `market search --max-price 5tusd` resolves the symbol
    among the catalog's tokens and compares that token's units only."""
    m = chain_market
    w3, compiled = m.market.w3, helper_contracts["PermitToken"]
    factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    tx = factory.constructor().build_transaction({
        "from": m.owner.address, "nonce": w3.eth.get_transaction_count(m.owner.address)})
    token = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(
        m.owner.sign_transaction(tx).raw_transaction))["contractAddress"]
    ether = m.listing_with(doc("Air quality in Lyon", "hourly PM2.5"))
    from marketplace.documents import document_uri, put_document  # noqa: PLC0415

    uri = document_uri(put_document(m.store, doc("Air quality in Turin", "daily")))  # type: ignore[arg-type]
    priced = m.market.create_listing(m.owner, price_per_period=5_000_000, period_seconds=3600,
                                     auto_approve=True, metadata_uri=uri, asset=token).value
    store = backend.open()
    m.indexer(store).catch_up()
    client = TestClient(create_app(store))
    found = {x["id"]: x for x in client.get("/v1/listings", params={"q": "air"}).json()["listings"]}
    assert (found[priced]["asset"], found[priced]["asset_symbol"],
            found[priced]["asset_decimals"], found[priced]["price_wei"]) == (
        token, "TUSD", 6, "5000000")
    assert (found[ether]["asset_symbol"], found[ether]["asset_decimals"]) == ("ETH", 18)
    assets = client.get("/v1/assets").json()["assets"]
    assert {(a["symbol"], a["decimals"]) for a in assets} == {("ETH", 18), ("TUSD", 6)}
    assert client.get("/v1/listings", params={"asset": "0x12"}).status_code == 422
    with ServedCatalog(store) as server:
        runner = CliRunner()
        shown = runner.invoke(cli, ["market", "search", "air", "--catalog", server.url])
        assert shown.exit_code == 0, shown.output
        assert "Turin  5 TUSD / 3600 s" in shown.stdout and "Lyon  0.001 ETH" in shown.stdout
        capped = runner.invoke(cli, ["market", "search", "air", "--max-price", "5tusd",
                                     "--catalog", server.url])
        assert capped.exit_code == 0, capped.output
        assert f"#{priced} " in capped.stdout and f"#{ether} " not in capped.stdout
        below = runner.invoke(cli, ["market", "search", "air", "--max-price", "4.99 TUSD",
                                    "--catalog", server.url])
        assert "no listings found" in below.stdout
        unknown = runner.invoke(cli, ["market", "search", "--max-price", "5usdc",
                                      "--catalog", server.url])
        assert unknown.exit_code == 1
        assert "no listed token has the symbol 'usdc'" in unknown.stderr
        detail = runner.invoke(cli, ["market", "show", str(priced), "--catalog", server.url])
        assert "price:     5 TUSD / 3600 s" in detail.stdout


def test_a_catalogs_hostile_symbol_is_not_printed() -> None:
    """The catalog is a server the buyer does not control: a symbol with a terminal
    escape, or one passing for ether, is shown as base units, like a token's own."""
    from marketplace.cli.market_commands import _price  # noqa: PLC0415

    listing = {"price_wei": "7", "period_seconds": 60, "asset": "0x" + "ab" * 20,
               "asset_decimals": 0}
    assert _price({**listing, "asset_symbol": "\x1b[31mUSD"}) == "7 base units / 60 s"
    assert _price({**listing, "asset_symbol": "ETH"}) == "7 base units / 60 s"
    assert _price({**listing, "asset_symbol": "TUSD", "asset_decimals": 99}) == \
        "7 base units / 60 s"
    assert _price({**listing, "asset_symbol": "TUSD"}) == "7 TUSD / 60 s"
