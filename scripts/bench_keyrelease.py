"""Benchmark key release on a real stack: anvil + n gateway processes on loopback.

Measures, for 2-of-3 and 3-of-5 committees:
- one key release end to end (sign a KeyRequest, POST to every node at once over HTTP,
  stop at t valid shares, open + verify proofs, combine, recover the DEK): p50 / p95;
- signed key requests per second that one gateway worker (one uvicorn process) serves,
  with several client threads in this process keeping it busy.

Usage: .venv/bin/python -m scripts.bench_keyrelease [--releases 200] [--requests 2000]
Writes nothing but its report on stdout (copy the figures into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from eth_account import Account

from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import Committee
from marketplace.committee import KdfStrength, create_committee, write_committee
from marketplace.eip712 import Eip712Domain, KeyRequest, sign
from marketplace.keyclient import KeyClient
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import CapsuleContext, make_capsule
from scripts.servers.anvil import free_port, start_anvil, stop_process_group
from storage.keys import DataKey

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "bench-passphrase"
ETHER = 10**18


@contextmanager
def gateways(rpc: str, market: str, folder: Path, n: int) -> Iterator[dict[int, str]]:
    """Start n `datadebit gateway serve` processes; yield index -> base URL."""
    procs = []
    urls = {}
    env = {**os.environ, "DATADEBIT_NODE_PASSPHRASE": PASSPHRASE}
    try:
        for i in range(1, n + 1):
            port = free_port()
            urls[i] = f"http://127.0.0.1:{port}"
            procs.append(subprocess.Popen(
                [str(ROOT / ".venv" / "bin" / "datadebit"), "gateway", "serve",
                 "--node-key", str(folder / f"node-{i}.json"), "--rpc", rpc, "--market", market,
                 "--state", f"sqlite:///{folder}/gw-{i}.db", "--port", str(port),
                 "--poll-interval", "0.2", "--head-ttl", "0.2"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True,
            ))
        for i, url in urls.items():
            _wait_healthy(url, procs[i - 1])
        yield urls
    finally:
        for proc in procs:
            stop_process_group(proc)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            sys.exit(f"gateway at {url} exited: {err[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"gateway at {url} not healthy after {timeout}s")


def bench(n: int, t: int, releases: int, requests: int) -> dict[str, float]:
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        rpc = stack.enter_context(start_anvil())
        w3 = connect(rpc)
        dev = DevChain(w3)
        public, key_files = create_committee(
            n, t, PASSPHRASE, strength=KdfStrength.INTERACTIVE, urls=None
        )
        write_committee(folder, public, key_files)
        deployer, owner, buyer = (Account.create() for _ in range(3))
        for address in (deployer.address, owner.address, buyer.address,
                        *(node.address for node in public.nodes)):
            dev.fund(address, 10 * ETHER)
        committee = Committee(
            committee_key=public.committee_key.to_bytes(), threshold=t,
            nodes=tuple(node.address for node in public.nodes),
            share_keys=tuple(node.share_key.to_bytes() for node in public.nodes),
        )
        market = MarketClient.deploy(w3, deployer, committee).value
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
        debit = market.request_debit(
            buyer, listing, periods=1, buyer_key=buyer_secret.public_key().key
        ).value

        urls = stack.enter_context(gateways(rpc, market.address, folder, n))
        clients = {
            i: stack.enter_context(httpx.Client(base_url=u, timeout=10)) for i, u in urls.items()
        }
        client = KeyClient(public.keys(), domain, clients)
        client.fetch(buyer, buyer_secret, debit, ctx, capsule)  # warm-up: first release
        latencies = []
        for _ in range(releases):
            start = time.perf_counter()
            fetched = client.fetch(buyer, buyer_secret, debit, ctx, capsule)
            latencies.append((time.perf_counter() - start) * 1000)
            if fetched.data_key != data_key:
                sys.exit("benchmark recovered a wrong data key")

        bodies = []
        for _ in range(requests):
            request = KeyRequest(debit, 1, int(time.time()) + 500, os.urandom(32))
            bodies.append({"request": request.to_message(),
                           "signature": "0x" + sign(buyer, domain, request).hex()})
        one = clients[1]
        def post(body: dict[str, object]) -> int:
            return one.post("/v1/keys", json=body).status_code
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(post, bodies))
        elapsed = time.perf_counter() - start
        if any(s != 200 for s in statuses):
            sys.exit(f"{sum(s != 200 for s in statuses)} key requests failed during the load")
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies),
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
        "max_ms": latencies[-1],
        "requests_per_s": requests / elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}")
    print("| committee | release p50 (ms) | release p95 (ms) | max (ms) "
          "| signed requests/s, 1 worker |")
    print("|---|---|---|---|---|")
    for n, t in ((3, 2), (5, 3)):
        r = bench(n, t, args.releases, args.requests)
        print(f"| {t}-of-{n} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['max_ms']:.1f} "
              f"| {r['requests_per_s']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
