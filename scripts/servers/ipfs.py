"""Start a throwaway js-ipfs node that speaks the Kubo HTTP RPC, for tests and the devstack.

No Kubo binary is reachable from our registries, so the real daemon is js-ipfs (npm `ipfs`
0.66.1, see docs/TOOLCHAIN). Each node gets its own `IPFS_PATH`, free loopback ports for the
API, gateway and gRPC endpoints (so parallel runs never collide) and no swarm, bootstrap,
discovery or preload: an API-only node that never touches the network.

    with IpfsDaemon(tmp_path) as daemon:
        store = IpfsStore(daemon.api_url)

This module has no pytest dependency; the devstack imports it too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import httpx

from scripts.servers.process import free_port, stop_process_group

ROOT = Path(__file__).resolve().parents[2]
JSIPFS = ROOT / "node_modules" / "ipfs" / "src" / "cli.js"
POLYFILLS = Path(__file__).resolve().with_name("node-polyfills.cjs")
_TAIL_CHARS = 2000
_START_ATTEMPTS = 3


class IpfsDaemonError(RuntimeError):
    """The daemon could not be set up or did not come up; the message carries its log tail."""


def node_config(api_port: int, gateway_port: int, rpc_port: int) -> dict[str, object]:
    """Config merged over js-ipfs's defaults at init: API only, nothing reaches the network."""
    return {
        "Addresses": {
            "Swarm": [],
            "Announce": [],
            "NoAnnounce": [],
            "API": f"/ip4/127.0.0.1/tcp/{api_port}",
            "Gateway": f"/ip4/127.0.0.1/tcp/{gateway_port}",
            "RPC": f"/ip4/127.0.0.1/tcp/{rpc_port}",
            "Delegates": [],
        },
        "Bootstrap": [],
        "Discovery": {"MDNS": {"Enabled": False}, "webRTCStar": {"Enabled": False}},
        "Pubsub": {"Enabled": False},
        "Routing": {"Type": "none"},
    }


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-_TAIL_CHARS:].strip()
    except OSError:
        return ""


class IpfsDaemon:
    """One js-ipfs daemon in its own process group, initialised under `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        startup_timeout: float = 60.0,
        node: str | None = None,
        jsipfs: Path = JSIPFS,
    ) -> None:
        self.workdir = Path(workdir)
        self.repo = self.workdir / "ipfs-repo"
        self.startup_timeout = startup_timeout
        self._node = node or shutil.which("node") or "node"
        self._jsipfs = jsipfs
        self._proc: subprocess.Popen[bytes] | None = None
        self._api_port = 0
        self._log = self.workdir / "ipfs-daemon.log"

    @property
    def api_url(self) -> str:
        """Base URL of the Kubo-compatible RPC (`.../api/v0/...` lives under it)."""
        if self._proc is None:
            raise IpfsDaemonError("the daemon is not running")
        return f"http://127.0.0.1:{self._api_port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["IPFS_PATH"] = str(self.repo)
        env["NODE_OPTIONS"] = f"--require {POLYFILLS} {env.get('NODE_OPTIONS', '')}".strip()
        env.pop("IPFS_MONITORING", None)
        return env

    def _init_repo(self, attempt: int) -> None:
        if not self._jsipfs.exists():
            raise IpfsDaemonError(f"js-ipfs is not installed at {self._jsipfs}; run `npm ci`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.repo = self.workdir / ("ipfs-repo" if attempt == 0 else f"ipfs-repo-{attempt}")
        self._api_port = free_port()
        config = node_config(self._api_port, free_port(), free_port())
        config_file = self.workdir / "ipfs-init-config.json"
        config_file.write_text(json.dumps(config))
        log = self.workdir / "ipfs-init.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [self._node, str(self._jsipfs), "init", str(config_file)],
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=self.startup_timeout,
                check=False,
            )
        if done.returncode != 0:
            raise IpfsDaemonError(f"jsipfs init failed ({done.returncode}): {_tail(log)}")

    def start(self) -> str:
        """Init a fresh repo, start the daemon and wait until its API answers.

        A port picked as free can be taken by someone else before the daemon binds it; that
        start is retried on fresh ports (up to `_START_ATTEMPTS` times).
        """
        if self._proc is not None:
            return self.api_url
        for attempt in range(_START_ATTEMPTS):
            try:
                self._start_once(attempt)
                return self.api_url
            except IpfsDaemonError as e:
                if attempt == _START_ATTEMPTS - 1 or "EADDRINUSE" not in str(e):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_once(self, attempt: int) -> None:
        self._init_repo(attempt)
        with self._log.open("wb") as out:
            self._proc = subprocess.Popen(
                [self._node, str(self._jsipfs), "daemon", "--no-enable-preload"],
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://127.0.0.1:{self._api_port}/api/v0/version"
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise IpfsDaemonError(
                    f"jsipfs daemon exited with {self._proc.returncode}: {_tail(self._log)}"
                )
            if "EADDRINUSE" in _tail(self._log):  # it logs this and then hangs, not exits
                raise IpfsDaemonError(f"jsipfs daemon could not bind: {_tail(self._log)}")
            try:
                if httpx.post(url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise IpfsDaemonError(
            f"jsipfs daemon API did not answer within {self.startup_timeout:.0f} s: "
            f"{_tail(self._log)}"
        )

    def stop(self) -> None:
        """Terminate the daemon's whole process group and wait for it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process_group(proc)

    def __enter__(self) -> IpfsDaemon:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def start_ipfs(workdir: Path, *, startup_timeout: float = 60.0) -> Iterator[str]:
    """Run a daemon for the duration of the block and yield its API base URL."""
    with IpfsDaemon(workdir, startup_timeout=startup_timeout) as daemon:
        yield daemon.api_url
