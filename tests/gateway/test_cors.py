"""`gateway serve --cors-origin`: the web app's pages call the gateways from the browser, so
a node answers CORS for exactly the origins its operator names, and for no one by default."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from marketplace.chain.provider import connect
from marketplace.cli.gateway_commands import BadCorsOrigin, parse_cors_origins
from marketplace.gateway.api import create_app
from marketplace.gateway.service import GatewayService
from tests.cli.conftest import invoke
from tests.gateway.conftest import build_stack

WEB = "http://127.0.0.1:8000"
OTHER = "http://127.0.0.1:8001"
ALLOW_ORIGIN = "access-control-allow-origin"


@pytest.fixture(scope="module")
def service() -> Iterator[GatewayService]:
    """One node of a 1-of-1 committee (no state needed: CORS is answered before routing)."""
    stack = build_stack(connect(), size=1, threshold=1)
    yield stack.services[1]
    for client in stack.clients.values():
        client.close()


def client_for(service: GatewayService, *origins: str) -> TestClient:
    return TestClient(create_app(service, run_background=False, cors_origins=origins))


def preflight(
    client: TestClient, origin: str, method: str = "POST", headers: str = "content-type"
) -> dict[str, str]:
    answer = client.options(
        "/v1/keys",
        headers={"Origin": origin, "Access-Control-Request-Method": method,
                 "Access-Control-Request-Headers": headers},
    )
    return {"status": str(answer.status_code), **answer.headers}


def test_a_preflight_from_the_allowed_origin_gets_the_headers(service: GatewayService) -> None:
    got = preflight(client_for(service, WEB), WEB)
    assert got["status"] == "200"
    assert got[ALLOW_ORIGIN] == WEB  # the exact origin, never "*"
    assert set(got["access-control-allow-methods"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert "content-type" in got["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in got  # no cookies are ever involved


def test_a_preflight_from_another_origin_is_refused(service: GatewayService) -> None:
    got = preflight(client_for(service, WEB), OTHER)
    assert got["status"] == "400"
    assert ALLOW_ORIGIN not in got


@pytest.mark.parametrize(("method", "headers"), [("DELETE", "content-type"),
                                                 ("POST", "authorization")])
def test_a_preflight_for_another_method_or_header_is_refused(
    service: GatewayService, method: str, headers: str
) -> None:
    got = preflight(client_for(service, WEB), WEB, method, headers)
    assert got["status"] == "400"


def test_by_default_a_node_sends_no_cors_headers(service: GatewayService) -> None:
    client = client_for(service)
    got = preflight(client, WEB)
    assert got["status"] == "405" and ALLOW_ORIGIN not in got
    answer = client.get("/v1/committee", headers={"Origin": WEB})
    assert answer.status_code == 200 and ALLOW_ORIGIN not in answer.headers


def test_answers_to_the_allowed_origin_carry_the_header_and_to_others_not(
    service: GatewayService,
) -> None:
    client = client_for(service, WEB, OTHER)
    for origin in (WEB, OTHER):
        answer = client.get("/v1/committee", headers={"Origin": origin})
        assert answer.headers[ALLOW_ORIGIN] == origin
    stranger = client.get("/v1/committee", headers={"Origin": "http://evil.example"})
    assert stranger.status_code == 200 and ALLOW_ORIGIN not in stranger.headers


def test_an_error_answer_carries_the_header_so_the_page_can_read_its_json(
    service: GatewayService,
) -> None:
    """The page shows a node's refusal (`malformed`, `not_entitled`...): the browser hides
    the body of any answer without the header, errors included."""
    client = client_for(service, WEB)
    answer = client.post("/v1/keys", content=b"{not json",
                         headers={"Origin": WEB, "Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["code"] == "malformed"
    assert answer.headers[ALLOW_ORIGIN] == WEB


def test_origins_are_parsed_from_repeated_and_comma_separated_values() -> None:
    assert parse_cors_origins([f"{WEB}, {OTHER}", WEB, "https://app.example"]) == (
        WEB, OTHER, "https://app.example",
    )
    assert parse_cors_origins([]) == ()


@pytest.mark.parametrize("bad", ["*", "http://*.example", "127.0.0.1:8000", "ftp://x.example",
                                 f"{WEB}/", f"{WEB}/page", f"{WEB}?q=1", "http://u@x.example",
                                 "http://x.example:99999", "http://"])
def test_anything_but_an_exact_origin_is_refused(bad: str) -> None:
    with pytest.raises(BadCorsOrigin) as refused:
        parse_cors_origins([f"{WEB},{bad}"])
    assert refused.value.origin == bad
    assert repr(bad) in str(refused.value)


def test_serve_refuses_a_wildcard_given_in_the_config_file(tmp_path: Path) -> None:
    """The `cors-origin` config key reaches the option (comma-separated in one string)."""
    config = tmp_path / "datadebit.toml"
    config.write_text(f'cors-origin = "{WEB},*"\n')
    result = invoke(
        "--config", config, "gateway", "serve", "--node-key", tmp_path / "node.json",
        "--rpc", "http://127.0.0.1:1", "--market", "0x" + "11" * 20,
    )
    assert result.exit_code == 1
    assert "--cors-origin '*': give exact origins, not a wildcard" in result.output
