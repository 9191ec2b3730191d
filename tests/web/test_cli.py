"""`datadebit web serve`: its refusals (no vendored JS, missing settings, no market at the
address) in process, and the real command serving pages for a market on anvil."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from marketplace.cli.main import app as cli
from scripts.servers.process import free_port, stop_process_group
from tests.cli.conftest import Deployment, deploy_market

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True)
def no_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DATADEBIT_"):
            monkeypatch.delenv(name)


def test_refuses_to_start_without_the_vendored_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    import marketplace.web.vendor as vendor  # noqa: PLC0415

    monkeypatch.setattr(vendor, "vendor_missing",
                        lambda: "the JavaScript libraries are missing: run `npm install`")
    result = runner.invoke(cli, ["web", "serve", "--rpc", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "npm install" in result.output


def test_missing_settings_are_named(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["web", "serve", "--market", "0x" + "11" * 20,
                                 "--store", str(tmp_path)])
    assert result.exit_code == 1 and "no --rpc given" in result.output
    result = runner.invoke(cli, ["web", "serve", "--rpc", "http://127.0.0.1:9",
                                 "--market", "0x" + "11" * 20, "--store", str(tmp_path)])
    assert result.exit_code == 1 and "unavailable" in result.output


@pytest.fixture(scope="module")
def deployed(anvil_url: str, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    built = deploy_market(anvil_url, tmp_path_factory.mktemp("web-cli"), serve=False)
    built.store.mkdir()
    built.market.create_listing(built.owner, price_per_period=10**15, period_seconds=3600,
                                auto_approve=True, terms_hash=bytes(32), metadata_uri="")
    return built


@pytest.mark.integration
def test_no_market_at_the_address_is_refused(deployed: Deployment) -> None:
    result = runner.invoke(cli, ["web", "serve", "--rpc", deployed.rpc,
                                 "--market", "0x" + "11" * 20, "--store", str(deployed.store)])
    assert result.exit_code == 1 and "no contract at" in result.output


@pytest.fixture
def served(deployed: Deployment) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketplace.cli", "web", "serve", "--port", str(port),
         "--catalog", "http://127.0.0.1:9", "--committee", str(deployed.committee_file)],
        cwd=ROOT, env={**os.environ, **deployed.env}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until it listens (a start-up wait, not an assertion on time)
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "exited")
            try:
                httpx.get(url + "/api/config", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        stop_process_group(proc)
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.integration
def test_serves_pages_and_api_for_a_market_on_anvil(served: str, deployed: Deployment) -> None:
    home = httpx.get(served + "/")
    assert home.status_code == 503  # no catalog runs here: the page says so, with its form
    assert 'role="search"' in home.text and "The catalog is unavailable" in home.text
    config = httpx.get(served + "/api/config").json()
    assert config == {"chainId": 31337, "market": deployed.market.address, "gateways": []}
    listing = httpx.get(served + "/listings/1")
    assert listing.status_code == 200 and 'id="request-form"' in listing.text
    assert "0.001 ETH per period" in listing.text and "auto-approve" in listing.text
    vendor = httpx.get(served + "/static/vendor/ethers/ethers.min.js")
    assert vendor.status_code == 200 and "javascript" in vendor.headers["content-type"]
