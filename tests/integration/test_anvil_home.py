"""anvil's on-disk states go with it: a benchmark's anvil once left ~11 GB per run under
~/.foundry/anvil/tmp and filled the disk."""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from scripts.servers.anvil import start_anvil

pytestmark = pytest.mark.integration


def _homes() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("anvil-home-*"))


def _rpc(url: str, method: str, params: list[object]) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["result"]


def test_anvil_keeps_its_states_in_a_home_of_its_own_removed_with_it() -> None:
    user_states = Path.home() / ".foundry" / "anvil" / "tmp"
    before = set(user_states.glob("*")) if user_states.exists() else set()
    homes = _homes()
    with start_anvil() as url:
        [home] = _homes() - homes
        for _ in range(800):  # more block states than anvil keeps in memory
            _rpc(url, "evm_mine", [])
        assert _rpc(url, "eth_blockNumber", []) == hex(800)
        deadline = time.monotonic() + 20
        while not (home / ".foundry").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # anvil writes them in the background
        assert (home / ".foundry").exists()  # the older states went to disk, under this HOME
    assert not home.exists()
    after = set(user_states.glob("*")) if user_states.exists() else set()
    assert after == before
