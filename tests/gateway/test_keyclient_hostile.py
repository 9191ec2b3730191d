"""The buyer's key client against hostile gateways that never send a bad share, only
slow or swollen answers (issue 9, items 6 and 7): a gateway trickling one byte a second
cannot stall a fetch past its deadline nor keep the process alive after it, and a gzip
bomb is refused before it is inflated.

The committee here is all fakes (a freshly dealt 2-of-3, honest nodes answering through
`httpx.MockTransport` with real sealed shares), so no chain is needed; the tricklers are
real loopback sockets, because the stall lives in the socket reads.
"""

from __future__ import annotations

import base64
import os
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from marketplace.eip712 import Eip712Domain
from marketplace.keyclient import (
    MAX_ANSWER_SIZE,
    FetchedKey,
    KeyClient,
    KeyFetchFailed,
    gateway_client,
)
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import Capsule, CapsuleContext, make_capsule
from marketplace.keyrelease.dealer import DealtCommittee, deal
from marketplace.keyrelease.share import make_sealed_share
from storage.keys import DataKey

MARKET = "0x" + "42" * 20
DEBIT = 7
TIMEOUT = 2.0
#: Slack for a loaded 2-core machine; a stall would take TRICKLE_LIMIT (30 s) or more.
SLACK = 3.0
#: A trickler gives up by itself after this many seconds (bounded test traffic).
TRICKLE_LIMIT = 30.0


@dataclass
class Fakes:
    """A dealt committee, a published capsule and a buyer: everything but a chain."""

    dealt: DealtCommittee
    domain: Eip712Domain
    buyer: LocalAccount
    buyer_secret: BuyerSecretKey
    ctx: CapsuleContext
    capsule: Capsule
    data_key: DataKey

    def honest(self, index: int) -> httpx.Client:
        sealed = make_sealed_share(
            self.dealt.shares[index - 1], self.capsule.bind(self.ctx),
            self.buyer_secret.public_key(), DEBIT, self.ctx.version,
        )
        answer = {"node": index, "sealedShare": base64.b64encode(sealed).decode()}
        return _answering(lambda _: httpx.Response(200, json=answer))

    def fetch(self, nodes: dict[int, httpx.Client], timeout: float = TIMEOUT) -> FetchedKey:
        client = KeyClient(self.dealt.keys, self.domain, nodes, timeout=timeout)
        return client.fetch(self.buyer, self.buyer_secret, DEBIT, self.ctx, self.capsule)


def _answering(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler), base_url="http://gateway")


def _refusing() -> httpx.Client:
    body = {"code": "chain_unavailable", "message": "no"}
    return _answering(lambda _: httpx.Response(503, json=body))


@pytest.fixture
def fakes() -> Fakes:
    dealt = deal(3, 2)
    domain = Eip712Domain(31337, MARKET)
    buyer: LocalAccount = Account.create()
    ctx = CapsuleContext(31337, MARKET, 1, 1, bytes.fromhex("01551220") + os.urandom(32))
    data_key = DataKey.generate()
    capsule = make_capsule(data_key, ctx, dealt.keys.committee_key)
    return Fakes(
        dealt, domain, buyer, BuyerSecretKey.from_account(buyer, domain), ctx, capsule, data_key
    )


# ------------------------------------------------------------------ trickling gateways


class _Trickler(socketserver.ThreadingTCPServer):
    """A loopback 'gateway' that reads the request, then sends its answer one byte a
    second: in the status line ("headers") or after complete headers ("body"). It stops
    by itself after TRICKLE_LIMIT seconds or when closed."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, where: str) -> None:
        super().__init__(("127.0.0.1", 0), _TrickleHandler)
        self.where = where
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()


class _TrickleHandler(socketserver.BaseRequestHandler):
    server: _Trickler

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5)
        _read_request(sock)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99999\r\n\r\n"
        if self.server.where == "body":
            sock.sendall(head)
            drip = b"{" + b" " * 99998
        else:
            drip = head
        began = time.monotonic()
        for byte in drip:
            if self.server.stop.wait(1.0) or time.monotonic() - began > TRICKLE_LIMIT:
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return


def _read_request(sock: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            return
        body += chunk


@pytest.fixture(params=["headers", "body"])
def trickler(request: pytest.FixtureRequest) -> Iterator[_Trickler]:
    server = _Trickler(request.param)
    yield server
    server.close()


def _worker_of(node: int) -> threading.Thread | None:
    return next((t for t in threading.enumerate() if t.name == f"keyclient-node-{node}"), None)


def test_trickling_node_is_timed_out_by_the_deadline(fakes: Fakes, trickler: _Trickler) -> None:
    """Node 1 trickles, node 3 refuses: the fetch fails by the deadline naming node 1 as
    timed out, and node 1's worker ends by then too. Before the fix each byte restarted
    the per-read timeout, so this fetch took as long as the trickler cared to drip
    (TRICKLE_LIMIT here, up to 65,536 reads x timeout in the wild)."""
    slow = gateway_client(trickler.url)
    try:
        began = time.monotonic()
        with pytest.raises(KeyFetchFailed) as failed:
            fakes.fetch({1: slow, 2: fakes.honest(2), 3: _refusing()})
        took = time.monotonic() - began
        worker = _worker_of(1)
        if worker is not None:
            worker.join(timeout=SLACK)
            assert not worker.is_alive(), "the trickling node's worker outlived the deadline"
    finally:
        slow.close()
    assert took < TIMEOUT + SLACK
    assert (failed.value.have, failed.value.need) == (1, 2)
    assert "timed out" in failed.value.faults[1]
    assert "chain_unavailable" in failed.value.faults[3]


def test_two_honest_nodes_suffice_beside_a_trickler(fakes: Fakes, trickler: _Trickler) -> None:
    slow = gateway_client(trickler.url)
    try:
        began = time.monotonic()
        fetched = fakes.fetch({1: slow, 2: fakes.honest(2), 3: fakes.honest(3)})
        took = time.monotonic() - began
    finally:
        slow.close()
    assert fetched.data_key == fakes.data_key
    assert fetched.used_nodes == (2, 3)
    assert took < TIMEOUT + SLACK


def test_an_in_process_node_that_hangs_is_timed_out(fakes: Fakes) -> None:
    """Any transport (here a MockTransport that never returns in time) is bounded by the
    deadline: the fetch does not wait for the worker at all."""
    release = threading.Event()

    def hang(_: httpx.Request) -> httpx.Response:
        release.wait(60)
        return httpx.Response(503, json={"code": "chain_unavailable", "message": ""})

    try:
        began = time.monotonic()
        with pytest.raises(KeyFetchFailed) as failed:
            fakes.fetch({1: _answering(hang), 2: fakes.honest(2)}, timeout=0.5)
        assert time.monotonic() - began < 0.5 + SLACK
    finally:
        release.set()
    assert failed.value.faults == {1: "timed out (no complete answer within 0.5 s)"}


_ONLY_TRICKLERS = textwrap.dedent(
    """
    import os, sys, time
    import httpx
    from eth_account import Account
    from marketplace.eip712 import Eip712Domain
    from marketplace.keyclient import KeyClient, KeyFetchFailed
    from marketplace.keyrelease.buyer_key import BuyerSecretKey
    from marketplace.keyrelease.capsule import CapsuleContext, make_capsule
    from marketplace.keyrelease.dealer import deal
    from storage.keys import DataKey

    market = "0x" + "42" * 20
    dealt = deal(3, 2)
    domain = Eip712Domain(31337, market)
    buyer = Account.create()
    ctx = CapsuleContext(31337, market, 1, 1, bytes.fromhex("01551220") + os.urandom(32))
    capsule = make_capsule(DataKey.generate(), ctx, dealt.keys.committee_key)
    # plain httpx clients, as any library user would pass: no deadline-aware sockets
    nodes = {i: httpx.Client(base_url=url, timeout=2.0) for i, url in enumerate(sys.argv[1:], 1)}
    client = KeyClient(dealt.keys, domain, nodes, timeout=2.0)
    try:
        client.fetch(buyer, BuyerSecretKey.from_account(buyer, domain), 7, ctx, capsule)
    except KeyFetchFailed as e:
        print(e)
    print("fetch over", flush=True)
    """
)


def test_process_exits_soon_after_a_fetch_from_trickling_nodes(tmp_path: Path) -> None:
    """A buyer process whose every gateway trickles exits soon after its 2 s fetch.
    Before the fix it ran until the tricklers gave up (TRICKLE_LIMIT): the fetch itself
    stalled, and the pool's non-daemon workers were joined at interpreter exit."""
    servers = [_Trickler(where) for where in ("headers", "body", "body")]
    script = tmp_path / "fetch.py"
    script.write_text(_ONLY_TRICKLERS)
    try:
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(script), *(s.url for s in servers)],
            check=False, capture_output=True, text=True, timeout=15,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        took = time.monotonic() - began
    finally:
        for server in servers:
            server.close()
    assert done.returncode == 0, done.stderr
    assert "got 0 valid key shares, need 2" in done.stdout
    assert done.stdout.count("timed out") == 3
    assert "fetch over" in done.stdout
    assert took < 15


# ------------------------------------------------------------------ swollen answers


def _gzip_of_zeros(size: int) -> bytes:
    """gzip of `size` zero bytes, made without holding them (a bomb: ~1,000x)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    out = [packer.compress(block) for _ in range(size >> 20)]
    out.append(packer.flush())
    return b"".join(out)


class _Streamed(httpx.SyncByteStream):
    """A body handed over in 64 KiB pieces, as a socket would (a plain `content=` body
    is read, and so inflated, when the fake builds its Response)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        for at in range(0, len(self._body), 1 << 16):
            yield self._body[at:at + (1 << 16)]


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """~131 MiB inflated, as in the review's report."""
    return _gzip_of_zeros(131 << 20)


@pytest.mark.parametrize("size", ["bomb", "small"])
def test_gzip_answer_is_refused_before_it_is_inflated(
    fakes: Fakes, bomb: bytes, size: str
) -> None:
    """A gateway answering a gzip body is a fault, and costs the buyer next to no memory.
    Before the fix the client asked for any encoding and counted decoded bytes: the
    bomb was inflated (131 MiB) before the 64 KiB cap looked at it. "small" fits the raw
    cap, so only the encoding check refuses it."""
    body = bomb if size == "bomb" else _gzip_of_zeros(16 << 20)
    if size == "small":
        assert len(body) < MAX_ANSWER_SIZE
    seen: list[str] = []

    def swollen(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Accept-Encoding", ""))
        return httpx.Response(
            200, stream=_Streamed(body),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    tracemalloc.start()
    try:
        with pytest.raises(KeyFetchFailed) as failed:
            fakes.fetch({1: _answering(swollen), 3: fakes.honest(3)})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == ["identity"]
    assert "Content-Encoding 'gzip'" in failed.value.faults[1]
    assert peak < 16 << 20
