"""Benchmark the auditor on a synthetic market on the embedded defaults (LocalNetwork).

    .venv/bin/python -m scripts.bench_audit [--debits 200] [--versions 2] [--listings 4]
                                            [--buyers 10] [--size 4096] [--repeat 3]

Builds `--listings` auto-approved listings with `--versions` versions each (random
ciphertext of `--size` bytes in a LocalStore), `--debits` debits spread over them and
`--buyers` wallets, and has every node of the 2-of-3 committee release every
(debit, version) pair (releases = debits x versions x 3), anchored in batches. Then times
`Auditor.run()` (best of --repeat) and prints the report's counts. Never used by tests.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

from marketplace.audit.auditor import Auditor
from marketplace.audit.release_log import HttpReleaseLog, ReleaseLogSource
from marketplace.eip712 import KeyRequest, sign
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import CapsuleContext, make_capsule
from marketplace.localnet import LocalNetwork
from storage.keys import DataKey

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
DAY = 86_400


def build(folder: Path, args: argparse.Namespace) -> LocalNetwork:
    net = LocalNetwork.start(folder / "store")
    market = net.market
    owner = net.account()
    listings = [
        market.create_listing(owner, price_per_period=10**12, period_seconds=DAY,
                              auto_approve=True).value
        for _ in range(args.listings)
    ]
    for listing_id in listings:
        for version in range(1, args.versions + 1):
            cid = net.store.put(io.BytesIO(os.urandom(args.size)))
            ctx = CapsuleContext(market.chain_id, market.address, listing_id, version, cid.binary)
            capsule = make_capsule(DataKey.generate(), ctx, net.dealt.keys.committee_key)
            market.publish_version(owner, listing_id, cid.binary, capsule.to_bytes())
    buyers = [net.account(ether=100) for _ in range(args.buyers)]
    keys = {b.address: BuyerSecretKey.from_account(b, net.domain).public_key().key for b in buyers}
    debits = []
    for n in range(args.debits):
        buyer = buyers[n % len(buyers)]
        listing_id = listings[n % len(listings)]
        debit = market.request_debit(buyer, listing_id, periods=30,
                                     buyer_key=keys[buyer.address]).value
        debits.append((buyer, debit))
    net.sync()
    for buyer, debit in debits:
        for version in range(1, args.versions + 1):
            request = KeyRequest(debit, version, int(time.time()) + 60, os.urandom(32))
            signature = sign(buyer, net.domain, request)
            for gateway in net.gateways.values():
                gateway.releaser.handle(request, signature)
        if len(debits) > 10 and debit % (len(debits) // 10) == 0:
            net.sync()  # anchor in about ten batches per node, as a running node would
    net.sync()
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debits", type=int, default=200)
    parser.add_argument("--versions", type=int, default=2)
    parser.add_argument("--listings", type=int, default=4)
    parser.add_argument("--buyers", type=int, default=10)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-block-range", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="datadebit-bench-audit-") as folder:
        started = time.perf_counter()
        net = build(Path(folder), args)
        print(f"built in {time.perf_counter() - started:.1f} s; "
              f"head block {net.market.w3.eth.block_number}")
        logs: dict[int, ReleaseLogSource] = {
            i: HttpReleaseLog(i, client) for i, client in net.clients.items()
        }
        auditor = Auditor(net.market, net.store, logs, max_block_range=args.max_block_range)
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            report = auditor.run()
            best = min(best, time.perf_counter() - t0)
        for check in report.checks:
            print(f"  {check.name:22} checked {check.checked:6} failed {check.failed} "
                  f"pending {check.pending}")
        print(f"clean={report.clean}; audit best of {args.repeat}: {best:.2f} s "
              f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
        net.close()


if __name__ == "__main__":
    main()
