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
        [--committees 2-of-3,3-of-5] [--e2e]

`--e2e` also runs the whole flow on anvil with n gateway services behind real HTTP servers
(uvicorn threads in this process, trusted-dealer keys for speed: aggregation does not use
the committee secret), the owners' agents of the application layer, and the buyer's
`result` over HTTP: it times, from the first block after the deadline to the decoded
answer, the rounds on chain, the content-store reads and every node's work, and reports
the gas of the contributions.
"""

from __future__ import annotations

import argparse
import statistics
import threading
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


def e2e(owners: int, bins: int, n: int, t: int) -> None:
    """The flow over real gateways on anvil; see the module docstring."""
    import tempfile  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415
    from eth_account import Account  # noqa: PLC0415

    from marketplace.aggregate.query_document import CohortDocument  # noqa: PLC0415
    from marketplace.app.aggregate import (  # noqa: PLC0415
        AgentPolicy,
        AggregateBuyer,
        CohortApp,
        OwnerAgent,
        PartialsClient,
        ResultNotReady,
    )
    from marketplace.chain.aggregate import AggregateClient  # noqa: PLC0415
    from marketplace.chain.market import MarketClient  # noqa: PLC0415
    from marketplace.chain.provider import DevChain, connect  # noqa: PLC0415
    from marketplace.chain.types import Committee  # noqa: PLC0415
    from marketplace.committee import NodeKey  # noqa: PLC0415
    from marketplace.documents import FieldSpec  # noqa: PLC0415
    from marketplace.gateway.aggregate_state import AggregateState  # noqa: PLC0415
    from marketplace.gateway.aggregation import AggregationService  # noqa: PLC0415
    from marketplace.gateway.api import create_app  # noqa: PLC0415
    from marketplace.gateway.database import SqliteDatabase  # noqa: PLC0415
    from marketplace.gateway.service import GatewayService, Timing  # noqa: PLC0415
    from marketplace.gateway.state import GatewayState  # noqa: PLC0415
    from marketplace.keyclient import gateway_client  # noqa: PLC0415
    from marketplace.keyrelease.dealer import deal  # noqa: PLC0415
    from scripts.servers.anvil import start_anvil  # noqa: PLC0415
    from scripts.servers.process import free_port  # noqa: PLC0415
    from storage.stores.local import LocalStore  # noqa: PLC0415

    query = Query(stat="histogram", field="x", epsilon=1.0, delta=1e-6,
                  bins=tuple(range(bins + 1)))
    values = np.random.default_rng(7).integers(0, bins, size=owners)  # test data only
    with tempfile.TemporaryDirectory() as folder, start_anvil() as rpc:
        w3, work = connect(rpc), Path(folder)
        dev = DevChain(w3)
        deployer, buyer_wallet = Account.create(), Account.create()
        nodes = [Account.create() for _ in range(n)]
        wallets = [Account.create() for _ in range(owners)]
        for account in (deployer, buyer_wallet, *nodes, *wallets):
            dev.fund(account.address, 10**18)  # anvil's funder holds 10,000 ETH
        dealt = deal(n, t)
        market = MarketClient.deploy_dealt(w3, deployer, Committee(
            dealt.keys.committee_key.to_bytes(), t, tuple(a.address for a in nodes),
            tuple(k.point.to_bytes() for k in dealt.keys.share_keys)), nodes).value
        client = AggregateClient.deploy(w3, deployer, market.address).value
        store = LocalStore(work / "store", fsync=False)
        servers, clients = [], {}
        for i in range(1, n + 1):
            chain = connect(rpc)
            node_market = MarketClient(chain, market.address)
            database = SqliteDatabase(str(work / f"node-{i}.db"))
            state = GatewayState(database)
            service = GatewayService(
                market=node_market, state=state, node=NodeKey(dealt.shares[i - 1], nodes[i - 1]),
                timing=Timing(poll_interval=0.05, anchor_interval=3600, head_ttl=0.0),
                aggregation=AggregationService(
                    AggregateClient(chain, client.address), node_market,
                    AggregateState(database), state, nodes[i - 1], store))
            port = free_port()
            server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1",
                                                   port=port, log_level="warning"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.02)
            servers.append((server, thread))
            clients[i] = gateway_client(f"http://127.0.0.1:{port}")
        try:
            schema = CohortDocument(title="bench", fields=[FieldSpec(name="x", type="integer")])
            cohort, _ = CohortApp(client, store, deployer).create(schema, "10", 2)
            started = time.perf_counter()
            for wallet in wallets:
                CohortApp(client, store, wallet).join(cohort)
            joined = time.perf_counter() - started
            buyer = AggregateBuyer(client, market, store, buyer_wallet)
            since = int(w3.eth.block_number)
            debit = int(buyer.query(cohort, query, deadline_seconds=3600, price=10**16,
                                    round_seconds=60).debit.debit_id)
            policy = work / "policy.toml"
            policy.write_text('fields = ["x"]\nmax_epsilon = 1\nmax_total_epsilon = 5\n'
                              "min_price_per_contribution = 1\n", encoding="utf-8")
            started = time.perf_counter()
            gas = []
            for i, (wallet, value) in enumerate(zip(wallets, values, strict=True)):
                agent = OwnerAgent(client, market, store, wallet, AgentPolicy.from_toml(policy),
                                   {"x": str(int(value))}, work / f"agent-{i}.json", [cohort],
                                   from_block=since)
                [decision] = agent.run_once()
                if decision.action != "contributed":
                    raise SystemExit(f"owner {i}: {decision.action} ({decision.reason})")
            contributed = time.perf_counter() - started
            for log in client.contributions(debit, since):
                receipt = w3.eth.get_transaction_receipt(log.ref.tx_hash)
                gas.append(int(receipt["gasUsed"]))
            dev.advance(3601)  # the first block after the deadline: the clock starts here
            started = time.perf_counter()
            buyer.partials_client_factory = lambda: PartialsClient(buyer.domain, clients)
            while True:
                try:
                    got = buyer.result(debit)
                    break
                except ResultNotReady:
                    time.sleep(0.1)
            seconds = time.perf_counter() - started
        finally:
            for server, _ in servers:
                server.should_exit = True
            for _, thread in servers:  # before anvil stops: their loops read the chain
                thread.join(timeout=30)
        truth = np.bincount(values, minlength=bins)
        error = np.asarray(got.result.values) - truth
        print(f"\nend to end on anvil, {t}-of-{n}, {owners:,} owners x {bins:,} bins: "
              f"{owners:,} joins in {joined:.1f} s, {owners:,} agents contributed in "
              f"{contributed:.1f} s ({contributed / owners * 1e3:.1f} ms each: read the "
              f"request, encode, share, seal, store, contribute)")
        print(f"  contribute gas: first {gas[0]:,}, median {int(statistics.median(gas)):,}, "
              f"max {max(gas):,} (budget 70,000)")
        print(f"  from the first block after the deadline to the buyer's decoded answer: "
              f"{seconds:.1f} s (goal 30 s): both rounds on chain, {n} nodes' work, "
              f"{t} partials over HTTP; {got.result.contributors} counted, noise sigma "
              f"{got.result.noise_sigma:.2f}, observed error sd {float(error.std()):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=1000)
    parser.add_argument("--bins", type=int, default=1000)
    parser.add_argument("--committees", default="2-of-3,3-of-5")
    parser.add_argument("--e2e", action="store_true",
                        help="also the whole flow over gateways on anvil (slow to set up)")
    args = parser.parse_args(argv)
    for spec in args.committees.split(","):
        t, n = (int(x) for x in spec.split("-of-"))
        run(args.owners, args.bins, n, t)
        if args.e2e:
            e2e(args.owners, args.bins, n, t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
