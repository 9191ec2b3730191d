"""The devstack as a user runs it, and the CLI driven on it as a user types it.

One stack per module (anvil, js-ipfs, three `datadebit gateway serve` processes, 2-of-3);
every CLI call is a subprocess with the environment the devstack prints. A failing test's
message carries the gateways' log tails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from marketplace.chain.market import MarketClient
from marketplace.chain.provider import connect
from marketplace.committee import read_public_committee
from scripts.devstack import ROOT, DevStack

pytestmark = pytest.mark.integration

CLI_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack.start(tmp_path_factory.mktemp("devstack") / "state") as running:
        yield running


def _refuses_connections(url: str) -> bool:
    try:
        httpx.post(url, timeout=2.0)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False
    return False


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text.encode() in blob and state != "Z":
            found.append(int(entry.name))
    return found


# -- the stack itself ----------------------------------------------------------------------


def test_every_gateway_is_healthy_on_the_deployed_market(stack: DevStack) -> None:
    committee = read_public_committee(stack.committee_file)
    for node in committee.nodes:
        health = stack.health(node.index)
        assert health["status"] == "ok", stack.log_tails()
        assert health["node"] == node.index
        assert health["address"] == node.address
        assert str(health["market"]).lower() == stack.market.lower()


def test_committee_file_names_the_running_gateways(stack: DevStack) -> None:
    committee = read_public_committee(stack.committee_file)
    assert committee.threshold == 2 and len(committee.nodes) == 3
    assert [n.url for n in committee.nodes] == [stack.gateways[i].url for i in (1, 2, 3)]
    on_chain = MarketClient(connect(stack.rpc_url), stack.market).committee()
    assert on_chain.nodes == tuple(n.address for n in committee.nodes)
    assert on_chain.committee_key == committee.committee_key.to_bytes()


def test_node_accounts_are_funded_to_pay_for_anchors(stack: DevStack) -> None:
    w3 = connect(stack.rpc_url)
    for node in read_public_committee(stack.committee_file).nodes:
        assert w3.eth.get_balance(node.address) > 0


def test_store_url_is_a_live_kubo_rpc_api(stack: DevStack) -> None:
    answer = httpx.post(f"{stack.store_url}/api/v0/version", timeout=5.0)
    assert answer.status_code == 200 and "Version" in answer.json()


def test_env_files_match_the_stack_and_hold_no_node_secret(stack: DevStack) -> None:
    env_sh = (stack.state_dir / "env.sh").read_text()
    for name, value in stack.env.items():
        assert f"export {name}={value}" in env_sh
    config = tomllib.loads((stack.state_dir / "datadebit.toml").read_text())
    assert config == {"rpc": stack.rpc_url, "market": stack.market,
                      "store": stack.store_url, "committee": str(stack.committee_file)}
    passphrase = stack.passphrase_file.read_text()
    assert stack.passphrase_file.stat().st_mode & 0o077 == 0
    for printed in (env_sh, stack.summary(), (stack.state_dir / "setup.log").read_text()):
        assert passphrase not in printed
    for role in ("buyer_a", "buyer_b"):
        assert stack.accounts[role].private_key in env_sh


def test_the_script_prints_the_environment_and_stops_everything_on_sigterm(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "devstack"), "--nodes", "1", "--threshold", "1",
         "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        printed: list[str] = []
        deadline = time.monotonic() + 90
        while not any(line.startswith("export DATADEBIT_PRIVATE_KEY=") for line in printed):
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, (
                "".join(printed) + (proc.stderr.read() if proc.stderr else "")
            )
            printed.append(line)
        exports = dict(re.findall(r"^export (\w+)=(\S+)", "".join(printed), re.MULTILINE))
        assert set(exports) == {"DATADEBIT_RPC", "DATADEBIT_MARKET", "DATADEBIT_STORE",
                                "DATADEBIT_COMMITTEE", "DATADEBIT_PRIVATE_KEY"}
        url = read_public_committee(Path(exports["DATADEBIT_COMMITTEE"])).nodes[0].url
        assert url is not None
        assert httpx.get(f"{url}/v1/health", timeout=5.0).json()["status"] == "ok"
        assert _processes_mentioning(str(state)), "gateway and ipfs should be running"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0
    for endpoint in (exports["DATADEBIT_RPC"], exports["DATADEBIT_STORE"], url):
        assert _refuses_connections(endpoint), endpoint
    assert _processes_mentioning(str(state)) == []
