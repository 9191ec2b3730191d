"""A whole datadebit network as separate processes on loopback, for trying the CLI by hand
and for the multi-process integration test.

    .venv/bin/python -m scripts.devstack [--nodes 3] [--threshold 2] [--state-dir DIR]
                                          [--block-time SECONDS] [--no-web]

Starts anvil and a js-ipfs daemon on free ports, makes node keys and a roster with
`datadebit committee init` (node URLs filled in), deploys the market for that roster with
`datadebit deploy --roster`, funds the node accounts (they pay for their ceremony messages
and release anchors) and runs one `datadebit gateway serve` process per node, each with its
own SQLite file and log in the state directory. The gateways then generate the committee
key among themselves (a DKG on the chain: no process ever holds the secret); the stack is
up once epoch 1 is final and every node holds its share, and `committee export` has written
the committee.json buyers use. The catalog and the web app (`datadebit web serve`, whose
origin every gateway allows by CORS) come up last. It prints the environment the CLI
needs and the web app's URL (also written to
`<state-dir>/env.sh` and `<state-dir>/datadebit.toml`) and stays in the foreground until
Ctrl-C or SIGTERM, then stops every process group it started.

The wallets are anvil's public development accounts (the well-known test mnemonic): fine
for a throwaway local chain, never for anything else. The node key files' passphrase lives
in a 0600 file in the state directory and is never printed.

Tests use the programmatic form:

    with DevStack.start(tmp_path, nodes=3, threshold=2) as stack:
        subprocess.run([...], env=stack.cli_env("buyer_a"))
        stack.kill_gateway(1)
        stack.start_gateway(1)

    with DevStack.start(tmp_path, web=True) as stack:   # and `datadebit web serve`
        page.goto(stack.web_url)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
from eth_account import Account
from eth_typing import ChecksumAddress
from web3 import Web3

from marketplace.chain.devtoken import TUSD, deploy_dev_stablecoin, mint_dev_stablecoin
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.committee import ROSTER_FILE, node_key_file_name, read_roster
from scripts.servers.anvil import AnvilError, start_anvil
from scripts.servers.ipfs import IpfsDaemon, IpfsDaemonError
from scripts.servers.process import free_port, stop_process_group

ROOT = Path(__file__).resolve().parents[1]
ETHER = 10**18
NODE_FUNDING = 10 * ETHER
#: Test dollars minted to each dev buyer.
DEV_BUYER_TUSD = 10_000 * TUSD
#: anvil's default accounts come from this public test mnemonic.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
#: Which anvil dev account plays which part (index in the mnemonic's derivation path).
ROLES = {"deployer": 0, "owner": 1, "buyer_a": 2, "buyer_b": 3}
#: Variables of the CLI's shared configuration; child processes get only ours.
ENV_PREFIX = "DATADEBIT_"
_LOG_TAIL = 3000


class DevStackError(RuntimeError):
    """A part of the stack did not come up; the message names it and carries its log tail."""


@dataclass(frozen=True)
class DevAccount:
    """One of anvil's public dev accounts; the key is public knowledge, not a secret."""

    role: str
    index: int
    address: ChecksumAddress
    private_key: str


def dev_accounts() -> dict[str, DevAccount]:
    """The role → account table, derived from anvil's mnemonic (no keys copied by hand)."""
    Account.enable_unaudited_hdwallet_features()
    accounts = {}
    for role, index in ROLES.items():
        account = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
        accounts[role] = DevAccount(role, index, account.address, "0x" + account.key.hex())
    return accounts


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-_LOG_TAIL:].strip()
    except OSError:
        return "(no log)"


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without any DATADEBIT_* setting (a user's own config must
    not leak into the stack), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(extra or {})
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "marketplace.cli", *args]


def run_cli(args: list[str], *, env: Mapping[str, str], log: Path, timeout: float = 120.0) -> str:
    """Run one `datadebit` command to completion; its stdout is returned and, with stderr,
    appended to `log`. A failure raises with the command's output."""
    done = subprocess.run(
        _cli(*args), cwd=ROOT, env=dict(env), capture_output=True, text=True,
        timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ datadebit {' '.join(args)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise DevStackError(
            f"`datadebit {args[0]} {args[1] if len(args) > 1 else ''}` failed "
            f"({done.returncode}): {(done.stdout + done.stderr).strip()[-_LOG_TAIL:]}"
        )
    return done.stdout


@dataclass
class Gateway:
    """One `datadebit gateway serve` process: its port, state file and log stay fixed
    across restarts, so a restarted node resumes from its persisted cursor."""

    index: int
    port: int
    node_key: Path
    database: Path
    log: Path
    address: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class DevStack:
    """anvil + js-ipfs + a deployed market + one gateway process per committee node."""

    def __init__(
        self,
        state_dir: Path,
        *,
        nodes: int,
        threshold: int,
        poll_interval: float,
        anchor_interval: float,
        startup_timeout: float,
    ) -> None:
        self.state_dir = state_dir
        self.nodes = nodes
        self.threshold = threshold
        self.poll_interval = poll_interval
        self.anchor_interval = anchor_interval
        self.startup_timeout = startup_timeout
        self.accounts = dev_accounts()
        self.committee_dir = state_dir / "committee"
        self.committee_file = self.committee_dir / "committee.json"
        self.roster_files = [self.committee_dir / ROSTER_FILE]
        self.passphrase_file = state_dir / "node-passphrase"
        self.setup_log = state_dir / "setup.log"
        self.rpc_url = ""
        self.store_url = ""
        self.market = ""
        self.stablecoin = ""
        #: the AggregateMarket once `enable_aggregation` ran ("" before)
        self.aggregator = ""
        self.ipfs: IpfsDaemon | None = None
        self.gateways: dict[int, Gateway] = {}
        self.catalog_port = 0
        self.catalog_log = state_dir / "catalog.log"
        self.catalog_proc: subprocess.Popen[bytes] | None = None
        # chosen up front: every gateway allows the web app's origin (CORS) from its start
        self.web_port = free_port()
        self.web_log = state_dir / "web.log"
        self.web_proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    @contextmanager
    def start(
        cls,
        state_dir: Path,
        *,
        nodes: int = 3,
        threshold: int = 2,
        block_time: float | None = None,
        poll_interval: float = 0.2,
        anchor_interval: float = 2.0,
        startup_timeout: float = 60.0,
        phase_seconds: int = 5,
        web: bool = False,
    ) -> Iterator[DevStack]:
        """Bring the whole stack up in an empty (or new) `state_dir` (with `web`, the web
        app too); everything started is stopped when the block exits, however it exits."""
        if not 1 <= threshold <= nodes:
            raise DevStackError(f"threshold {threshold} must be between 1 and {nodes} nodes")
        state_dir = Path(state_dir).resolve()
        if state_dir.exists() and any(state_dir.iterdir()):
            raise DevStackError(f"state directory {state_dir} is not empty; give a fresh one")
        state_dir.mkdir(parents=True, exist_ok=True)
        stack = cls(
            state_dir, nodes=nodes, threshold=threshold, poll_interval=poll_interval,
            anchor_interval=anchor_interval, startup_timeout=startup_timeout,
        )
        with ExitStack() as cleanup:
            # js-ipfs takes ~10 s to init and start: it comes up while the rest is set up.
            ipfs = stack.ipfs = IpfsDaemon(state_dir / "ipfs", startup_timeout=startup_timeout)
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipfs-start")
            ipfs_started = pool.submit(ipfs.start)
            cleanup.callback(_stop_after, ipfs_started, ipfs.stop, pool)
            stack.rpc_url = cleanup.enter_context(start_anvil(block_time=block_time))
            cleanup.callback(stack.stop_gateways)
            stack._make_roster_and_deploy(phase_seconds)
            for index in stack.gateways:
                stack.start_gateway(index, wait=False)
            for index in stack.gateways:
                stack.wait_healthy(index)
            stack.wait_epoch(1)
            stack.store_url = ipfs_started.result()
            stack.start_catalog()
            if web:
                stack.start_web()
            stack._write_env_files()
            yield stack

    def _make_roster_and_deploy(self, phase_seconds: int) -> None:
        ports = [free_port() for _ in range(self.nodes)]
        self.passphrase_file.touch(mode=0o600)
        self.passphrase_file.write_text(secrets.token_urlsafe(24), encoding="utf-8")
        env = _child_env()
        run_cli(
            ["committee", "init", "--n", str(self.nodes), "--t", str(self.threshold),
             "--out", str(self.committee_dir),
             "--urls", ",".join(f"http://127.0.0.1:{p}" for p in ports),
             "--passphrase-file", str(self.passphrase_file), "--kdf", "interactive"],
            env=env, log=self.setup_log,
        )
        deployer = self.accounts["deployer"]
        out = run_cli(
            ["deploy", "--roster", str(self.roster_files[0]), "--rpc", self.rpc_url,
             "--phase", f"{phase_seconds}s", "--deadline", "30m"],
            env=_child_env({f"{ENV_PREFIX}PRIVATE_KEY": deployer.private_key}),
            log=self.setup_log,
        )
        self.market = out.strip().splitlines()[-1].strip()
        w3 = connect(self.rpc_url)
        dev = DevChain(w3)
        self._deploy_stablecoin(w3)
        for index, node in enumerate(read_roster(self.roster_files[0]).nodes, start=1):
            dev.fund(node.address, NODE_FUNDING)
            self.gateways[index] = Gateway(
                index=index,
                port=ports[index - 1],
                node_key=self.committee_dir / node_key_file_name(index),
                database=self.state_dir / f"gateway-{index}.db",
                log=self.state_dir / f"gateway-{index}.log",
                address=node.address,
            )

    def _deploy_stablecoin(self, w3: Web3) -> None:
        """A test dollar (TUSD, 6 decimals, permit) for token listings; each dev buyer
        gets DEV_BUYER_TUSD of it."""
        deployer = Account.from_key(self.accounts["deployer"].private_key)
        self.stablecoin = deploy_dev_stablecoin(w3, deployer)
        for role in ("buyer_a", "buyer_b"):
            mint_dev_stablecoin(w3, self.stablecoin, deployer, self.accounts[role].address,
                                DEV_BUYER_TUSD)

    def wait_epoch(self, epoch: int, timeout: float | None = None) -> None:
        """Wait until committee `epoch` is final and every running member holds its share
        (their `/v1/health` says so), then write committee.json for buyers and auditors."""
        market = MarketClient(connect(self.rpc_url), self.market)
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        while time.monotonic() < deadline:
            if market.current_epoch() >= epoch:
                members = {a.lower() for a in market.committee_at(epoch).nodes}
                running = [
                    i for i, g in self.gateways.items()
                    if g.running and g.address.lower() in members
                ]
                if all(self.health(i).get("epoch") == epoch for i in running):
                    self.export_committee()
                    return
            time.sleep(0.2)
        raise DevStackError(
            f"committee epoch {epoch} not final after {timeout or self.startup_timeout:.0f} s "
            f"(see `datadebit committee status`):\n{self.log_tails()}"
        )

    def export_committee(self) -> None:
        """(Re)write committee.json: the current epoch's keys, every roster's URLs."""
        self.committee_file.unlink(missing_ok=True)
        args = ["committee", "export", "--rpc", self.rpc_url, "--market", self.market,
                "--out", str(self.committee_file)]
        for roster in self.roster_files:
            args += ["--roster", str(roster)]
        run_cli(args, env=_child_env(), log=self.setup_log)

    def reshare(
        self, *, add: int, threshold: int, remove: tuple[int, ...] = (), timeout: float = 120.0
    ) -> None:
        """Move the committee to a new roster (the current nodes minus `remove`, plus `add`
        new nodes) and threshold, keeping its key: new node keys, `committee propose` by
        the governor (the deployer), approvals by the running nodes (their
        --approve-rosters policy), new gateways started; returns once the new epoch is
        final and its running members hold their shares."""
        market = MarketClient(connect(self.rpc_url), self.market)
        epoch = market.current_epoch() + 1
        folder = self.committee_dir / f"epoch-{epoch}"
        folder.mkdir(parents=True, exist_ok=True)
        dev = DevChain(connect(self.rpc_url))
        members = {
            n.address.lower(): n for roster in self.roster_files for n in read_roster(roster).nodes
        }
        kept = [
            members[a.lower()] for a in market.committee().nodes if self._index_of(a) not in remove
        ]
        entries: list[dict[str, str | None]] = [
            {"address": n.address, "encryptionKey": "0x" + n.encryption_key.hex(), "url": n.url}
            for n in kept
        ]
        new_addresses: set[str] = set()
        for _ in range(add):
            index = max(self.gateways) + 1
            port = free_port()
            key_file = folder / node_key_file_name(index)
            out = run_cli(
                ["committee", "keygen", "--out", str(key_file),
                 "--url", f"http://127.0.0.1:{port}",
                 "--passphrase-file", str(self.passphrase_file), "--kdf", "interactive"],
                env=_child_env(), log=self.setup_log,
            )
            entry = json.loads(out.strip().splitlines()[-1])
            entries.append(entry)
            new_addresses.add(entry["address"].lower())
            dev.fund(entry["address"], NODE_FUNDING)
            self.gateways[index] = Gateway(
                index=index, port=port, node_key=key_file,
                database=self.state_dir / f"gateway-{index}.db",
                log=self.state_dir / f"gateway-{index}.log", address=entry["address"],
            )
        roster_file = folder / ROSTER_FILE
        roster_file.write_text(json.dumps({"threshold": threshold, "nodes": entries}, indent=2))
        self.roster_files.append(roster_file)
        for index, gateway in self.gateways.items():
            if not gateway.running and gateway.address.lower() in new_addresses:
                self.start_gateway(index)
        run_cli(
            ["committee", "propose", "--roster", str(roster_file), "--rpc", self.rpc_url,
             "--market", self.market, "--deadline", "30m", "--phase", "5s"],
            env=_child_env({f"{ENV_PREFIX}PRIVATE_KEY": self.accounts["deployer"].private_key}),
            log=self.setup_log,
        )
        self.wait_epoch(epoch, timeout)

    def _index_of(self, address: str) -> int | None:
        for index, gateway in self.gateways.items():
            if gateway.address.lower() == address.lower():
                return index
        return None

    def start_gateway(self, index: int, *, wait: bool = True) -> None:
        """(Re)start node `index` on its port and state file; with `wait`, returns once it
        is healthy."""
        gateway = self.gateways[index]
        if gateway.running:
            raise DevStackError(f"gateway {index} is already running")
        args = _cli(
            "gateway", "serve",
            "--node-key", str(gateway.node_key),
            "--rpc", self.rpc_url,
            "--market", self.market,
            "--state", f"sqlite:///{gateway.database}",
            "--port", str(gateway.port),
            *[arg for roster in self.roster_files for arg in ("--roster", str(roster))],
            "--approve-rosters",
            "--passphrase-file", str(self.passphrase_file),
            "--poll-interval", str(self.poll_interval),
            "--anchor-interval", str(self.anchor_interval),
            *(("--aggregator", self.aggregator, "--store", self.store_url)
              if self.aggregator else ()),
            "--cors-origin", self.web_url,
        )
        with gateway.log.open("ab") as log:
            log.write(f"--- starting gateway {index} on {gateway.url}\n".encode())
            log.flush()
            gateway.proc = subprocess.Popen(
                args, cwd=ROOT, env=_child_env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        if wait:
            self.wait_healthy(index)

    def wait_healthy(self, index: int, timeout: float | None = None) -> dict[str, object]:
        """Poll `/v1/health` until it says ok; its body is returned."""
        gateway = self.gateways[index]
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        last = "no answer"
        while time.monotonic() < deadline:
            if gateway.proc is None or gateway.proc.poll() is not None:
                code = None if gateway.proc is None else gateway.proc.returncode
                raise DevStackError(
                    f"gateway {index} exited ({code}) before it was healthy:\n{_tail(gateway.log)}"
                )
            try:
                answer = httpx.get(f"{gateway.url}/v1/health", timeout=2.0)
                if answer.status_code == 200:
                    body: dict[str, object] = answer.json()
                    return body
                last = f"HTTP {answer.status_code}: {answer.text[:200]}"
            except httpx.TransportError as e:
                last = type(e).__name__
            time.sleep(0.1)
        raise DevStackError(
            f"gateway {index} not healthy on {gateway.url} after "
            f"{timeout or self.startup_timeout:.0f} s ({last}):\n{_tail(gateway.log)}"
        )

    def health(self, index: int) -> dict[str, object]:
        """One `/v1/health` answer of node `index` (raises if it does not answer)."""
        answer = httpx.get(f"{self.gateways[index].url}/v1/health", timeout=5.0)
        body: dict[str, object] = answer.json()
        return body

    def enable_aggregation(self) -> str:
        """Deploy an AggregateMarket served by the market's committee and restart every
        running gateway with --aggregator and --store (each resumes from its state file);
        returns its address, also written to env.sh and datadebit.toml."""
        out = run_cli(
            ["deploy-aggregator", "--market", self.market, "--rpc", self.rpc_url],
            env=_child_env({f"{ENV_PREFIX}PRIVATE_KEY": self.accounts["deployer"].private_key}),
            log=self.setup_log,
        )
        self.aggregator = out.strip().splitlines()[-1].strip()
        for index, gateway in self.gateways.items():
            if gateway.running:
                self.kill_gateway(index, signal.SIGTERM)
                self.start_gateway(index)
        self._write_env_files()
        return self.aggregator

    def kill_gateway(self, index: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` (default: SIGKILL, a crash) to node `index`'s process group and reap it."""
        gateway = self.gateways[index]
        if gateway.proc is None:
            return
        proc, gateway.proc = gateway.proc, None
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        proc.wait(30)

    @property
    def catalog_url(self) -> str:
        return f"http://127.0.0.1:{self.catalog_port}"

    def start_catalog(self) -> None:
        """Run `datadebit catalog serve` (the listing index buyers search) and wait until it
        answers."""
        self.catalog_port = free_port()
        args = _cli(
            "catalog", "serve", "--rpc", self.rpc_url, "--market", self.market,
            "--store", self.store_url, "--state", f"sqlite:///{self.state_dir / 'catalog.db'}",
            "--port", str(self.catalog_port), "--poll-interval", str(self.poll_interval),
        )
        with self.catalog_log.open("ab") as log:
            self.catalog_proc = subprocess.Popen(
                args, cwd=ROOT, env=_child_env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.catalog_proc.poll() is not None:
                raise DevStackError(f"the catalog exited:\n{_tail(self.catalog_log)}")
            try:
                if httpx.get(f"{self.catalog_url}/v1/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise DevStackError(f"the catalog did not answer:\n{_tail(self.catalog_log)}")

    @property
    def web_url(self) -> str:
        """The web app's origin (whether or not it runs: the gateways allow it anyway)."""
        return f"http://127.0.0.1:{self.web_port}"

    def start_web(self) -> None:
        """Run `datadebit web serve` on the chosen port (pages from the chain, the store,
        the catalog and the committee file) and wait until its catalog page answers."""
        if self.web_proc is not None and self.web_proc.poll() is None:
            raise DevStackError("the web app is already running")
        args = _cli(
            "web", "serve", "--rpc", self.rpc_url, "--market", self.market,
            "--store", self.store_url, "--catalog", self.catalog_url,
            "--committee", str(self.committee_file), "--port", str(self.web_port),
        )
        with self.web_log.open("ab") as log:
            self.web_proc = subprocess.Popen(
                args, cwd=ROOT, env=_child_env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.web_proc.poll() is not None:
                raise DevStackError(f"the web app exited:\n{_tail(self.web_log)}")
            try:
                answer = httpx.get(f"{self.web_url}/", timeout=5.0)
                if answer.status_code == 200:
                    return
                last = f"HTTP {answer.status_code}"
            except httpx.TransportError as e:
                last = type(e).__name__
            time.sleep(0.1)
        raise DevStackError(f"the web app did not answer ({last}):\n{_tail(self.web_log)}")

    def stop_web(self) -> None:
        if self.web_proc is not None:
            web, self.web_proc = self.web_proc, None
            stop_process_group(web)

    def stop_gateways(self) -> None:
        self.stop_web()
        if self.catalog_proc is not None:
            catalog, self.catalog_proc = self.catalog_proc, None
            stop_process_group(catalog)
        for gateway in self.gateways.values():
            proc, gateway.proc = gateway.proc, None
            if proc is not None:
                stop_process_group(proc)

    # -- what users and tests need -----------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The CLI's configuration for this stack, with the owner's wallet."""
        return {
            f"{ENV_PREFIX}RPC": self.rpc_url,
            f"{ENV_PREFIX}MARKET": self.market,
            f"{ENV_PREFIX}STORE": self.store_url,
            f"{ENV_PREFIX}COMMITTEE": str(self.committee_file),
            f"{ENV_PREFIX}CATALOG": self.catalog_url,
            **({f"{ENV_PREFIX}AGGREGATOR": self.aggregator} if self.aggregator else {}),
            f"{ENV_PREFIX}PRIVATE_KEY": self.accounts["owner"].private_key,
        }

    def cli_env(self, role: str = "owner") -> dict[str, str]:
        """A full environment for running `datadebit` as `role` against this stack."""
        env = _child_env(self.env)
        env[f"{ENV_PREFIX}PRIVATE_KEY"] = self.accounts[role].private_key
        return env

    def log_tails(self) -> str:
        """Every gateway's log tail, for attaching to a failure message."""
        return "\n".join(
            f"===== gateway {i} ({g.log}) =====\n{_tail(g.log)}" for i, g in self.gateways.items()
        )

    def env_script(self) -> str:
        """What `main` prints and writes to env.sh: exports plus the other roles' keys."""
        lines = [f"export {name}={value}" for name, value in self.env.items()]
        owner = self.accounts["owner"]
        lines[-1] += f"  # owner {owner.address} (anvil dev account {owner.index})"
        for role in ("buyer_a", "buyer_b"):
            account = self.accounts[role]
            label = "buyer " + role.removeprefix("buyer_").upper()
            lines.append(
                f"# {label}: export {ENV_PREFIX}PRIVATE_KEY={account.private_key}"
                f"  # {account.address} (anvil dev account {account.index})"
            )
        if self._web_running:
            lines.append(f"# web app: {self.web_url}")
        return "\n".join(lines) + "\n"

    @property
    def _web_running(self) -> bool:
        return self.web_proc is not None and self.web_proc.poll() is None

    def config_toml(self) -> str:
        """The same settings as a `--config` file (no wallet: keys do not go in config)."""
        values = {"rpc": self.rpc_url, "market": self.market, "store": self.store_url,
                  "committee": str(self.committee_file), "catalog": self.catalog_url,
                  **({"aggregator": self.aggregator} if self.aggregator else {})}
        toml = "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        # a comment, not a key: no `datadebit` command takes the web app's URL
        return toml + (f"# web app: {self.web_url}\n" if self._web_running else "")

    def _write_env_files(self) -> None:
        (self.state_dir / "env.sh").write_text(self.env_script(), encoding="utf-8")
        (self.state_dir / "datadebit.toml").write_text(self.config_toml(), encoding="utf-8")

    def summary(self) -> str:
        """Human-readable description of the running stack (comments, safe to print)."""
        lines = [
            f"# datadebit devstack: anvil, js-ipfs and {self.nodes} gateways "
            f"({self.threshold}-of-{self.nodes}); Ctrl-C stops everything.",
            f"# state directory: {self.state_dir}",
            f"# market deployed by {self.accounts['deployer'].address}",
        ]
        for i, g in self.gateways.items():
            lines.append(f"# gateway {i}: {g.url}  log {g.log}")
        lines.append(f"# catalog: {self.catalog_url}  log {self.catalog_log}")
        if self._web_running:
            lines.append(
                f"# web app: open {self.web_url} in a browser with a wallet on {self.rpc_url} "
                f"(chain 31337; import a dev account below)  log {self.web_log}"
            )
        lines.append(f"# test stablecoin TUSD (6 decimals, permit): {self.stablecoin}; "
                     f"buyers A and B hold {DEV_BUYER_TUSD // TUSD:,} TUSD each "
                     f"(owner create-listing --asset {self.stablecoin} --price 5tusd)")
        lines.append(f"# as a config file: --config {self.state_dir / 'datadebit.toml'}")
        lines.append(f"# as a shell script: source {self.state_dir / 'env.sh'}")
        return "\n".join(lines) + "\n"


def _stop_after(started: Future[str], stop: Callable[[], None], pool: ThreadPoolExecutor) -> None:
    """Stop a server that a worker thread is starting: wait for the start to finish (or
    fail) first, so no daemon is left that came up after the stop."""
    with suppress(Exception):
        started.result()
    pool.shutdown()
    stop()


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    """Unwind into the clean stop; a second Ctrl-C must not interrupt that stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/devstack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="committee size n (default 3)")
    parser.add_argument("--threshold", type=int, default=2, help="threshold t (default 2)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="empty or new directory for all state (default: a new temp dir)")
    parser.add_argument("--block-time", type=float, default=None,
                        help="mine a block every N seconds (default: one block per transaction)")
    parser.add_argument("--poll-interval", type=float, default=0.5,
                        help="gateways' chain polling interval in seconds (default 0.5)")
    parser.add_argument("--anchor-interval", type=float, default=10.0,
                        help="gateways' release-anchoring interval in seconds (default 10)")
    parser.add_argument("--aggregate", action="store_true",
                        help="also deploy an AggregateMarket and run the gateways' aggregation "
                             "(aggregate debits; $DATADEBIT_AGGREGATOR)")
    parser.add_argument("--no-web", action="store_true",
                        help="do not run the web app (`datadebit web serve`)")
    args = parser.parse_args(argv)
    if not 1 <= args.threshold <= args.nodes <= 255:
        parser.error("need 1 <= --threshold <= --nodes <= 255")
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="datadebit-devstack-"))
    # SIGINT too: a shell starting us in the background sets it to "ignore", and Python
    # then never raises KeyboardInterrupt for it.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _stop_on_signal)
    print(f"starting the devstack in {state_dir} ...", file=sys.stderr, flush=True)
    try:
        with DevStack.start(
            state_dir, nodes=args.nodes, threshold=args.threshold, block_time=args.block_time,
            poll_interval=args.poll_interval, anchor_interval=args.anchor_interval,
            web=not args.no_web,
        ) as stack:
            if args.aggregate:
                stack.enable_aggregation()
            sys.stdout.write(stack.summary() + stack.env_script())
            sys.stdout.flush()
            reported: set[int] = set()
            while True:
                time.sleep(1.0)
                for index, gateway in stack.gateways.items():
                    if not gateway.running and index not in reported:
                        reported.add(index)
                        print(f"warning: gateway {index} has exited; see {gateway.log}",
                              file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("devstack stopped", file=sys.stderr)
        return 0
    except (DevStackError, AnvilError, IpfsDaemonError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
