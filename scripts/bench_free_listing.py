"""Benchmark a gateway under a free-listing flood: does an honest buyer still get a fast
first release while an attacker opens thousands of zero-price debits on a listing with
many versions?

The attack (issue 9, item 4): every auto-approved debit makes a node prepare shares for
the listing's versions ahead of time. On a free listing debits cost only gas, so N debits
on V versions cost each node N x V `isEntitled` calls, sealed shares and rows; before the
hardening this ran inside the watcher's lock, and an honest buyer's first request (which
needs the index) waited behind it.

Stack: a real anvil and node 1 of a 2-of-3 committee as a `datadebit gateway serve`
process (node 1 is what is measured; a first release needs only that node's answer).
The attacker's debits are sent as raw signed transactions (no receipt waits) from
another process while, in another, an honest buyer opens a debit on a paid listing and asks node 1
for its first release, again and again. Reported: the honest first releases' latency
(p50 / p95 / max: the time node 1 took to answer the POSTs after the debit's receipt,
retries of `not_entitled`/`unknown_debit` summed; one kept-alive connection), how long
the node took to index the flood, its CPU time, and the prepared-share rows left in its
state.

Usage (the figures in docs/benchmarks.md):
    .venv/bin/python -m scripts.bench_free_listing --debits 10000 --versions 10 --pin

Run the same file from a checkout of older code (`cwd` decides which `marketplace` the
gateway process imports) to compare back to back.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import nacl.bindings as sodium
from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak

from marketplace.chain.market import MarketClient
from marketplace.chain.provider import connect
from marketplace.eip712 import Eip712Domain, KeyRequest, sign
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import CapsuleContext, make_capsule
from scripts.bench_gateway import CLIENT_CPU, SERVER_CPU, deployed_market, gateways, percentile
from scripts.bench_gateway import process_cpu_seconds as cpu_seconds
from scripts.servers.anvil import start_anvil
from storage.keys import DataKey

ETHER = 10**18
#: `chain_unavailable` answers to honest requests (retried): a node that read isEntitled
#: at a head older than the debit's block got a revert and called it a chain failure.
STALE_HEAD_REFUSALS: list[int] = []
_REQUEST_DEBIT = keccak(b"requestDebit(uint256,uint32,bytes32,bytes32)")[:4]


def flood(rpc: str, market: str, attacker_key: bytes, listing: int, debits: int) -> None:
    """`debits` zero-price `requestDebit` transactions, signed locally and sent raw, at
most about 50 waiting in the mempool at a time."""
    w3 = connect(rpc)
    attacker = Account.from_key(attacker_key)
    nonce = w3.eth.get_transaction_count(attacker.address)
    chain_id = w3.eth.chain_id
    gas_price = w3.eth.gas_price
    for i in range(debits):
        key = sodium.crypto_scalarmult_base(os.urandom(32))
        data = _REQUEST_DEBIT + encode(
            ["uint256", "uint32", "bytes32", "bytes32"], [listing, 1, key, bytes(32)]
        )
        tx = {"to": market, "data": data, "value": 0, "gas": 150_000, "nonce": nonce + i,
              "chainId": chain_id, "gasPrice": gas_price}
        w3.eth.send_raw_transaction(attacker.sign_transaction(tx).raw_transaction)
        # as fast as anvil mines, but no faster: a deep mempool would delay the honest
        # buyer's own transaction, not the gateway
        while i % 25 == 0 and w3.eth.get_transaction_count(attacker.address) < nonce + i - 25:
            time.sleep(0.005)


def first_release_ms(
    node: httpx.Client, market: MarketClient, buyer: LocalAccount, secret: BuyerSecretKey,
    domain: Eip712Domain, listing: int,
) -> float:
    """Open a debit, then time node 1's first release of version 1 to it (the request is
    signed before the clock starts: the wallet's time is not the node's)."""
    debit = market.request_debit(
        buyer, listing, periods=1, buyer_key=secret.public_key().key
    ).value
    waited = 0.0
    while True:
        request = KeyRequest(debit, 1, int(time.time()) + 120, os.urandom(32))
        body = json.dumps({"request": request.to_message(),
                           "signature": "0x" + sign(buyer, domain, request).hex()})
        start = time.perf_counter()
        answer = node.post("/v1/keys", content=body,
                           headers={"content-type": "application/json"})
        waited += time.perf_counter() - start
        if os.environ.get("BENCH_DEBUG"):
            print(f"{waited * 1000:.1f} ms {answer.text[:120]}")
        if answer.status_code == 200:
            return waited * 1000
        code = answer.json().get("code")
        if code == "chain_unavailable":  # before the hardening: a head older than the debit
            STALE_HEAD_REFUSALS.append(1)
        elif code not in ("not_entitled", "unknown_debit"):
            sys.exit(f"honest request refused: {answer.text[:300]}")
        if waited > 60:
            sys.exit("honest request not served within 60 s")


def _show_log_on_failure(log_file: Path) -> None:
    """On the way out of a failed run, the node's last log lines (before its folder goes)."""
    if sys.exc_info()[0] is not None and log_file.exists():
        print(log_file.read_text(errors="replace")[-3000:], file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debits", type=int, default=10_000, help="attacker's free debits")
    parser.add_argument("--versions", type=int, default=10, help="versions of the free listing")
    parser.add_argument("--pin", action="store_true",
                        help=f"node 1 alone on CPU {SERVER_CPU}, everything else on {CLIENT_CPU}")
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {CLIENT_CPU})
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}; load average {os.getloadavg()}")
    print(f"code: {Path.cwd()}; {args.debits} free debits x {args.versions} versions; "
          f"pinned: {args.pin}")
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        rpc = stack.enter_context(start_anvil())
        w3 = connect(rpc)
        deployer, owner, buyer, attacker = (Account.create() for _ in range(4))
        public, market = deployed_market(w3, folder, 3, 2, [deployer, owner, buyer, attacker])
        domain = Eip712Domain(market.chain_id, market.address)
        secret = BuyerSecretKey.from_account(buyer, domain)
        free = market.create_listing(
            attacker, price_per_period=0, period_seconds=86_400, auto_approve=True
        ).value
        paid = market.create_listing(
            owner, price_per_period=10**15, period_seconds=86_400, auto_approve=True
        ).value
        for listing, versions in ((free, args.versions), (paid, 1)):
            who = attacker if listing == free else owner
            for version in range(1, versions + 1):
                cid = bytes.fromhex("01551220") + os.urandom(32)
                ctx = CapsuleContext(market.chain_id, market.address, listing, version, cid)
                capsule = make_capsule(DataKey.generate(), ctx, public.committee_key)
                market.publish_version(who, listing, cid, capsule.to_bytes())

        urls, pids = stack.enter_context(
            gateways(rpc, market.address, folder, 1, pin=args.pin)
        )
        pid = pids[1]
        url = urls[1]
        node = stack.enter_context(httpx.Client(base_url=url, timeout=60))
        first_release_ms(node, market, buyer, secret, domain, paid)  # warm-up
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        # its own process: the attacker's signing must not share this client's GIL
        attack = multiprocessing.get_context("spawn").Process(
            target=flood, args=(rpc, market.address, attacker.key, free, args.debits),
            daemon=True,
        )
        attack.start()
        honest: list[float] = []
        rpc_ms: list[float] = []  # what one chain read costs meanwhile: the node makes several
        stack.callback(_show_log_on_failure, folder / "gw-1.log")
        while attack.is_alive() or len(honest) < 20:
            honest.append(first_release_ms(node, market, buyer, secret, domain, paid))
            start = time.perf_counter()
            httpx.post(rpc, json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"})
            rpc_ms.append((time.perf_counter() - start) * 1000)
        flood_seconds = time.perf_counter() - started
        while True:  # the node catches up with the flood
            lag = httpx.get(f"{url}/v1/health", timeout=30).json().get("lag")
            if lag == 0:
                break
            time.sleep(0.2)
        after = [first_release_ms(node, market, buyer, secret, domain, paid) for _ in range(10)]
        indexed_seconds = time.perf_counter() - started
        if os.environ.get("BENCH_DEBUG"):
            for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
                if "duration_seconds_bucket" in line and "released" in line:
                    print(line)
        time.sleep(3)  # let background preparation finish before counting rows
        cpu_used = cpu_seconds(pid) - cpu_before
        with sqlite3.connect(folder / "gw-1.db") as db:
            rows = db.execute("SELECT COUNT(*) FROM prepared").fetchone()[0]
            releases = db.execute("SELECT COUNT(*) FROM releases").fetchone()[0]
    honest.sort()
    rpc_ms.sort()
    print(json.dumps({"honest_first_releases": len(honest), "releases_logged": releases,
                      "chain_unavailable_answers": len(STALE_HEAD_REFUSALS),
                      "eth_blockNumber_ms_during_flood": {
                          "p50": round(statistics.median(rpc_ms), 1),
                          "p95": round(percentile(rpc_ms, 0.95), 1)}}))
    print("| code | honest first releases during the flood | p50 | p95 | max | after the flood "
          "p95 | flood sent in | indexed in | node CPU | prepared rows |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {Path.cwd().name} | {len(honest)} | {statistics.median(honest):.1f} ms "
          f"| {percentile(honest, 0.95):.1f} ms | {honest[-1]:.1f} ms "
          f"| {percentile(sorted(after), 0.95):.1f} ms | {flood_seconds:.0f} s "
          f"| {indexed_seconds:.0f} s | {cpu_used:.0f} s | {rows:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
