"""Benchmark committee ceremonies on a real chain: a DKG and a reshare among n gateways.

For each n (3, 5, 10, 16 by default; t = floor(2n/3) + 1) on a fresh anvil (real JSON-RPC
over loopback, one block per transaction):

- **DKG**: deploy a market whose epoch-1 ceremony is a DKG among n fresh node accounts,
  run n `GatewayService`s in this process (each with its own `MarketClient` and web3
  connection, in-memory SQLite state, its own thread calling `tick()` every 0.05 s), and
  time from the deployment transaction to every node holding its epoch-1 share.
- **Reshare** (`--reshare`, the default): the governor (the deployer) proposes the same
  roster with its last node replaced by a new account (same t); the nodes approve it
  themselves (`approve_rosters=True`), the old roster deals, and the time runs from the
  proposal to every new member holding its epoch-2 share.

Per run it reports the wall time, and per node the bytes it posted (payload lengths of
its `CeremonyMessage` logs, by kind) and the gas of its transactions (every transaction
a node sent in the ceremony's blocks: postCeremonyMessage, approveCommittee,
finalizeCommittee), the finalization's gas, each node's CPU time in its rounds, and the
CPU time of one `evaluate` of the final transcript (what every node's round recomputes).

Every node runs in one Python process, so their rounds share one interpreter (the GIL)
and two cores with anvil: a pessimistic stand-in for n machines, each with its own CPU.

Usage (the figures in docs/benchmarks.md):
    .venv/bin/python -m scripts.bench_dkg [--sizes 3,5,10,16] [--reshare/--no-reshare]
        [--json out.json] [--smoke]

`--smoke` runs n = 3 alone (DKG and reshare) and checks the result: something a CI job
could run in ~10 s. Writes its report on stdout (and JSON with `--json`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.ceremony_chain import CeremonyReader, result_signer
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import CeremonyInfo, Roster
from marketplace.committee import NodeKey, node_encryption_key
from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.service import GatewayService, Timing
from marketplace.gateway.state import GatewayState
from marketplace.keyrelease.ceremony import CeremonySchedule, evaluate
from marketplace.keyrelease.dkg import MessageKind
from scripts.servers.anvil import start_anvil

ETHER = 10**18
POLL = 0.05
PHASE_SECONDS = 30
KINDS = {int(k): k.name.lower() for k in MessageKind}


def threshold_for(n: int) -> int:
    """t = floor(2n/3) + 1: more than two thirds of the nodes must take part."""
    return 2 * n // 3 + 1


@dataclass
class NodeStats:
    """What one node did in one ceremony."""

    address: str
    bytes_by_kind: dict[str, int] = field(default_factory=dict)
    gas_by_kind: dict[str, int] = field(default_factory=dict)
    ticks: int = 0
    tick_cpu_s: float = 0.0
    view_cpu_s: float = 0.0
    views: int = 0

    @property
    def bytes_total(self) -> int:
        return sum(self.bytes_by_kind.values())

    @property
    def gas_total(self) -> int:
        return sum(self.gas_by_kind.values())


@dataclass
class CeremonyRun:
    """One ceremony's figures."""

    name: str
    n: int
    t: int
    seconds: float
    blocks: int
    finalize_gas: int
    evaluate_ms: float
    process_cpu_s: float
    nodes: list[NodeStats]

    def summary(self) -> dict[str, Any]:
        by_bytes = [s.bytes_total for s in self.nodes]
        by_gas = [s.gas_total for s in self.nodes]
        kinds = sorted({k for s in self.nodes for k in s.bytes_by_kind})
        return {
            "name": self.name,
            "n": self.n,
            "t": self.t,
            "seconds": round(self.seconds, 2),
            "blocks": self.blocks,
            "bytes_per_node_median": statistics.median(by_bytes),
            "bytes_per_node_max": max(by_bytes),
            "bytes_by_kind_median": {
                k: statistics.median(s.bytes_by_kind.get(k, 0) for s in self.nodes)
                for k in kinds
            },
            "gas_by_kind_median": {
                k: statistics.median(s.gas_by_kind[k] for s in self.nodes if k in s.gas_by_kind)
                for k in sorted({k for s in self.nodes for k in s.gas_by_kind})
            },
            "gas_per_node_median": statistics.median(by_gas),
            "gas_per_node_max": max(by_gas),
            "finalize_gas": self.finalize_gas,
            "evaluate_ms": round(self.evaluate_ms, 1),
            "process_cpu_s": round(self.process_cpu_s, 1),
            "ticks_per_node_median": statistics.median(s.ticks for s in self.nodes),
            "tick_cpu_ms_median": round(
                statistics.median(1000 * s.tick_cpu_s / max(1, s.ticks) for s in self.nodes), 1
            ),
            "view_cpu_s_total": round(sum(s.view_cpu_s for s in self.nodes), 1),
            "tick_cpu_s_total": round(sum(s.tick_cpu_s for s in self.nodes), 1),
        }


# ---------------------------------------------------------------------------- nodes


class Node:
    """One gateway in its own thread: `tick()` every POLL seconds, CPU time counted."""

    def __init__(self, url: str, market: str, account: LocalAccount) -> None:
        self.account = account
        self.service = GatewayService(
            market=MarketClient(connect(url), market),
            state=GatewayState(SqliteDatabase(":memory:")),
            node=NodeKey(None, account),
            timing=Timing(poll_interval=POLL, anchor_interval=3600),
            approve_rosters=True,
        )
        self.ticks = 0
        self.tick_cpu = 0.0
        self.view_cpu = 0.0
        self.views = 0
        self.errors: list[str] = []
        self._instrument_views()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"node-{account.address[:8]}",
                                        daemon=True)

    def _instrument_views(self) -> None:
        """Count the thread CPU time of each transcript read + evaluate."""
        reader = self.service.ceremonies.reader
        inner: Callable[..., Any] = reader.view

        def timed_view(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.view_cpu += time.thread_time() - start
                self.views += 1

        reader.view = timed_view  # type: ignore[method-assign]

    def holds(self, epoch: int) -> bool:
        return self.service.share_book.get(epoch) is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def counters(self) -> tuple[int, float, float, int]:
        return self.ticks, self.tick_cpu, self.view_cpu, self.views

    def reset_counters(self) -> None:
        self.ticks, self.tick_cpu, self.view_cpu, self.views = 0, 0.0, 0.0, 0

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.thread_time()
            try:
                self.service.tick(anchor=False)
            except Exception as e:  # the service's own loop also keeps going
                if len(self.errors) < 20:
                    self.errors.append(f"{type(e).__name__}: {e}")
            self.tick_cpu += time.thread_time() - start
            self.ticks += 1
            self._stop.wait(POLL)


@contextmanager
def running(nodes: Sequence[Node]) -> Iterator[None]:
    for node in nodes:
        node.start()
    try:
        yield
    finally:
        for node in nodes:
            node.stop()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


# ---------------------------------------------------------------------------- figures


def ceremony_figures(
    w3: Web3,
    market: MarketClient,
    info: CeremonyInfo,
    first_block: int,
    last_block: int,
    nodes: Sequence[Node],
) -> tuple[dict[str, NodeStats], int, float]:
    """Per node: bytes by kind (from the ceremony's logs) and gas by transaction kind
    (every node transaction in [first_block, last_block]); the finalization's gas; the
    CPU time of one evaluate of the final transcript (ms, best of 3)."""
    stats = {node.account.address.lower(): NodeStats(node.account.address) for node in nodes}
    for log in market.ceremony_messages(info.ceremony_id, first_block, last_block):
        s = stats[log.sender.lower()]
        kind = KINDS.get(log.kind, str(log.kind))
        s.bytes_by_kind[kind] = s.bytes_by_kind.get(kind, 0) + len(log.payload)
    finalize_gas = 0
    for number in range(first_block, last_block + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if isinstance(tx, bytes):  # full_transactions: never a bare hash
                continue
            sender = str(tx["from"]).lower()
            if sender not in stats or tx["to"] is None:
                continue
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            fn, fn_args = market.contract.decode_function_input(tx["input"])
            if fn.fn_name == "postCeremonyMessage":
                kind = KINDS.get(int(fn_args["kind"]), str(fn_args["kind"]))
            else:
                kind = fn.fn_name.removesuffix("Committee")  # approve, finalize
            gas = int(receipt["gasUsed"])
            by_kind = stats[sender].gas_by_kind
            by_kind[kind] = by_kind.get(kind, 0) + gas
            if fn.fn_name == "finalizeCommittee" and receipt["status"] == 1:
                finalize_gas = gas
    # one node's evaluate of the whole transcript, as its rounds recompute it
    reader = CeremonyReader(market)
    params = reader.params(info)
    messages = reader.messages(info.ceremony_id, last_block)
    now = int(w3.eth.get_block(last_block)["timestamp"])
    schedule = CeremonySchedule(info.opened_at, info.phase_seconds, info.deadline)
    recover = result_signer(reader.domain)
    best = float("inf")
    for _ in range(3):
        start = time.thread_time()  # this thread's CPU: the nodes may still be running
        evaluate(params, schedule, messages, now, recover_signer=recover)
        best = min(best, time.thread_time() - start)
    return stats, finalize_gas, best * 1000


def collect(
    name: str, n: int, t: int, seconds: float, cpu: float, w3: Web3, market: MarketClient,
    ceremony_id: int, first_block: int, nodes: Sequence[Node],
    counters: dict[str, tuple[int, float, float, int]],
) -> CeremonyRun:
    last_block = int(w3.eth.block_number)
    info = market.ceremony(ceremony_id)
    stats, finalize_gas, evaluate_ms = ceremony_figures(
        w3, market, info, first_block, last_block, nodes
    )
    members = {a.lower() for a in info.roster.nodes}
    dealers = members | (
        {a.lower() for a in market.committee_at(info.epoch - 1).nodes} if info.is_reshare
        else set()
    )
    out = []
    for node in nodes:
        s = stats[node.account.address.lower()]
        if node.account.address.lower() not in dealers:
            continue
        s.ticks, s.tick_cpu_s, s.view_cpu_s, s.views = counters[node.account.address]
        out.append(s)
    return CeremonyRun(name, n, t, seconds, last_block - first_block + 1, finalize_gas,
                       evaluate_ms, cpu, out)


# ---------------------------------------------------------------------------- one size


def bench(n: int, reshare: bool, timeout: float) -> list[CeremonyRun]:
    t = threshold_for(n)
    runs: list[CeremonyRun] = []
    with ExitStack() as stack:
        url = stack.enter_context(start_anvil())
        w3 = connect(url)
        dev = DevChain(w3)
        deployer: LocalAccount = Account.create()
        accounts: list[LocalAccount] = [Account.create() for _ in range(n + 1)]
        for account in (deployer, *accounts):
            dev.fund(account.address, 100 * ETHER)
        members, newcomer = accounts[:n], accounts[n]
        roster = Roster(
            tuple(a.address for a in members), tuple(node_encryption_key(a) for a in members), t
        )

        # DKG: the clock starts before the deployment (which opens the ceremony)
        cpu0, start = time.process_time(), time.monotonic()
        sent = MarketClient.deploy(
            w3, deployer, roster, phase_seconds=PHASE_SECONDS, deadline=dev.now() + 3600
        )
        market = sent.value
        nodes = [Node(url, market.address, a) for a in members]
        for node in nodes:
            stack.callback(node.stop)
            node.start()
        wait_until(lambda: all(node.holds(1) for node in nodes), timeout, f"epoch 1 at n={n}")
        seconds = time.monotonic() - start
        cpu = time.process_time() - cpu0
        counters = {str(node.account.address): node.counters() for node in nodes}
        runs.append(collect("DKG", n, t, seconds, cpu, w3, market, 1, sent.block_number, nodes,
                            counters))
        report_errors(nodes)
        if not reshare:
            return runs

        # reshare: the last node replaced by a newcomer, same t; the old roster deals
        wait_until(lambda: all(node.ticks > 0 for node in nodes), timeout, "idle nodes")
        newcomer_node = Node(url, market.address, newcomer)
        stack.callback(newcomer_node.stop)
        newcomer_node.start()
        for node in nodes:
            node.reset_counters()
        next_members = [*members[:-1], newcomer]
        next_roster = Roster(
            tuple(a.address for a in next_members),
            tuple(node_encryption_key(a) for a in next_members), t,
        )
        all_nodes = [*nodes, newcomer_node]
        new_nodes = [*nodes[:-1], newcomer_node]
        first_block = int(w3.eth.block_number) + 1
        cpu0, start = time.process_time(), time.monotonic()
        proposed = market.propose_committee(
            deployer, next_roster, phase_seconds=PHASE_SECONDS, deadline=dev.now() + 3600
        )
        wait_until(lambda: all(node.holds(2) for node in new_nodes), timeout, f"epoch 2 at n={n}")
        seconds = time.monotonic() - start
        cpu = time.process_time() - cpu0
        counters = {str(node.account.address): node.counters() for node in all_nodes}
        if market.committee_at(2).committee_key != market.committee_at(1).committee_key:
            raise SystemExit("reshare changed the committee key")
        runs.append(collect("reshare", n, t, seconds, cpu, w3, market, proposed.value,
                            first_block, all_nodes, counters))
        report_errors(all_nodes)
    return runs


def report_errors(nodes: Sequence[Node]) -> None:
    for node in nodes:
        for error in node.errors:
            print(f"  note: node {node.account.address[:10]} round failed: {error}",
                  file=sys.stderr)
        node.errors.clear()


# ---------------------------------------------------------------------------- report


def machine_note() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    return (f"{os.cpu_count()} vCPU, {cpu}, Python {sys.version.split()[0]}; "
            f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def table_row(run: CeremonyRun) -> str:
    s = run.summary()
    kinds = s["bytes_by_kind_median"]
    deal = kinds.get("dealing", 0)
    gas = s["gas_by_kind_median"]
    parts = " / ".join(
        f"{gas[k] / 1000:,.0f}k" for k in ("dealing", "verdict", "result", "approve") if k in gas
    )
    messages = statistics.median(
        sum(v for k, v in n.gas_by_kind.items() if k != "finalize") for n in run.nodes
    )
    return (
        f"| {run.name} | {run.t}-of-{run.n} | **{run.seconds:.1f} s** | {run.blocks} "
        f"| {s['bytes_per_node_median']:,.0f} ({deal:,.0f} dealing) "
        f"| {messages:,.0f} ({parts}) "
        f"| {run.finalize_gas:,} | {run.evaluate_ms:.1f} ms "
        f"| {s['ticks_per_node_median']:.0f} / {s['tick_cpu_ms_median']:.1f} ms "
        f"| {run.process_cpu_s:.1f} s |"
    )


HEADER = (
    "| ceremony | t-of-n | wall time | blocks | bytes posted per node, median | "
    "gas per node, median (dealing / verdict / result [/ approve]) | finalize gas | "
    "evaluate (1 node, final transcript) | "
    "rounds per node / CPU per round, median | process CPU |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="3,5,10,16", help="committee sizes n, comma-separated")
    parser.add_argument("--reshare", action=argparse.BooleanOptionalAction, default=True,
                        help="also reshare to a roster with one node replaced")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per ceremony")
    parser.add_argument("--smoke", action="store_true", help="n = 3 only (a quick check)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    sizes = [3] if args.smoke else [int(x) for x in args.sizes.split(",")]
    if any(n < 2 or n > 255 for n in sizes):
        parser.error("--sizes: each n must be in 2..255")
    print(f"machine: {machine_note()}")
    print(f"rounds every {POLL} s per node, all nodes in this process (one GIL); "
          f"phase {PHASE_SECONDS} s (honest runs close every phase early)", flush=True)
    runs: list[CeremonyRun] = []
    print(HEADER, flush=True)
    for n in sizes:
        for run in bench(n, args.reshare, args.timeout):
            runs.append(run)
            print(table_row(run), flush=True)
    print(f"load average at the end {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(
            {"machine": machine_note(),
             "runs": [{**run.summary(), "nodes": [
                 {**asdict(s), "bytes_total": s.bytes_total, "gas_total": s.gas_total}
                 for s in run.nodes]} for run in runs]},
            indent=2,
        ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
