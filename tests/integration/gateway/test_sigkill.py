"""A real crash: `datadebit gateway serve` SIGKILLed at random moments and restarted on the
same state (a SQLite file, then a Postgres database), over and over, loses and duplicates
nothing.

One node of a 2-of-3 committee runs as a real process against anvil. Each life of it:
start, let buyers hammer `POST /v1/keys` from several threads (new and already-released
(debit, version) pairs) while the background loop indexes and anchors every 0.1 s, then
SIGKILL the process group after a random delay (so kills land mid-request, mid-batch of
events, mid-anchoring or mid-start-up). While it is down the chain moves on: versions
published, debits opened, consents given. After the last kill a final life catches up.

What must hold then: the release log's sequence is 1..N with each (debit, version) once;
every share a buyer was ever answered with is in the log unchanged (nothing handed out was
lost) and is answered again identically; a request answered before a kill is answered again,
identically, after the restart, and its nonce in another request is refused; every receipt
is signed by the node and its share opens and verifies for the buyer; the anchors on-chain
are exactly the log's (no anchor lost or sent twice) and their roots are the Merkle roots of
the receipts; every chain log is indexed exactly once and the cursor is on the chain, at or
past the head; the events of the downtime are served. The random delays come from a fixed
seed, so a run can be replayed (timing still varies with the machine).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from marketplace.chain.events import ReleasesAnchored
from marketplace.chain.provider import connect
from marketplace.committee import KdfStrength, NodeKeyFile
from marketplace.eip712 import ReleaseReceipt, digest, recover_signer
from marketplace.gateway.database import open_database
from marketplace.gateway.state import GatewayState
from marketplace.keyrelease.share import open_sealed_share
from marketplace.merkle import merkle_root
from scripts.servers.postgres import create_database, start_postgres
from scripts.servers.process import free_port, stop_process_group
from tests.gateway.conftest import Published, Stack, build_stack

pytestmark = pytest.mark.integration

#: Kill/restart cycles per backend: SQLite (the default state) gets the most; each life
#: costs a process start (~1.5 s, mostly imports).
CYCLES = {"sqlite": 10, "postgres": 5}
SEED = 20260521
BUYER_THREADS = 4
#: A kill lands this long (uniformly drawn) after the node answers its first health check.
KILL_WINDOW = (0.0, 0.8)
STARTUP_TIMEOUT = 60.0
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class NodeProcess:
    """One `datadebit gateway serve` process at a time for node 1, on a fixed port/state."""

    args: list[str]
    url: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    lives: int = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            log.write(f"--- life {self.lives + 1}\n".encode())
            log.flush()
            env = {k: v for k, v in os.environ.items() if not k.startswith("DATADEBIT_")}
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.lives += 1
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"gateway not healthy within {STARTUP_TIMEOUT} s:\n{self.tail()}")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        assert self.proc.returncode == -signal.SIGKILL
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@dataclass
class Answered:
    """A 200 answer a buyer received: what the node promised."""

    pair: tuple[int, int]
    sealed_share: str
    receipt_signature: str
    body: dict[str, Any]


@dataclass
class Market:
    """The chain side of the test: listings, versions and the pairs entitled so far."""

    stack: Stack
    auto: int = 0
    manual: int = 0
    published: dict[tuple[int, int], Published] = field(default_factory=dict)
    debits: dict[int, int] = field(default_factory=dict)  # debit -> listing

    def publish(self, listing: int) -> None:
        p = self.stack.publish(listing)
        self.published[(listing, p.version)] = p

    def entitled(self) -> list[tuple[int, int]]:
        return sorted(
            (debit, version)
            for debit, listing in self.debits.items()
            for (lst, version) in self.published
            if lst == listing and self.stack.market.is_entitled(debit, version)
        )

    def downtime(self, cycle: int) -> None:
        """What happens on-chain while the node is down."""
        self.publish(self.auto)
        if cycle % 2 == 0:
            self.debits[self.stack.debit(self.auto)] = self.auto
        if cycle % 3 == 0:
            self.publish(self.manual)
            debit = self.stack.debit(self.manual)
            self.stack.market.consent(self.stack.owner, debit)
            self.debits[debit] = self.manual


class Buyers:
    """Threads asking the node for random entitled pairs until it dies or they are told."""

    def __init__(self, market: Market, url: str, rng: random.Random) -> None:
        self.pairs = market.entitled()
        self.stack = market.stack
        self.url = url
        self.seeds = [rng.getrandbits(32) for _ in range(BUYER_THREADS)]
        self.answered: list[Answered] = []
        self.refused: list[tuple[tuple[int, int], int, str]] = []
        self.cut_off = 0  # requests in flight when the node was killed
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(s,)) for s in self.seeds]

    def __enter__(self) -> Buyers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                pair = rng.choice(self.pairs)
                body = self.stack.body(*pair)
                try:
                    answer = client.post("/v1/keys", json=body)
                except httpx.TransportError:
                    with self._lock:
                        self.cut_off += 1
                    return  # the node is dead
                with self._lock:
                    if answer.status_code == 200:
                        data = answer.json()
                        self.answered.append(
                            Answered(pair, data["sealedShare"], data["receiptSignature"], body)
                        )
                    else:
                        self.refused.append((pair, answer.status_code, answer.text[:200]))


@pytest.fixture(scope="module")
def postgres_admin_url() -> Iterator[str]:
    with start_postgres() as url:
        yield url


@pytest.fixture(params=sorted(CYCLES))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def state_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'node1.db'}"
    admin_url = request.getfixturevalue("postgres_admin_url")
    return create_database(admin_url, f"sigkill_{secrets.token_hex(6)}")


def _node_process(stack: Stack, rpc_url: str, state_url: str, workdir: Path) -> NodeProcess:
    node = stack.services[1].node
    passphrase = secrets.token_urlsafe(16)
    key_file = workdir / "node-1.json"
    key = NodeKeyFile.create(node.share, node.account, passphrase, KdfStrength.INTERACTIVE)
    key_file.write_text(json.dumps(key.to_json()))
    passphrase_file = workdir / "passphrase"
    passphrase_file.write_text(passphrase)
    port = free_port()
    args = [
        sys.executable, "-m", "marketplace.cli", "gateway", "serve",
        "--node-key", str(key_file), "--rpc", rpc_url, "--market", stack.market.address,
        "--state", state_url, "--port", str(port), "--passphrase-file", str(passphrase_file),
        "--poll-interval", "0.05", "--anchor-interval", "0.1",
    ]
    return NodeProcess(args, f"http://127.0.0.1:{port}", workdir / "gateway.log")


def _releases(url: str) -> dict[str, Any]:
    page: dict[str, Any] = httpx.get(f"{url}/v1/releases", timeout=10).json()
    return page


def _wait_until(condition: Any, what: str, node: NodeProcess, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}:\n{node.tail()}")


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    anvil_url: str, backend: str, state_url: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    cycles = CYCLES[backend]
    stack = build_stack(connect(anvil_url))
    market = Market(stack, stack.listing(auto_approve=True), stack.listing(auto_approve=False))
    market.publish(market.auto)
    market.debits[stack.debit(market.auto)] = market.auto
    node = _node_process(stack, anvil_url, state_url, tmp_path)
    answered: list[Answered] = []
    refused: list[tuple[tuple[int, int], int, str]] = []
    replays_refused = cut_off = 0
    try:
        for cycle in range(cycles):
            node.start()
            # a nonce answered in an earlier life stays used across the crash: the same
            # request is answered again, identically; the nonce in another request is not
            for earlier in answered[-3:]:
                again = httpx.post(f"{node.url}/v1/keys", json=earlier.body, timeout=10)
                assert again.status_code == 200, again.text
                assert again.json()["sealedShare"] == earlier.sealed_share
                request = earlier.body["request"]
                other = stack.body(  # the buyer's own signature over another request
                    *earlier.pair, nonce=bytes.fromhex(request["nonce"][2:]),
                    expiry=request["expiry"] - 1,
                )
                replay = httpx.post(f"{node.url}/v1/keys", json=other, timeout=10)
                assert (replay.status_code, replay.json()["code"]) == (409, "nonce_reused")
                replays_refused += 1
            with Buyers(market, node.url, rng) as buyers:
                time.sleep(rng.uniform(*KILL_WINDOW))
                node.kill()
            answered += buyers.answered
            refused += buyers.refused
            cut_off += buyers.cut_off
            market.downtime(cycle)

        # the last life: catch up, answer everything, anchor everything
        node.start()
        head = stack.market.w3.eth.block_number
        _wait_until(
            lambda: httpx.get(f"{node.url}/v1/health", timeout=5).json()["cursor"] == head,
            "the cursor to reach the head", node,
        )
        final: dict[tuple[int, int], dict[str, Any]] = {}
        for pair in market.entitled():
            answer = httpx.post(f"{node.url}/v1/keys", json=stack.body(*pair), timeout=10)
            assert answer.status_code == 200, (pair, answer.text)
            final[pair] = answer.json()
        page = _wait_until(
            lambda: (p := _releases(node.url))["anchors"]
            and p["anchors"][-1]["lastSeq"] == len(p["releases"]) and p,
            "every release to be anchored", node,
        )
    finally:
        node.stop()

    releases = page["releases"]
    # a gap-free log with one release per (debit, version), covering every entitled pair
    assert [r["seq"] for r in releases] == list(range(1, len(releases) + 1))
    pairs = [(r["receipt"]["debitId"], r["receipt"]["version"]) for r in releases]
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == set(final)
    by_pair = dict(zip(pairs, releases, strict=True))

    # every answer ever given is the log's, unchanged, and is given again identically
    assert answered, "no request was answered before a kill: the test proved nothing"
    for a in answered:
        assert by_pair[a.pair]["receiptSignature"] == a.receipt_signature
        assert final[a.pair]["sealedShare"] == a.sealed_share
    # each receipt is the node's, over the share it hands out, which the buyer can use
    share_key = stack.dealt.keys.share_keys[0]
    node_address = stack.services[1].node.address
    leaves = []
    for pair, entry in by_pair.items():
        receipt = ReleaseReceipt.from_message(entry["receipt"])
        signature = bytes.fromhex(entry["receiptSignature"][2:])
        assert recover_signer(stack.domain, receipt, signature) == node_address
        sealed = base64.b64decode(final[pair]["sealedShare"])
        assert receipt.sealed_share_hash == hashlib.sha256(sealed).digest()
        listing = market.debits[pair[0]]
        key_share = open_sealed_share(sealed, stack.buyer_secret, *pair)
        key_share.verify(share_key, market.published[(listing, pair[1])].capsule)
    for entry in releases:
        leaves.append(digest(stack.domain, ReleaseReceipt.from_message(entry["receipt"])))

    # the anchors on-chain are exactly the log's: none lost, none sent twice
    events = [
        e for e in stack.market.events().read(0, kinds=[ReleasesAnchored])
        if isinstance(e, ReleasesAnchored) and e.node == node_address
    ]
    anchors = page["anchors"]
    assert [e.seq for e in events] == [a["anchorSeq"] for a in anchors] == list(
        range(1, len(anchors) + 1)
    )
    assert anchors[0]["firstSeq"] == 1
    for a, b in itertools.pairwise(anchors):
        assert b["firstSeq"] == a["lastSeq"] + 1
    for anchor, event in zip(anchors, events, strict=True):
        assert event.count == anchor["lastSeq"] - anchor["firstSeq"] + 1
        assert event.root == bytes.fromhex(anchor["root"][2:])
        assert event.root == merkle_root(leaves[anchor["firstSeq"] - 1 : anchor["lastSeq"]])

    # every chain log up to the cursor indexed exactly once; the cursor on the chain, at
    # or past the head the last life started at (its last anchor may be newer)
    state = GatewayState(open_database(state_url))
    with state.db.transaction() as tx:
        processed = tx.all("SELECT block_hash, tx_hash, log_index FROM processed_logs")
    cursor = state.cursor()
    state.db.close()
    assert cursor is not None and cursor.block_number >= head
    w3 = stack.market.w3
    assert cursor.block_hash == "0x" + bytes(w3.eth.get_block(cursor.block_number)["hash"]).hex()
    on_chain = stack.market.events().read(0, to_block=cursor.block_number)
    assert len(processed) == len(set(processed)) == len(on_chain)
    assert set(processed) == {e.ref.key for e in on_chain}

    print(  # the figures for docs/decisions.md (`pytest -s`)
        f"\n{backend}: {cycles} kills; {len(answered)} answers before kills, "
        f"{cut_off} cut off mid-request, {len(refused)} refusals; "
        f"{len(releases)} releases, {len(anchors)} anchors; {replays_refused} replays refused; "
        f"{node.log.read_text().count('recovered anchor')} anchors recovered from the chain"
    )
