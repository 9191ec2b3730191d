"""CLI start-up benchmark: median and p90 of N whole-process runs of `datadebit` commands.

Each run is a fresh `python -m marketplace.cli ...` process, timed from spawn to exit, so
the figure is what a user waits for: interpreter start, imports, the work, the exit.
Commands measured (budgets in DESIGN §8 / issue 11):

- `datadebit --help` and `datadebit cid FILE` (a small file): <= 0.3 s;
- `datadebit buyer status --buyer ADDR` against a fresh anvil with a deployed market
  (one listing, one debit of that buyer): <= 0.6 s;
- `datadebit market search QUERY` against a catalog server, when the `market` command
  group exists in the tree measured (`--catalog URL` points at a running server; without
  it the bench starts `datadebit catalog serve` on the same anvil).

`--root DIR` measures another checkout (e.g. the code before a change: `git archive`
it to a folder), run with this interpreter; the anvil and market are set up from this
checkout's code either way.

    .venv/bin/python scripts/bench_cli.py --runs 15
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ETHER = 10**18


@dataclass(frozen=True)
class Case:
    """One command line to time."""

    label: str
    args: tuple[str, ...]
    budget: float | None
    python: bool = False  # `args` are the interpreter's (a reference), not datadebit's


@dataclass(frozen=True)
class Figure:
    """Timings of one case, in seconds."""

    label: str
    runs: int
    median: float
    p90: float
    minimum: float
    cpu_median: float
    budget: float | None


def cpu_of_children() -> float:
    """User + system CPU seconds of the waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_runs(
    root: Path, case: Case, runs: int, env: dict[str, str]
) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of `runs` whole-process runs; a failing run aborts the benchmark.
    CPU time is reported too because it depends less on the machine's other load."""
    times = []
    command = [sys.executable] if case.python else [sys.executable, "-m", "marketplace.cli"]
    for _ in range(runs):
        cpu = cpu_of_children()
        start = time.perf_counter()
        done = subprocess.run(
            [*command, *case.args], cwd=root, env=env, capture_output=True, text=True,
            check=False,
        )
        times.append((time.perf_counter() - start, cpu_of_children() - cpu))
        if done.returncode != 0:
            raise SystemExit(
                f"{case.label}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
    return times


def summarise(case: Case, times: Sequence[tuple[float, float]]) -> Figure:
    """Median and p90 (nearest-rank) of the wall times, median of the CPU times."""
    ordered = sorted(wall for wall, _ in times)
    p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]
    return Figure(case.label, len(ordered), statistics.median(ordered), p90, ordered[0],
                  statistics.median(cpu for _, cpu in times), case.budget)


@contextmanager
def deployed_market(store: Path) -> Iterator[tuple[str, str, str]]:
    """A fresh anvil with a market (2-of-3 dealt committee), one described listing (its
    document in the LocalStore at `store`) and one debit on it; yields (rpc URL, market
    address, buyer address)."""
    from eth_account import Account  # noqa: PLC0415 - only the chain cases need these

    from marketplace.chain.market import MarketClient  # noqa: PLC0415
    from marketplace.chain.provider import DevChain, connect  # noqa: PLC0415
    from marketplace.chain.types import Committee  # noqa: PLC0415
    from marketplace.documents import (  # noqa: PLC0415
        ListingDocument,
        document_uri,
        put_document,
        terms_hash,
    )
    from marketplace.keyrelease.dealer import deal  # noqa: PLC0415
    from scripts.servers.anvil import start_anvil  # noqa: PLC0415
    from storage.stores.local import LocalStore  # noqa: PLC0415

    with start_anvil() as url:
        w3 = connect(url)
        dev = DevChain(w3)
        deployer, owner, buyer = (Account.create() for _ in range(3))
        nodes = [Account.create() for _ in range(3)]
        for account in (deployer, owner, buyer, *nodes):
            dev.fund(account.address, 10 * ETHER)
        dealt = deal(3, 2)
        committee = Committee(
            dealt.keys.committee_key.to_bytes(), 2, tuple(n.address for n in nodes),
            tuple(k.point.to_bytes() for k in dealt.keys.share_keys),
        )
        market = MarketClient.deploy_dealt(w3, deployer, committee, nodes).value
        document = ListingDocument(
            title="Air quality, Lyon", description="Hourly PM2.5 and NO2 from 12 stations.",
            tags=["air", "pm25"], terms="Research use only.",
        )
        listing = market.create_listing(
            owner, price_per_period=10**15, period_seconds=86_400, auto_approve=True,
            terms_hash=terms_hash(document),
            metadata_uri=document_uri(put_document(LocalStore(store), document)),
        ).value
        market.request_debit(buyer, listing, periods=1, buyer_key=bytes(31) + b"\x01")
        yield url, market.address, buyer.address


@contextmanager
def catalog_server(
    root: Path, rpc: str, market: str, store: Path, env: dict[str, str]
) -> Iterator[str]:
    """`datadebit catalog serve` of the measured tree on a free port, once it has indexed
    the listing; yields its URL."""
    import httpx  # noqa: PLC0415

    from scripts.servers.process import free_port  # noqa: PLC0415

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-cli-catalog-") as folder:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marketplace.cli", "catalog", "serve", "--rpc", rpc,
             "--market", market, "--store", str(store), "--poll-interval", "0.1",
             "--state", f"sqlite:///{Path(folder) / 'catalog.sqlite'}", "--port", str(port)],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    answer = httpx.get(f"{url}/v1/listings/1", timeout=1)
                    if answer.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise SystemExit(f"catalog server did not start: {err[-2000:]}")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def has_market_group(root: Path) -> bool:
    """Whether the measured tree has helper H's `market` command group."""
    return (root / "marketplace" / "cli" / "market_commands.py").is_file()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="whole-process runs per command")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to measure")
    parser.add_argument("--catalog", help="URL of a running catalog server for `market search`")
    parser.add_argument("--no-chain", action="store_true", help="only --help and cid")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--reference", action="store_true",
                        help="also time `python -c pass` and `python -c 'import web3'`")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATADEBIT_")}
    env["PYTHONPATH"] = str(root)
    notes: list[str] = []

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cli-")))
        small = folder / "small.csv"
        small.write_text("t,pm25\n2026-01-01T00:00:00Z,12.5\n")
        cases = [Case("datadebit --help", ("--help",), 0.3),
                 Case("datadebit cid FILE", ("cid", str(small)), 0.3)]
        if args.reference:
            cases += [Case("python -c pass", ("-c", "pass"), None, python=True),
                      Case("python -c 'import web3'", ("-c", "import web3"), None, python=True)]
        if not args.no_chain:
            store = folder / "store"
            rpc, market, buyer = stack.enter_context(deployed_market(store))
            cases.append(Case(
                "datadebit buyer status", ("buyer", "status", "--rpc", rpc, "--market", market,
                                           "--buyer", buyer), 0.6))
            if has_market_group(root):
                catalog = args.catalog or stack.enter_context(
                    catalog_server(root, rpc, market, store, env))
                cases.append(Case("datadebit market search", (
                    "market", "search", "air quality", "--catalog", catalog), 0.6))
            else:
                notes.append("`market search` not measured: no market command group in "
                             f"{root} (marketplace/cli/market_commands.py)")
        for case in cases:  # one warm-up each: the page cache, .pyc files
            time_runs(root, case, 1, env)
        timings: dict[str, list[tuple[float, float]]] = {case.label: [] for case in cases}
        for _ in range(args.runs):  # interleaved, so background load hits every case alike
            for case in cases:
                timings[case.label] += time_runs(root, case, 1, env)
    figures = [summarise(case, timings[case.label]) for case in cases]

    if args.json:
        print(json.dumps({"root": str(root), "figures": [f.__dict__ for f in figures],
                          "notes": notes}, indent=2))
    else:
        print(f"tree measured: {root}; {args.runs} runs each (python {sys.version.split()[0]})")
        print(f"{'command (seconds)':28} {'median':>7} {'p90':>7} {'min':>7} {'CPU':>7} "
              f"{'budget':>7}")
        for f in figures:
            budget = "" if f.budget is None else f"{f.budget:7.1f}"
            ok = "" if f.budget is None else ("  ok" if f.median <= f.budget else "  OVER")
            print(f"{f.label:28} {f.median:7.3f} {f.p90:7.3f} {f.minimum:7.3f} "
                  f"{f.cpu_median:7.3f} {budget:>7}{ok}")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"({os.cpu_count()} CPUs)")
        for note in notes:
            print(f"note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
