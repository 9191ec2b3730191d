"""Benchmark key release on a real stack: anvil + n `datadebit gateway serve` processes.

For each committee (2-of-3 and 3-of-5 by default) it measures:

- **release latency**: one key release end to end (the buyer's `KeyClient` signs a
  KeyRequest, posts it to every node at once, stops at t valid shares, opens them,
  verifies the proofs, combines, recovers the DEK): p50 / p95 / max;
- **throughput of one worker**: signed key requests per second that node 1 (one uvicorn
  process, one worker) answers, with latency percentiles. Requests are signed before the
  timed window (distinct nonces, valid expiry); the load generator is a small asyncio
  HTTP/1.1 client in this process holding `--connections` keep-alive connections, each
  with one request in flight, so it spends its time on sockets, not on signing. Two
  kinds of load:
  - `re-serve`: every request asks for the same (debit, version) after its first release
    (a buyer fetching again; every check runs, the stored receipt is returned);
  - `first release`: every request asks for a different debit, so each one appends a new
    release to the log with a freshly signed receipt (shares were prepared ahead from the
    chain events, as in production).

Next to requests/s it reports the worker's CPU time per request (user + system, all its
threads, from /proc): what a request costs on a core of its own, much steadier than
requests/s on a shared machine. Before each load it waits until every node is idle (events
indexed, shares prepared).

`--pin` puts the measured worker alone on CPU 1 and this process, anvil and the other
gateways on CPU 0 (children inherit the affinity), so the worker does not compete with
its load generator. Without it everything shares all CPUs.

Usage (the figures in docs/benchmarks.md):
    .venv/bin/python -m scripts.bench_gateway --pin --releases 60 --requests 4000 \
        --first-releases 500 [--connections 8] [--committees 2-of-3,3-of-5]

Writes nothing but its report on stdout (copy the figures into docs/benchmarks.md).
Every answer of the load phase must be 200 with a sealed share, or the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import Committee
from marketplace.committee import (
    KdfStrength,
    PublicCommittee,
    create_committee,
    write_committee,
)
from marketplace.eip712 import Eip712Domain, KeyRequest, sign
from marketplace.keyclient import KeyClient
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import CapsuleContext, make_capsule
from scripts.servers.anvil import start_anvil
from scripts.servers.process import free_port, stop_process_group
from storage.keys import DataKey

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "bench-passphrase"
ETHER = 10**18
CLIENT_CPU, SERVER_CPU = 0, 1


@dataclass(frozen=True)
class Load:
    """One load phase's outcome; `cpu_seconds` is what the worker process spent on it."""

    requests: int
    seconds: float
    cpu_seconds: float
    latencies_ms: list[float]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        """The worker's CPU time (user + system, all threads) per request: what it would
        take per request on a core of its own, much less sensitive to other load than
        requests/s."""
        return self.cpu_seconds / self.requests * 1e6


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# ---------------------------------------------------------------------------- servers


@contextmanager
def gateways(
    rpc: str, market: str, folder: Path, n: int, *, pin: bool
) -> Iterator[tuple[dict[int, str], dict[int, int]]]:
    """Start n gateway processes (node 1 alone on SERVER_CPU with `pin`); yield
    (index -> URL, index -> process id)."""
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    urls = {}
    env = {**os.environ, "DATADEBIT_NODE_PASSPHRASE": PASSPHRASE}
    try:
        for i in range(1, n + 1):
            port = free_port()
            urls[i] = f"http://127.0.0.1:{port}"
            command = [
                sys.executable, "-c", "from marketplace.cli.main import main; main()",
                "gateway", "serve",
                "--node-key", str(folder / f"node-{i}.json"), "--rpc", rpc, "--market", market,
                "--state", f"sqlite:///{folder}/gw-{i}.db", "--port", str(port),
                "--poll-interval", "0.2", "--head-ttl", "0.2",
            ]
            # a file, not a pipe: a pipe nobody reads would block a node that logs a lot
            logs.append((folder / f"gw-{i}.log").open("wb"))
            mine = os.sched_getaffinity(0)
            if pin and i == 1:  # the child inherits this process's affinity at fork
                os.sched_setaffinity(0, {SERVER_CPU})
            try:
                procs.append(subprocess.Popen(
                    command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                    stderr=logs[-1], start_new_session=True,
                ))
            finally:
                os.sched_setaffinity(0, mine)
        for i, url in urls.items():
            _wait_healthy(url, procs[i - 1], folder / f"gw-{i}.log")
        yield urls, {i: proc.pid for i, proc in enumerate(procs, start=1)}
    finally:
        for proc in procs:
            stop_process_group(proc)
        for handle in logs:
            handle.close()


def _wait_healthy(
    url: str, proc: subprocess.Popen[bytes], log_file: Path, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = log_file.read_text(errors="replace")
            sys.exit(f"gateway at {url} exited: {err[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"gateway at {url} not healthy after {timeout}s")


def _wait_idle(url: str, pid: int, timeout: float = 300.0) -> None:
    """Wait until the node has indexed every event (lag 0) and prepared its shares: it
    has used under 5% of a CPU for a second (indexing commits the cursor before shares
    are prepared, so lag alone does not tell)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/v1/health", timeout=5).json().get("lag") == 0:
            before = process_cpu_seconds(pid)
            time.sleep(1.0)
            if process_cpu_seconds(pid) - before < 0.05:
                return
        else:
            time.sleep(0.2)
    sys.exit(f"gateway at {url} still busy after {timeout}s")


def deployed_market(
    w3: Web3, folder: Path, n: int, t: int, accounts: Sequence[LocalAccount]
) -> tuple[PublicCommittee, MarketClient]:
    """A fresh t-of-n committee's files in `folder` and a market deployed for it by
    `accounts[0]`; every account and every node's address funded."""
    public, key_files = create_committee(
        n, t, PASSPHRASE, strength=KdfStrength.INTERACTIVE, urls=None
    )
    write_committee(folder, public, key_files)
    dev = DevChain(w3)
    for address in (*(a.address for a in accounts), *(node.address for node in public.nodes)):
        dev.fund(address, 1000 * ETHER)
    committee = Committee(
        committee_key=public.committee_key.to_bytes(), threshold=t,
        nodes=tuple(node.address for node in public.nodes),
        share_keys=tuple(node.share_key.to_bytes() for node in public.nodes),
    )
    node_accounts = [key_file.unlock(PASSPHRASE).account for key_file in key_files]
    return public, MarketClient.deploy_dealt(w3, accounts[0], committee, node_accounts).value


# ---------------------------------------------------------------------------- load


def _http_post(host: str, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _connection(
    host: str, port: int, requests: list[bytes], latencies: list[float], answers: list[bytes],
) -> None:
    """One keep-alive connection: send a request, read its whole answer, repeat."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while requests:
            raw = requests.pop()
            start = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            latencies.append((time.perf_counter() - start) * 1000)
            status = head.split(b" ", 2)[1]
            if status != b"200":
                raise SystemExit(f"key request answered {status.decode()}: {body[:300]!r}")
            answers.append(body)
    finally:
        writer.close()


def post_load(url: str, pid: int, bodies: Sequence[bytes], connections: int) -> Load:
    """POST every body to `url`/v1/keys over `connections` keep-alive connections;
    `pid` is the serving process, whose CPU time is measured."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    queue = [_http_post(f"{host}:{port}", "/v1/keys", b) for b in reversed(bodies)]
    latencies: list[float] = []
    answers: list[bytes] = []

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(
            *(_connection(host, port, queue, latencies, answers) for _ in range(connections))
        )
        return time.perf_counter() - start

    cpu_before = process_cpu_seconds(pid)
    seconds = asyncio.run(run())
    cpu_seconds = process_cpu_seconds(pid) - cpu_before
    for answer in answers:  # outside the timed window: each answer is a complete release
        if "sealedShare" not in json.loads(answer):
            sys.exit(f"key request answer without a sealed share: {answer[:300]!r}")
    return Load(len(answers), seconds, cpu_seconds, sorted(latencies))


def signed_bodies(
    buyer: LocalAccount, domain: Eip712Domain, debits: Sequence[int], version: int
) -> list[bytes]:
    """One pre-signed `POST /v1/keys` body per debit id given (fresh nonce each)."""
    expiry = int(time.time()) + 500
    bodies = []
    for debit in debits:
        request = KeyRequest(debit, version, expiry, os.urandom(32))
        bodies.append(json.dumps({
            "request": request.to_message(), "signature": "0x" + sign(buyer, domain, request).hex()
        }).encode())
    return bodies


# ---------------------------------------------------------------------------- one committee


def bench(n: int, t: int, args: argparse.Namespace) -> dict[str, float]:
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        rpc = stack.enter_context(start_anvil())
        w3 = connect(rpc)
        deployer, owner, buyer = (Account.create() for _ in range(3))
        public, market = deployed_market(w3, folder, n, t, [deployer, owner, buyer])
        domain = Eip712Domain(market.chain_id, market.address)
        buyer_secret = BuyerSecretKey.from_account(buyer, domain)
        listing = market.create_listing(
            owner, price_per_period=10**15, period_seconds=86_400, auto_approve=True
        ).value
        cid = bytes.fromhex("01551220") + os.urandom(32)
        ctx = CapsuleContext(market.chain_id, market.address, listing, 1, cid)
        data_key = DataKey.generate()
        capsule = make_capsule(data_key, ctx, public.committee_key)
        market.publish_version(owner, listing, cid, capsule.to_bytes())

        def open_debit() -> int:
            return market.request_debit(
                buyer, listing, periods=1, buyer_key=buyer_secret.public_key().key
            ).value

        debit = open_debit()
        fresh_debits = [open_debit() for _ in range(args.first_releases)]

        urls, pids = stack.enter_context(
            gateways(rpc, market.address, folder, n, pin=args.pin)
        )
        pid = pids[1]
        for i, url in urls.items():  # a node still preparing would slow the releases timed
            _wait_idle(url, pids[i])
        clients = {
            i: stack.enter_context(httpx.Client(base_url=u, timeout=10)) for i, u in urls.items()
        }
        client = KeyClient(public.keys(), domain, clients)
        client.fetch(buyer, buyer_secret, debit, ctx, capsule)  # warm-up: first release
        latencies = []
        for _ in range(args.releases):
            start = time.perf_counter()
            fetched = client.fetch(buyer, buyer_secret, debit, ctx, capsule)
            latencies.append((time.perf_counter() - start) * 1000)
            if fetched.data_key != data_key:
                sys.exit("benchmark recovered a wrong data key")
        latencies.sort()

        def load(debits: Sequence[int]) -> Load:
            bodies = signed_bodies(buyer, domain, debits, 1)
            return post_load(urls[1], pid, bodies, args.connections)

        load([debit] * 200)  # warm-up
        reserve = load([debit] * args.requests)
        first = load(fresh_debits)
    return {
        "p50_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 0.95),
        "max_ms": latencies[-1],
        "reserve_rps": reserve.per_second,
        "reserve_cpu": reserve.cpu_us_per_request,
        "first_cpu": first.cpu_us_per_request,
        "reserve_p50": percentile(reserve.latencies_ms, 0.5),
        "reserve_p99": percentile(reserve.latencies_ms, 0.99),
        "first_rps": first.per_second,
        "first_p50": percentile(first.latencies_ms, 0.5),
        "first_p99": percentile(first.latencies_ms, 0.99),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=60, help="end-to-end releases timed")
    parser.add_argument("--requests", type=int, default=2000, help="re-serve requests timed")
    parser.add_argument(
        "--first-releases", type=int, default=500, help="distinct debits for first releases"
    )
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--committees", default="2-of-3,3-of-5", help="t-of-n, comma-separated")
    parser.add_argument(
        "--pin", action="store_true",
        help=f"measured worker alone on CPU {SERVER_CPU}, everything else on CPU {CLIENT_CPU}",
    )
    args = parser.parse_args()
    if args.pin:
        if not {CLIENT_CPU, SERVER_CPU} <= os.sched_getaffinity(0):
            sys.exit(f"--pin needs CPUs {CLIENT_CPU} and {SERVER_CPU}")
        os.sched_setaffinity(0, {CLIENT_CPU})  # anvil and the other gateways inherit it
    committees = []
    for spec in args.committees.split(","):
        t, _, n = spec.partition("-of-")
        committees.append((int(n), int(t)))
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}; load average {os.getloadavg()}")
    print(f"pinned: {args.pin}; {args.connections} connections; "
          f"{args.requests} re-serve + {args.first_releases} first-release requests")
    print("| committee | release p50 | p95 | max | re-serve req/s | p50 | p99 | CPU/req "
          "| first-release req/s | p50 | p99 | CPU/req |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, t in committees:
        r = bench(n, t, args)
        print(
            f"| {t}-of-{n} | {r['p50_ms']:.1f} ms | {r['p95_ms']:.1f} ms | {r['max_ms']:.1f} ms "
            f"| {r['reserve_rps']:,.0f} | {r['reserve_p50']:.1f} ms | {r['reserve_p99']:.1f} ms "
            f"| {r['reserve_cpu']:.0f} us "
            f"| {r['first_rps']:,.0f} | {r['first_p50']:.1f} ms | {r['first_p99']:.1f} ms "
            f"| {r['first_cpu']:.0f} us |",
            flush=True,
        )
    print(f"load average at the end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
