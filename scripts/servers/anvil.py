"""Start and stop a real anvil node (npm `@foundry-rs/anvil`) on a free loopback port.

Used by the integration tests and the devstack; no pytest dependency.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.servers.process import free_port, stop_process_group

ROOT = Path(__file__).resolve().parents[2]
ANVIL = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
#: anvil's first dev account (its well-known test mnemonic); unlocked and funded.
CHAIN_ID = 31337


class AnvilError(RuntimeError):
    """anvil is missing, or did not come up."""


def _answers(url: str) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return bool(json.load(response).get("result"))
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextmanager
def start_anvil(
    *, port: int | None = None, startup_timeout: float = 15.0, block_time: float | None = None
) -> Iterator[str]:
    """Run anvil until the block exits; yields its JSON-RPC URL. Without `block_time` it
    mines one block per transaction; with it, a block every `block_time` seconds.

    anvil writes the states of older blocks under `$HOME/.foundry/anvil/tmp` and leaves
    them there when it is stopped: ~11 GB for a chain of 10,000 blocks, which filled the
    disk during a benchmark. Each anvil therefore gets a HOME of its own, removed with it.
    """
    if not ANVIL.is_file():
        raise AnvilError(f"anvil not installed at {ANVIL}; `bash scripts/dev test` installs it")
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    interval = [] if block_time is None else ["--block-time", str(block_time)]
    home = tempfile.mkdtemp(prefix="anvil-home-")
    proc = subprocess.Popen(
        [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(CHAIN_ID),
         "--silent", *interval],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "HOME": home},
    )
    try:
        deadline = time.monotonic() + startup_timeout
        while not _answers(url):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise AnvilError(f"anvil exited with {proc.returncode}: {err[-2000:]}")
            if time.monotonic() > deadline:
                raise AnvilError(f"anvil did not answer on {url} within {startup_timeout}s")
            time.sleep(0.05)
        yield url
    finally:
        stop_process_group(proc)
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(home, ignore_errors=True)
