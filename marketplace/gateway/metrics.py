"""Prometheus metrics for one gateway node, served at `GET /metrics` (README, Operations).

Two kinds, with different costs:
- per request (`POST /v1/keys`): a counter by stable outcome code and a latency
  histogram, updated by a small ASGI middleware (`KeysRequestMetrics`) that sees every
  answer, the ones served from memory on the event loop included, for a few
  microseconds each;
- per scrape: gauges read from the node's state and the chain by a custom collector
  (`StateCollector`), never on a request's path. A failing state database or chain
  node at scrape time drops the gauges it feeds and counts a scrape error: `/metrics`
  itself always answers 200.

Each node's metrics live in a registry of their own, never prometheus_client's global
one: one process may run several nodes (the demo, the tests).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from time import perf_counter
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marketplace.gateway.state import GatewayState

if TYPE_CHECKING:
    from marketplace.gateway.service import GatewayService

log = logging.getLogger(__name__)

PREFIX = "datadebit_gateway_"
KEYS_PATH = "/v1/keys"
#: Latency buckets (seconds): fine around the 1-50 ms release budget (DESIGN §8, p95 ≤
#: 50 ms for a whole fetch), coarse above it to show how far a slow node strays.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
    2.5,
)
#: The code of a `POST /v1/keys` answered 200, and of one that raised past every handler.
OK = "ok"
INTERNAL = "internal"


class HeadSource(Protocol):
    """Where the collector reads the confirmed head (the watcher's event reader)."""

    def confirmed_head(self) -> int: ...


class GatewayMetrics:
    """One node's metrics and the registry that exports them."""

    def __init__(
        self,
        state: GatewayState,
        chain: HeadSource,
        *,
        start_block: int = 0,
        codes: Iterable[str] = (),
    ) -> None:
        """`codes`: the stable error codes, exported at 0 from the start so that rates
        and alerts work before a code's first occurrence."""
        self.registry = CollectorRegistry()
        self.keys_requests = Counter(
            PREFIX + "keys_requests",
            "POST /v1/keys answers by outcome: ok, or the stable error code of the refusal",
            ["code"], registry=self.registry,
        )
        self._by_code = {code: self.keys_requests.labels(code=code) for code in (OK, *codes)}
        self.keys_latency = Histogram(
            PREFIX + "keys_request_duration_seconds",
            "Time to answer POST /v1/keys inside the app, by outcome (released or refused)",
            ["outcome"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self._released = self.keys_latency.labels(outcome="released")
        self._refused = self.keys_latency.labels(outcome="refused")
        self.state_store_errors = Counter(
            PREFIX + "state_store_errors",
            "Requests answered state_unavailable (503) because the state database failed",
            registry=self.registry,
        )
        self.registry.register(StateCollector(state, chain, start_block=start_block))

    @classmethod
    def for_service(cls, service: GatewayService, *, codes: Iterable[str] = ()) -> GatewayMetrics:
        return cls(
            service.state, service.watcher.reader, start_block=service.start_block, codes=codes
        )

    def observe_keys_request(self, code: str, seconds: float) -> None:
        """Count one `POST /v1/keys` answer and time it (the per-request cost)."""
        counter = self._by_code.get(code)
        if counter is None:  # codes come from the app's own answers: a small, fixed set
            counter = self._by_code[code] = self.keys_requests.labels(code=code)
        counter.inc()
        (self._released if code == OK else self._refused).observe(seconds)

    def scrape(self, request: Request) -> Response:
        """`GET /metrics`: the exposition format the scraper asks for (Prometheus text by
        default, OpenMetrics on request). Sync: Starlette runs it in a worker thread,
        off the event loop, since collecting reads the database and the chain."""
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(self.registry), media_type=content_type)


class KeysRequestMetrics:
    """ASGI middleware: counts each `POST /v1/keys` answer by its stable code (read from
    the JSON error body, since several codes share a status) and times it. Other routes
    pass straight through."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != KEYS_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 0
        code = INTERNAL

        async def counting_send(message: Message) -> None:
            nonlocal status, code
            if message["type"] == "http.response.start":
                status = message["status"]
                code = OK if status == 200 else f"http_{status}"
            elif status != 200 and code.startswith("http_"):  # the first body chunk
                code = _error_code(message.get("body", b"")) or code
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.observe_keys_request(code, perf_counter() - started)


def _error_code(body: bytes) -> str | None:
    """The `code` of a `{"code", "message"}` error body, None if it is not one."""
    try:
        code = json.loads(body)["code"]
    except (ValueError, TypeError, KeyError):
        return None
    return code if isinstance(code, str) and 0 < len(code) <= 64 else None


class StateCollector:
    """Gauges read at scrape time: prepared shares, the anchoring backlog, releases, and
    the indexing lag (confirmed head minus the watcher's cursor).

    Each source that fails is skipped and counted in `scrape_errors_total{source}`;
    nothing here raises, so a scrape never fails because the node is degraded (that is
    when the metrics matter most).
    """

    def __init__(self, state: GatewayState, chain: HeadSource, *, start_block: int = 0) -> None:
        self._state = state
        self._chain = chain
        self._start_block = start_block
        # not registered anywhere: this collector exports it after the reads it counts, so
        # a scrape shows its own failure
        self._errors = Counter(
            PREFIX + "scrape_errors",
            "Failures to read a source of the scrape-time gauges (state or chain)",
            ["source"], registry=None,
        )
        self._state_errors = self._errors.labels(source="state")
        self._chain_errors = self._errors.labels(source="chain")

    def describe(self) -> Iterator[Metric]:
        """The names this collector exports, without reading anything (for the
        registry's duplicate check)."""
        yield from self._families()
        yield from self._errors.describe()

    def collect(self) -> Iterator[Metric]:
        prepared, releases, backlog, lag = self._families()
        cursor_block: int | None = None
        try:
            cursor = self._state.cursor()
            prepared.add_metric([], self._state.prepared_count())
            last_seq = self._state.last_release_seq()
            anchored = self._state.last_anchored_seq()
        except Exception as e:
            log.warning("metrics: reading the state database failed (%s)", type(e).__name__)
            self._state_errors.inc()
        else:
            releases.add_metric([], last_seq)
            backlog.add_metric([], max(last_seq - anchored, 0))
            yield from (prepared, releases, backlog)
            cursor_block = cursor.block_number if cursor else self._start_block - 1
        if cursor_block is not None:
            try:
                head = self._chain.confirmed_head()
            except Exception as e:
                log.warning("metrics: reading the chain head failed (%s)", type(e).__name__)
                self._chain_errors.inc()
            else:
                # a cursor past the head (a shorter chain not yet rewound) has nothing to index
                lag.add_metric([], max(head - cursor_block, 0))
                yield lag
        yield from self._errors.collect()

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily, GaugeMetricFamily,
                             GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                PREFIX + "prepared_shares",
                "Sealed shares prepared ahead of requests (rows of the prepared table)",
            ),
            CounterMetricFamily(
                PREFIX + "releases",
                "Releases in the node's append-only log (its last sequence number)",
            ),
            GaugeMetricFamily(
                PREFIX + "anchor_backlog",
                "Releases not yet covered by an on-chain anchor (last seq - last anchored seq)",
            ),
            GaugeMetricFamily(
                PREFIX + "indexing_lag_blocks",
                "Confirmed head minus the last block the watcher indexed",
            ),
        )
