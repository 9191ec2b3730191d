"""Reading a node's log costs the auditor bounded bytes, time and entries (issue 9,
item 7): hostile nodes staged with fake httpx transports."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from marketplace.audit.release_log import (
    MAX_PAGE_BYTES,
    HttpReleaseLog,
    MalformedReleaseLog,
    NodeUnreachable,
    OversizedReleasePage,
    ReleasePage,
    fetch_log,
)
from tests.audit.test_release_requests import honest

MiB = 1024 * 1024


class CountedStream(httpx.SyncByteStream):
    """A response body handed out chunk by chunk, counting what the client pulled."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.pulled += len(chunk)
            yield chunk


def node(stream: CountedStream, headers: dict[str, str] | None = None,
         seen: list[httpx.Request] | None = None, **kwargs: object) -> HttpReleaseLog:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(200, headers=headers or {}, stream=stream)

    client = httpx.Client(transport=httpx.MockTransport(answer), base_url="http://node-1")
    return HttpReleaseLog(1, client, **kwargs)  # type: ignore[arg-type]


def gzip_bomb(expanded: int) -> bytes:
    """A gzip member that inflates to `expanded` bytes of a JSON page full of spaces."""
    out = gzip.compress(b'{"releases": [' + b" " * expanded + b"]}", compresslevel=9)
    return out


def test_a_gzip_bomb_is_refused_unread() -> None:
    """Issue 9 item 7: the old reader let httpx inflate the answer (a 128 KiB gzip body
    became 128 MiB in memory before the JSON parser saw it, 131 MiB for 509 KiB on the
    issue's measurement). Now `Accept-Encoding: identity` is sent and an encoded answer is
    refused before its body is read."""
    bomb = gzip_bomb(128 * MiB)
    assert len(bomb) < MiB
    stream = CountedStream(iter([bomb[i:i + 65536] for i in range(0, len(bomb), 65536)]))
    seen: list[httpx.Request] = []
    source = node(stream, {"Content-Encoding": "gzip"}, seen)
    with pytest.raises(MalformedReleaseLog, match="'gzip'-encoded answer") as raised:
        source.page(0, 1000)
    assert raised.value.kind == "log_malformed"
    assert seen[0].headers["accept-encoding"] == "identity"
    assert stream.pulled == 0


def test_an_endless_identity_answer_stops_at_the_byte_cap() -> None:
    def forever() -> Iterator[bytes]:
        yield b'{"releases": ['
        while True:
            yield b" " * 65536

    stream = CountedStream(forever())
    with pytest.raises(OversizedReleasePage) as raised:
        node(stream, max_page_bytes=MiB).page(0, 1000)
    assert raised.value.kind == "log_oversized"
    assert MiB < stream.pulled <= MiB + 2 * 65536


def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    stream = CountedStream(iter([b" " * 100]))
    with pytest.raises(OversizedReleasePage):
        node(stream, {"Content-Length": str(MAX_PAGE_BYTES + 1)}).page(0, 1000)
    assert stream.pulled == 0


def test_a_trickling_node_is_given_up_on_at_the_page_deadline() -> None:
    """A byte at a time, each inside httpx's per-read timeout: bounded by the whole-page
    deadline (the clock is faked: one second per chunk)."""
    now = [0.0]

    def trickle() -> Iterator[bytes]:
        while True:
            now[0] += 1.0
            yield b" "

    stream = CountedStream(trickle())
    with pytest.raises(NodeUnreachable, match="no complete page within 30 s"):
        node(stream, page_deadline=30.0, clock=lambda: now[0]).page(0, 1000)
    assert stream.pulled <= 31


def test_an_honest_identity_page_parses() -> None:
    release = honest()
    body = {"node": 1, "address": "0x", "anchors": [], "releases": [{
        "seq": 1, "receipt": release.receipt.to_message(),
        "receiptSignature": "0x" + release.signature.hex(),
        "request": release.request.to_message() if release.request else None,
        "requestSignature": "0x" + release.request_signature.hex(),
    }]}
    stream = CountedStream(iter([json.dumps(body).encode()]))
    (parsed,) = node(stream, {"Content-Encoding": "identity"}).page(0, 1000).releases
    assert parsed == release


class EndlessLog:
    """A node whose log never ends: every page is full."""

    def __init__(self) -> None:
        self.template = honest()
        self.asked: list[tuple[int, int]] = []

    def page(self, after: int, limit: int) -> ReleasePage:
        self.asked.append((after, limit))
        rows = tuple(replace(self.template, seq=after + i) for i in range(1, limit + 1))
        return ReleasePage(1, "", rows)


def test_an_endless_log_is_cut_at_the_entry_bound() -> None:
    """Issue 9 item 7: `fetch_log` read until a short page, so an endless log was read for
    ever; now at most `max_entries` (plus one, to know it was cut)."""
    source = EndlessLog()
    fetched = fetch_log(source, page_size=1000, max_entries=2500)
    assert fetched.cut and len(fetched.entries) == 2500
    assert [e.seq for e in fetched.entries[-2:]] == [2499, 2500]
    assert sum(limit for _, limit in source.asked) == 2501


def test_a_log_of_exactly_the_bound_is_not_cut() -> None:
    source = EndlessLog()

    class Finite:
        def page(self, after: int, limit: int) -> ReleasePage:
            page = source.page(after, limit)
            return ReleasePage(1, "", tuple(e for e in page.releases if e.seq <= 1500))

    fetched = fetch_log(Finite(), page_size=1000, max_entries=1500)
    assert not fetched.cut and len(fetched.entries) == 1500
    assert fetch_log(Finite(), page_size=1000, max_entries=1499).cut


def test_a_page_longer_than_asked_is_malformed() -> None:
    class Generous(EndlessLog):
        def page(self, after: int, limit: int) -> ReleasePage:
            return super().page(after, limit + 1)

    with pytest.raises(MalformedReleaseLog, match="entries for a page of at most"):
        fetch_log(Generous(), page_size=10)
