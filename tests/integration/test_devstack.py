"""The devstack as a user runs it, and the CLI driven on it as a user types it.

One stack per module (anvil, js-ipfs, three `datadebit gateway serve` processes, 2-of-3);
every CLI call is a subprocess with the environment the devstack prints. A failing test's
message carries the gateways' log tails.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from marketplace.audit.auditor import NODES as NODES_CHECK
from marketplace.audit.content import NAME as CONTENT_CHECK
from marketplace.audit.releases import SIGNATURES as SIGNATURES_CHECK
from marketplace.chain.market import TRUSTED_DEALER_TRANSCRIPT, MarketClient
from marketplace.chain.provider import connect
from marketplace.committee import load_node_key, read_public_committee
from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.shares import ShareBook
from marketplace.gateway.state import GatewayState
from marketplace.keyrelease import NodeShare, Point, Scalar
from marketplace.keyrelease.shamir import lagrange_coefficients
from scripts.devstack import ROOT, DevStack

pytestmark = pytest.mark.integration

CLI_TIMEOUT = 60.0
#: 1 ether per 10-minute period: what accrues in the seconds a test takes is well above
#: the gas of a withdraw, so "the owner's balance rises" is a real check.
PRICE = 10**18
PERIOD = 600


SCRIPT_STARTUP = 120.0


@dataclass
class ScriptRun:
    """`scripts/devstack` running as a user starts it; stdout collected by a thread."""

    proc: subprocess.Popen[str]
    state: Path
    stderr: Path
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("export DATADEBIT_PRIVATE_KEY="):
                self.ready.set()

    def output(self) -> str:
        return "".join(self.lines) + self.stderr.read_text(errors="replace")


@pytest.fixture(scope="module")
def devstack_script(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptRun]:
    """A 1-of-1 stack run by the script itself. `stack` requests this fixture first, so
    the two start-ups (each ~15 s, mostly js-ipfs) overlap."""
    folder = tmp_path_factory.mktemp("script")
    with (folder / "stderr").open("w") as stderr:
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "devstack"), "--nodes", "1", "--threshold", "1",
             "--state-dir", str(folder / "state")],
            stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True,
        )
    run = ScriptRun(proc, folder / "state", folder / "stderr")
    reader = threading.Thread(target=run.collect, daemon=True)
    reader.start()
    yield run
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    reader.join(10)


@pytest.fixture(scope="module")
def stack(
    devstack_script: ScriptRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevStack]:
    with DevStack.start(tmp_path_factory.mktemp("devstack") / "state") as running:
        yield running


@pytest.fixture(autouse=True)
def all_gateways_up(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests that kill gateways leave the next test a whole committee. (A failed test's
    report carries the gateways' logs: tests/integration/conftest.py.)"""
    yield
    if "stack" in request.fixturenames:
        running: DevStack = request.getfixturevalue("stack")
        down = [i for i, gateway in running.gateways.items() if not gateway.running]
        for index in down:
            running.start_gateway(index, wait=False)
        for index in down:
            running.wait_healthy(index)


def datadebit(
    stack: DevStack, role: str, *args: str, expect: int = 0, via_config: bool = False
) -> subprocess.CompletedProcess[str]:
    """`datadebit ARGS` as `role` types it, with the devstack's environment (or, with
    `via_config`, its datadebit.toml instead of the variables); a different exit code fails
    the test with the command's output (and the gateways' logs, see conftest)."""
    env = stack.cli_env(role)
    if via_config:
        env = {k: v for k, v in env.items() if k not in stack.env or k.endswith("PRIVATE_KEY")}
        env["DATADEBIT_CONFIG"] = str(stack.state_dir / "datadebit.toml")
    done = subprocess.run(
        [sys.executable, "-m", "marketplace.cli", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != expect:
        pytest.fail(
            f"`datadebit {' '.join(args)}` as {role} exited {done.returncode}, not {expect}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


def make_csv(path: Path, rows: int, seed: int) -> Path:
    """A generated CSV of about 45 bytes per row."""
    rng = random.Random(seed)
    lines = ["timestamp,sensor,reading,status"]
    lines += [f"{1_700_000_000 + i * 60},s-{rng.randrange(100):03d},"
              f"{rng.uniform(-40, 60):.4f},{rng.choice(['ok', 'warn', 'fault'])}"
              for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def create_listing(stack: DevStack, *, auto_approve: bool) -> int:
    flag = "--auto-approve" if auto_approve else "--needs-consent"
    out = datadebit(stack, "owner", "owner", "create-listing", "--price", str(PRICE),
                    "--period", str(PERIOD), flag).stdout
    return int(out)


def publish(stack: DevStack, listing: int, file: Path) -> int:
    version, cid = datadebit(stack, "owner", "owner", "publish", "--listing", str(listing),
                             str(file)).stdout.split()
    assert cid.startswith("baf")  # CIDv1, base32
    return int(version)


def request_debit(stack: DevStack, role: str, listing: int) -> int:
    return int(datadebit(stack, role, "buyer", "request", "--listing", str(listing),
                         "--periods", "2").stdout)


def fetch(
    stack: DevStack, role: str, debit: int, out: Path, *extra: str, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    return datadebit(stack, role, "buyer", "fetch", "--debit", str(debit), "--out", str(out),
                     *extra, expect=expect)


def market_of(stack: DevStack) -> MarketClient:
    return MarketClient(connect(stack.rpc_url), stack.market)


def _refuses_connections(url: str) -> bool:
    try:
        httpx.post(url, timeout=2.0)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False
    return False


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text.encode() in blob and state != "Z":
            found.append(int(entry.name))
    return found


# -- the stack itself ----------------------------------------------------------------------


def test_every_gateway_is_healthy_on_the_deployed_market(stack: DevStack) -> None:
    committee = read_public_committee(stack.committee_file)
    for node in committee.nodes:
        health = stack.health(node.index)
        assert health["status"] == "ok", health
        assert health["node"] == node.index
        assert health["address"] == node.address
        assert str(health["market"]).lower() == stack.market.lower()


def test_committee_file_names_the_running_gateways(stack: DevStack) -> None:
    committee = read_public_committee(stack.committee_file)
    assert committee.threshold == 2 and len(committee.nodes) == 3
    assert [n.url for n in committee.nodes] == [stack.gateways[i].url for i in (1, 2, 3)]
    on_chain = MarketClient(connect(stack.rpc_url), stack.market).committee()
    assert on_chain.nodes == tuple(n.address for n in committee.nodes)
    assert on_chain.committee_key == committee.committee_key.to_bytes()


def test_role_wallets_are_anvils_funded_dev_accounts(stack: DevStack) -> None:
    w3 = connect(stack.rpc_url)
    roles = sorted(stack.accounts.values(), key=lambda a: a.index)
    assert [a.address for a in roles] == list(w3.eth.accounts[: len(roles)])
    for account in roles:
        assert w3.eth.get_balance(account.address) > 1000 * 10**18


def test_dev_buyers_hold_the_test_stablecoin_and_buy_a_listing_priced_in_it(
    stack: DevStack, tmp_path: Path,
) -> None:
    """Issue 12: the devstack deploys a test dollar (TUSD, 6 decimals, permit) and funds the
    dev buyers; a listing priced `--price 5tusd` is bought with a permit in one transaction
    and decrypted, and `buyer status` shows the amount in TUSD."""
    from marketplace.chain.tokens import asset_info, token_balance  # noqa: PLC0415

    w3 = connect(stack.rpc_url)
    info = asset_info(w3, stack.stablecoin)
    assert (info.symbol, info.decimals) == ("TUSD", 6)
    for role in ("buyer_a", "buyer_b"):
        assert token_balance(w3, stack.stablecoin, stack.accounts[role].address) >= 10**9
    assert stack.stablecoin in stack.summary()
    listed = int(datadebit(stack, "owner", "owner", "create-listing", "--asset",
                           stack.stablecoin, "--price", "5tusd", "--period", "1h",
                           "--auto-approve").stdout)
    publish(stack, listed, make_csv(tmp_path / "t.csv", 200, seed=12))
    before = token_balance(w3, stack.stablecoin, stack.accounts["buyer_b"].address)
    bought = datadebit(stack, "buyer_b", "buyer", "request", "--listing", str(listed),
                       "--periods", "2", "--max-price", "10tusd")
    assert "with a permit (one transaction)" in bought.stderr
    debit = int(bought.stdout)
    assert token_balance(w3, stack.stablecoin, stack.accounts["buyer_b"].address) == \
        before - 10 * 10**6
    fetch(stack, "buyer_b", debit, tmp_path / "t.out")
    assert (tmp_path / "t.out").read_bytes() == (tmp_path / "t.csv").read_bytes()
    status = datadebit(stack, "buyer_b", "buyer", "status", str(debit)).stdout
    assert "10 TUSD" in status


def test_node_accounts_are_funded_to_pay_for_anchors(stack: DevStack) -> None:
    w3 = connect(stack.rpc_url)
    for node in read_public_committee(stack.committee_file).nodes:
        assert w3.eth.get_balance(node.address) > 0


def test_store_url_is_a_live_kubo_rpc_api(stack: DevStack) -> None:
    answer = httpx.post(f"{stack.store_url}/api/v0/version", timeout=5.0)
    assert answer.status_code == 200 and "Version" in answer.json()


def test_env_files_match_the_stack_and_hold_no_node_secret(stack: DevStack) -> None:
    env_sh = (stack.state_dir / "env.sh").read_text()
    for name, value in stack.env.items():
        assert f"export {name}={value}" in env_sh
    config = tomllib.loads((stack.state_dir / "datadebit.toml").read_text())
    assert config == {"rpc": stack.rpc_url, "market": stack.market,
                      "store": stack.store_url, "committee": str(stack.committee_file),
                      "catalog": stack.catalog_url}
    passphrase = stack.passphrase_file.read_text()
    assert stack.passphrase_file.stat().st_mode & 0o077 == 0
    for printed in (env_sh, stack.summary(), (stack.state_dir / "setup.log").read_text()):
        assert passphrase not in printed
    for role in ("buyer_a", "buyer_b"):
        assert stack.accounts[role].private_key in env_sh


def test_the_script_prints_the_environment_and_stops_everything_on_sigterm(
    devstack_script: ScriptRun,
) -> None:
    run = devstack_script
    try:
        assert run.ready.wait(SCRIPT_STARTUP), f"no environment printed:\n{run.output()}"
        exports = dict(re.findall(r"^export (\w+)=(\S+)", run.output(), re.MULTILINE))
        assert set(exports) == {"DATADEBIT_RPC", "DATADEBIT_MARKET", "DATADEBIT_STORE",
                                "DATADEBIT_COMMITTEE", "DATADEBIT_CATALOG",
                                "DATADEBIT_PRIVATE_KEY"}
        assert (run.state / "env.sh").is_file() and (run.state / "datadebit.toml").is_file()
        url = read_public_committee(Path(exports["DATADEBIT_COMMITTEE"])).nodes[0].url
        assert url is not None
        assert httpx.get(f"{url}/v1/health", timeout=5.0).json()["status"] == "ok"
        assert _processes_mentioning(str(run.state)), "gateway and ipfs should be running"
    finally:
        os.killpg(run.proc.pid, signal.SIGTERM)
        run.proc.wait(60)
    assert run.proc.returncode == 0, run.output()
    for endpoint in (exports["DATADEBIT_RPC"], exports["DATADEBIT_STORE"], url):
        assert _refuses_connections(endpoint), endpoint
    assert _processes_mentioning(str(run.state)) == []


# -- the CLI on the stack: the demo story ---------------------------------------------------


def test_demo_story_end_to_end_through_the_cli(stack: DevStack, tmp_path: Path) -> None:
    market = market_of(stack)
    owner = stack.accounts["owner"].address
    feed = create_listing(stack, auto_approve=True)
    gated = create_listing(stack, auto_approve=False)
    data_a = make_csv(tmp_path / "feed-v1.csv", 10000, seed=1)
    data_b1 = make_csv(tmp_path / "gated-v1.csv", 5000, seed=2)
    data_b2 = make_csv(tmp_path / "gated-v2.csv", 5000, seed=3)
    assert data_a.stat().st_size > 262_144  # more than one 256 KiB block
    assert publish(stack, feed, data_a) == 1
    assert publish(stack, gated, data_b1) == 1

    # buyer A: auto-approved, decrypts at once
    debit_a = request_debit(stack, "buyer_a", feed)
    got_a = fetch(stack, "buyer_a", debit_a, tmp_path / "a.csv")
    assert got_a.stdout.split()[0] == "1"
    assert (tmp_path / "a.csv").read_bytes() == data_a.read_bytes()

    # buyer B: refused by every gateway until the owner consents
    debit_b = request_debit(stack, "buyer_b", gated)
    refused = fetch(stack, "buyer_b", debit_b, tmp_path / "b1.csv", expect=1)
    assert refused.stderr.startswith("error: ") and "not_entitled" in refused.stderr
    assert not (tmp_path / "b1.csv").exists()
    datadebit(stack, "owner", "owner", "consent", str(debit_b))
    fetch(stack, "buyer_b", debit_b, tmp_path / "b1.csv")
    assert (tmp_path / "b1.csv").read_bytes() == data_b1.read_bytes()

    # revoked, B is refused the next version
    datadebit(stack, "owner", "owner", "revoke", str(debit_b))
    assert publish(stack, gated, data_b2) == 2
    refused = fetch(stack, "buyer_b", debit_b, tmp_path / "b2.csv", expect=1)
    assert "not_entitled" in refused.stderr
    assert not (tmp_path / "b2.csv").exists()

    # the owner claims what accrued on A's debit and withdraws everything credited
    claimed = int(datadebit(stack, "owner", "owner", "claim", str(debit_a),
                            via_config=True).stdout)
    assert claimed > 0
    credited = market.balance_of(owner)
    assert credited >= claimed  # plus what the revoke credited
    wallet_before = market.w3.eth.get_balance(owner)
    withdrawn = int(datadebit(stack, "owner", "owner", "withdraw").stdout)
    assert withdrawn == credited
    assert market.balance_of(owner) == 0
    assert market.w3.eth.get_balance(owner) > wallet_before

    checked = {c["name"]: c["checked"] for c in audit(stack)["checks"]}
    assert checked[CONTENT_CHECK] >= 3  # the three versions above, fetched back by CID
    assert checked[SIGNATURES_CHECK] >= 4  # A's and B's releases, t = 2 nodes each
    assert checked[NODES_CHECK] == 3


def audit(stack: DevStack) -> dict[str, Any]:
    """`datadebit audit --json -` on the stack: must exit 0 with a clean report."""
    report: dict[str, Any] = json.loads(datadebit(stack, "owner", "audit", "--json", "-").stdout)
    assert report["clean"] is True and report["violations"] == [], report
    return report


# -- the CLI on the stack: finding data and consenting to words ---------------------------


def test_a_buyer_finds_a_listing_by_a_word_and_the_owner_consents_to_a_purpose_it_reads(
    stack: DevStack, tmp_path: Path
) -> None:
    """The README walk-through: the owner describes a listing, a buyer finds it in the
    catalog by a word of its description, asks with a purpose sealed to the owner, and the
    owner reads that purpose in the inbox before consenting."""
    described = tmp_path / "listing.json"
    described.write_text(json.dumps({
        "schema": "datadebit/listing/v1",
        "title": "Bike counts, Nantes",
        "description": "Hourly velocipede counts from 24 loop counters on the ring road",
        "tags": ["mobility", "cycling"],
        "license": "CC-BY-4.0",
        "terms": "Research use only; no resale.",
        "fields": [{"name": "counter", "type": "category"},
                   {"name": "bikes", "type": "integer", "unit": "bikes/h"}],
        "cadence": "hourly",
        "contact": "data@nantes.example",
    }))
    listing = int(datadebit(stack, "owner", "owner", "create-listing", "--describe",
                            str(described), "--price", "0.002eth", "--period", "1d",
                            "--needs-consent").stdout)
    data = make_csv(tmp_path / "bikes.csv", 3000, seed=31)
    publish(stack, listing, data)

    deadline = time.monotonic() + 30
    while True:  # the catalog indexes the listing and reads its document
        found = json.loads(datadebit(stack, "buyer_b", "market", "search", "velocipede",
                                     "--json").stdout)["listings"]
        if [item["id"] for item in found] == [listing] and found[0]["title"]:
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.3)
    shown = datadebit(stack, "buyer_b", "market", "show", str(listing)).stdout
    assert "Bike counts, Nantes" in shown and "by the owner" in shown and "v1 baf" in shown

    why = "Plan new cycle lanes around the ring road"
    debit = int(datadebit(stack, "buyer_b", "buyer", "request", "--listing", str(listing),
                          "--periods", "1", "--max-price", "0.01eth", "--purpose", why,
                          "--requester", "City of Nantes, mobility office").stdout)
    inbox = json.loads(datadebit(stack, "owner", "owner", "inbox", "--json").stdout)
    [pending] = [r for r in inbox if r["debit"] == debit]
    assert pending["purpose"]["purpose"] == why and pending["purpose_problem"] is None
    assert why in datadebit(stack, "owner", "owner", "inbox").stdout
    datadebit(stack, "owner", "owner", "consent", str(debit))
    fetch(stack, "buyer_b", debit, tmp_path / "bikes-out.csv")
    assert (tmp_path / "bikes-out.csv").read_bytes() == data.read_bytes()


# -- the CLI on the stack: gateways failing -------------------------------------------------


@pytest.fixture(scope="module")
def bought(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """An auto-approved listing with one version, and buyer A's debit on it."""
    listing = create_listing(stack, auto_approve=True)
    data = make_csv(tmp_path_factory.mktemp("bought") / "data.csv", 3000, seed=7)
    publish(stack, listing, data)
    return request_debit(stack, "buyer_a", listing), data


def test_with_one_gateway_killed_the_buyer_still_decrypts(
    stack: DevStack, bought: tuple[int, Path], tmp_path: Path
) -> None:
    debit, data = bought
    stack.kill_gateway(2)
    got = fetch(stack, "buyer_a", debit, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_bytes() == data.read_bytes()
    assert "gateways 1, 3" in got.stderr


def test_with_two_gateways_killed_the_fetch_fails_clearly_and_writes_nothing(
    stack: DevStack, bought: tuple[int, Path], tmp_path: Path
) -> None:
    debit, _ = bought
    stack.kill_gateway(1)
    stack.kill_gateway(3)
    out = tmp_path / "out.csv"
    failed = fetch(stack, "buyer_a", debit, out, "--timeout", "3", expect=1)
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), failed.stderr
    assert "need 2" in lines[0]
    assert "node 1: unreachable" in lines[0] and "node 3: unreachable" in lines[0]
    assert list(tmp_path.iterdir()) == []


def _wait_for_cursor(stack: DevStack, index: int, block: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        cursor = stack.health(index)["cursor"]
        if isinstance(cursor, int) and cursor >= block:
            return cursor
        assert time.monotonic() < deadline, (
            f"gateway {index} cursor {cursor} never reached block {block}"
        )
        time.sleep(0.1)


def _persisted_cursor(database: Path) -> int:
    """The cursor a (stopped) gateway left in its SQLite file."""
    with closing(sqlite3.connect(database)) as db:
        row = db.execute("SELECT block_number FROM cursor WHERE id = 1").fetchone()
    assert row is not None
    return int(row[0])


def test_a_restarted_gateway_catches_up_from_its_persisted_cursor(
    stack: DevStack, tmp_path: Path
) -> None:
    market = market_of(stack)
    listing = create_listing(stack, auto_approve=False)
    publish(stack, listing, make_csv(tmp_path / "v1.csv", 2000, seed=11))
    debit = request_debit(stack, "buyer_b", listing)
    cursor_before = _wait_for_cursor(stack, 3, market.w3.eth.block_number)
    releases = httpx.get(f"{stack.gateways[3].url}/v1/releases", timeout=5.0).json()["releases"]

    stack.kill_gateway(3)
    persisted = _persisted_cursor(stack.gateways[3].database)
    assert persisted >= cursor_before  # (anchor transactions may have added blocks)
    # while node 3 is down: the owner consents and publishes a second version
    datadebit(stack, "owner", "owner", "consent", str(debit))
    data_v2 = make_csv(tmp_path / "v2.csv", 2000, seed=12)
    assert publish(stack, listing, data_v2) == 2
    head = market.w3.eth.block_number
    assert head > persisted

    stack.start_gateway(3)
    assert _wait_for_cursor(stack, 3, head) >= head
    after = httpx.get(f"{stack.gateways[3].url}/v1/releases", timeout=5.0).json()["releases"]
    assert after[: len(releases)] == releases  # its release log survived the crash

    # with node 1 down, t = 2 needs node 3: it serves the consent and version it missed
    stack.kill_gateway(1)
    got = fetch(stack, "buyer_b", debit, tmp_path / "out.csv")
    assert got.stdout.split()[0] == "2"
    assert (tmp_path / "out.csv").read_bytes() == data_v2.read_bytes()
    assert "gateways 2, 3" in got.stderr


def test_audit_after_the_crashes_and_restarts_is_clean(stack: DevStack) -> None:
    """Last in the module: kills and restarts above left nothing the auditor objects to."""
    audit(stack)


# -- the committee: a DKG among the gateway processes, then a reshare -----------------------


def _held_shares(stack: DevStack, epoch: int) -> dict[int, NodeShare]:
    """Each running member's share of `epoch`, opened from its gateway's state database
    with its node key (as only that node can): the test reassembles what no process ever
    does."""
    passphrase = stack.passphrase_file.read_text()
    shares: dict[int, NodeShare] = {}
    for gateway in stack.gateways.values():
        if not gateway.database.exists():
            continue
        key = load_node_key(gateway.node_key, passphrase)
        state = GatewayState(SqliteDatabase(gateway.database))
        try:
            held = ShareBook(state, key.account).get(epoch)
        finally:
            state.db.close()
        if held is not None:
            shares[held.index] = held.share
    return shares


def _secret_from(shares: list[NodeShare]) -> int:
    weights = lagrange_coefficients([s.index for s in shares])
    total = Scalar.from_int(0)
    for share in shares:
        total = total + weights[share.index] * Scalar.from_bytes(share.secret.to_secret_bytes())
    return total.to_int()


def _files_containing(folder: Path, needles: list[bytes]) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                found.append(path)
    return found


def test_the_committee_key_comes_from_a_dkg_and_no_node_file_or_log_holds_the_secret(
    stack: DevStack,
) -> None:
    market = market_of(stack)
    deployed = market.committee()
    ceremony = market.committee_at(1)
    assert ceremony.transcript_hash != TRUSTED_DEALER_TRANSCRIPT  # not dealt: a DKG ran
    assert len(market.ceremony_messages(ceremony.ceremony_id, 0)) >= 3 * 3  # deal/verdict/result
    shares = _held_shares(stack, 1)
    assert sorted(shares) == [1, 2, 3]
    for index, share in shares.items():
        assert share.share_key.point.to_bytes() == deployed.share_keys[index - 1]
    secret = _secret_from([shares[1], shares[3]])
    assert Point.base_mul(Scalar.from_int(secret)).to_bytes() == deployed.committee_key
    assert _secret_from([shares[2], shares[3]]) == secret
    for one in shares.values():  # t - 1 = 1 share alone is not the secret
        assert Scalar.from_bytes(one.secret.to_secret_bytes()).to_int() != secret
    encodings = [secret.to_bytes(32, "little"), secret.to_bytes(32, "big")]
    encodings += [e.hex().encode() for e in encodings]
    assert _files_containing(stack.state_dir, encodings) == []


def test_a_reshare_to_three_of_five_with_an_old_node_down_keeps_the_key_and_the_data(
    stack: DevStack, bought: tuple[int, Path], tmp_path: Path
) -> None:
    """Grow 2-of-3 to 3-of-5 while node 3 is down: the committee key stays byte-identical,
    a version published in epoch 1 opens from epoch-2 shares alone, the old shares are
    erased, and the whole story (publish, buy, consent, revoke, audit) goes on."""
    market = market_of(stack)
    before = market.committee()
    debit, data = bought
    stack.kill_gateway(3)
    stack.reshare(add=2, threshold=3)
    after = market.committee()
    assert market.current_epoch() == 2
    assert after.committee_key == before.committee_key
    assert after.threshold == 3 and len(after.nodes) == 5
    assert after.nodes[:3] == before.nodes
    for index in (1, 2):  # the running old nodes erased their epoch-1 shares
        passphrase = stack.passphrase_file.read_text()
        gateway = stack.gateways[index]
        state = GatewayState(SqliteDatabase(gateway.database))
        try:
            book = ShareBook(state, load_node_key(gateway.node_key, passphrase).account)
            assert book.epochs() == [2]
        finally:
            state.db.close()

    got = fetch(stack, "buyer_a", debit, tmp_path / "old.csv")  # epoch-1 capsule
    assert (tmp_path / "old.csv").read_bytes() == data.read_bytes()
    epochs = set()
    for index in (1, 2, 4, 5):
        releases = httpx.get(f"{stack.gateways[index].url}/v1/releases", timeout=5.0).json()
        epochs |= {r["receipt"]["epoch"] for r in releases["releases"]
                   if r["receipt"]["debitId"] == debit}
    assert 2 in epochs, got.stderr

    listing = create_listing(stack, auto_approve=False)
    fresh = make_csv(tmp_path / "fresh.csv", 2000, seed=21)
    assert publish(stack, listing, fresh) == 1
    later = request_debit(stack, "buyer_b", listing)
    datadebit(stack, "owner", "owner", "consent", str(later))
    fetch(stack, "buyer_b", later, tmp_path / "fresh-out.csv")
    assert (tmp_path / "fresh-out.csv").read_bytes() == fresh.read_bytes()
    datadebit(stack, "owner", "owner", "revoke", str(later))
    stack.start_gateway(3)  # back: it never held an epoch-2 share... until it reads the chain
    stack.wait_epoch(2)
    assert sorted(_held_shares(stack, 2)) == [1, 2, 3, 4, 5]
    audit(stack)
