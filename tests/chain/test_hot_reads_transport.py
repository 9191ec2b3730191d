"""`HotReads` over a fake JSON-RPC server: a kept-alive connection the server dropped is
reopened once, transparently; a server that never answers is `ChainUnavailable` after
one wait; error answers are `ChainError`."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from marketplace.chain.artifacts import load_artifact
from marketplace.chain.errors import ChainError, ChainUnavailable
from marketplace.chain.hot_reads import HotReads
from marketplace.chain.reverts import RevertDecoder

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"

# what one accepted connection does: answer the first request (or not), then close
Behaviour = Callable[[socket.socket, int], None]


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return body


def _answer(conn: socket.socket, result: dict[str, object]) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, **result}).encode()
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )


@contextmanager
def fake_node(behaviour: Behaviour) -> Iterator[tuple[str, list[int]]]:
    """A loopback server running `behaviour` per connection; yields (url, connection log)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(len(accepted))
            with conn:
                behaviour(conn, len(accepted))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(5)
        server.close()


def _reads(url: str, timeout: float = 5.0) -> HotReads:
    return HotReads(url, MARKET, RevertDecoder(load_artifact().abi), timeout=timeout)


def test_a_dropped_keep_alive_connection_is_reopened_once() -> None:
    def one_answer_per_connection(conn: socket.socket, number: int) -> None:
        _read_request(conn)
        _answer(conn, {"result": hex(100 + number)})
        # then close, although the answer said nothing about closing

    with fake_node(one_answer_per_connection) as (url, accepted):
        reads = _reads(url)
        assert reads.block_number() == 101
        assert reads.block_number() == 102  # the kept connection was dead: a fresh one
        assert len(accepted) == 2


def test_a_node_that_never_answers_is_unavailable_after_one_wait() -> None:
    def silent(conn: socket.socket, number: int) -> None:
        _read_request(conn)
        conn.recv(1)  # until the client gives up and closes

    with fake_node(silent) as (url, accepted):
        with pytest.raises(ChainUnavailable):
            _reads(url, timeout=0.3).block_number()
        assert len(accepted) == 1


@pytest.mark.parametrize(
    ("answer", "call"),
    [
        ({"error": {"code": -32000, "message": "header not found"}}, "block"),
        ({"result": "0x" + "00" * 31 + "02"}, "entitled"),
        ({"result": "0x01"}, "entitled"),
        ({"result": 7}, "block"),
        ({"result": "0x" + "zz" * 32}, "entitled"),
        ({"result": {"hash": "0xnothex"}}, "hash"),
    ],
    ids=[
        "error answer", "bool word out of range", "short word", "number not hex",
        "word not hex", "block hash not hex",
    ],
)
def test_error_and_malformed_answers_are_chain_errors(
    answer: dict[str, object], call: str
) -> None:
    def once(conn: socket.socket, number: int) -> None:
        _read_request(conn)
        _answer(conn, answer)

    with fake_node(once) as (url, _):
        reads = _reads(url)
        with pytest.raises(ChainError) as raised:
            if call == "block":
                reads.block_number()
            elif call == "hash":
                reads.block_hash(5)
            else:
                reads.is_entitled(1, 1, "0x" + "00" * 32)
        assert not isinstance(raised.value, ChainUnavailable)  # the node did answer
