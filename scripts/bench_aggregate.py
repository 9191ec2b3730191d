"""Benchmark of aggregate debits (issue 14, DESIGN §8): owners x a histogram, per step.

What it measures, per committee (default 2-of-3 and 3-of-5, 1,000 owners x 1,000 bins):
- owner: encode + Shamir-share + seal one contribution (time, and bundle bytes against the
  8·d·n + constant budget);
- each node after the deadline: open its shares of every bundle, deal round 1, open the
  round-1 boxes it received, compute and encode its round-2 opening, decide, and its
  partial sum (CPU time per step, and the peak of Python-tracked memory, numpy included);
- the buyer: open the t partials, combine and decode.

The per-node steps run one node after the other in this process (2 shared cores): a node's
time is its own CPU work, without the chain's round windows or the network, which a
deployment adds (the round cut-offs are `roundSeconds` apart; the end-to-end figure over
real gateways on anvil is `--gateways`, once they run aggregation). Gas per contribution is
in docs/gas-report.md (scripts/gas_report.py).

    .venv/bin/python -m scripts.bench_aggregate [--owners 1000] [--bins 1000]
        [--committees 2-of-3,3-of-5]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import nacl.public
import numpy as np

from marketplace.aggregate import (
    Aggregation,
    ContributionContext,
    Query,
    calibrate,
    combine,
    deal_round1,
    decide,
    decode,
    decode_opening,
    dimension,
    encode,
    encode_opening,
    make_opening,
    open_round1,
    open_share,
    partial,
    seal_contribution,
)
from marketplace.aggregate.session import Partial, open_partial, seal_partial

CHAIN_ID = 31337
AGGREGATOR = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
DEBIT_ID = 1
SEED = bytes(range(32))
T = TypeVar("T")


@dataclass
class NodeFigures:
    open_bundles: float = 0.0
    deal_round1: float = 0.0
    open_round1: float = 0.0
    opening: float = 0.0
    decide: float = 0.0
    partial: float = 0.0
    peak_mib: float = 0.0

    @property
    def total(self) -> float:
        return (self.open_bundles + self.deal_round1 + self.open_round1 + self.opening
                + self.decide + self.partial)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.process_time()
    value = fn()
    return value, time.process_time() - start


def run(owners: int, bins: int, n: int, t: int) -> None:
    query = Query(stat="histogram", field="x", epsilon=1.0, delta=1e-6,
                  bins=tuple(range(bins + 1)))
    d = dimension(query)
    keys = [nacl.public.PrivateKey.generate() for _ in range(n)]
    public = [bytes(k.public_key) for k in keys]
    buyer = nacl.public.PrivateKey.generate()
    addresses = tuple(i.to_bytes(20, "big") for i in range(1, owners + 1))
    # test data only (which bin each owner is in): not a secret, so a seeded generator
    values = np.random.default_rng(7).integers(0, bins, size=owners)

    # -- owners
    bundles, seconds = [], []
    for i, value in enumerate(values):
        context = ContributionContext(CHAIN_ID, AGGREGATOR, DEBIT_ID, addresses[i], d)
        start = time.perf_counter()
        bundles.append(seal_contribution(context, encode(query, float(value)), public, t))
        seconds.append(time.perf_counter() - start)
    size = statistics.median(len(b) for b in bundles)
    print(f"\n{t}-of-{n}, {owners:,} owners x {bins:,}-bin histogram (d = {d})")
    print(f"  owner encode+share+seal: median {statistics.median(seconds) * 1e3:.2f} ms, "
          f"p95 {sorted(seconds)[int(0.95 * len(seconds))] * 1e3:.2f} ms; bundle "
          f"{size:,.0f} bytes (budget 8*d*n = {8 * d * n:,} + constant)")

    plan = calibrate(query, n, t)
    agg = Aggregation(CHAIN_ID, AGGREGATOR, DEBIT_ID, query, n, t, addresses, plan)
    figures = {i: NodeFigures() for i in range(1, n + 1)}
    shares, round1 = {}, {}
    for i in range(1, n + 1):
        tracemalloc.start()
        f = figures[i]
        rows, f.open_bundles = timed(lambda i=i: np.stack([
            open_share(b, i, keys[i - 1],
                       ContributionContext(CHAIN_ID, AGGREGATOR, DEBIT_ID, addresses[k], d))
            for k, b in enumerate(bundles)]))
        shares[i] = rows
        round1[i], f.deal_round1 = timed(lambda i=i: deal_round1(agg, i, public))
        f.peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    received, openings = {}, {}
    for i in range(1, n + 1):
        tracemalloc.start()
        f = figures[i]
        received[i], f.open_round1 = timed(lambda i=i: {
            dealer: open_round1(agg, round1[dealer], dealer, i, keys[i - 1])
            for dealer in round1})
        payload, f.opening = timed(lambda i=i: encode_opening(
            agg, i, make_opening(agg, SEED, shares[i], [], received[i])))
        openings[i] = decode_opening(agg, payload, i)
        f.peak_mib = max(f.peak_mib, tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
    sealed = {}
    for i in range(1, n + 1):
        f = figures[i]
        valid, f.decide = timed(lambda: decide(agg, openings))
        values_i, f.partial = timed(lambda i=i, valid=valid: partial(
            agg, shares[i], valid, received[i]))
        counted = int(valid.sum())
        sealed[i] = seal_partial(agg, Partial(i, values_i, counted, n), bytes(buyer.public_key))
    for i, f in figures.items():
        print(f"  node {i}: {f.total:.3f} s CPU (open bundles {f.open_bundles:.3f}, deal "
              f"round 1 {f.deal_round1:.3f}, open round 1 {f.open_round1:.3f}, opening "
              f"{f.opening:.3f}, decide {f.decide:.3f}, partial {f.partial:.3f}); peak "
              f"{f.peak_mib:.1f} MiB traced")

    def buyer_side() -> object:
        partials = {i: open_partial(agg, sealed[i], i, buyer).values for i in range(1, t + 1)}
        return decode(query, combine(partials, t), owners, plan.total_sigma(n))

    result, buyer_seconds = timed(buyer_side)
    truth = np.bincount(values, minlength=bins)
    error = np.asarray(result.values) - truth  # type: ignore[attr-defined]
    print(f"  buyer open {t} partials + combine + decode: {buyer_seconds * 1e3:.1f} ms; "
          f"noise sigma {plan.total_sigma(n):.2f} per cell, observed error sd "
          f"{float(error.std()):.2f}")
    slowest = max(f.total for f in figures.values())
    print(f"  after the deadline, CPU on the critical path: {slowest:.3f} s per node "
          f"(+ {buyer_seconds:.3f} s buyer), plus two round windows and the chain's blocks")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=1000)
    parser.add_argument("--bins", type=int, default=1000)
    parser.add_argument("--committees", default="2-of-3,3-of-5")
    args = parser.parse_args(argv)
    for spec in args.committees.split(","):
        t, n = (int(x) for x in spec.split("-of-"))
        run(args.owners, args.bins, n, t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
