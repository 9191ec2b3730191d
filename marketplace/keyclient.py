"""The buyer's side of key release: ask every gateway at once, stop at t valid shares.

One wallet-signed `KeyRequest` goes to all nodes in parallel (each node keeps its own
nonce log, so one signature serves all). Each answer is opened with the buyer's X25519
key and its DLEQ proof checked against Y_i from the contract; a node whose share fails
is named, never used. With fewer than t valid shares the error lists every node's fault.

A fetch has one deadline (`timeout` seconds from its start), not a timeout per read: a
gateway that trickles its answer a byte at a time cannot hold the buyer past it. The
workers are daemon threads, so a node still talking when the fetch returns can never
keep the process alive, and with clients from `gateway_client` every socket operation
is cut off at the deadline too, so the worker itself ends by then.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import queue
import threading
import time
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import httpcore
import httpx
from eth_account.signers.local import LocalAccount

from marketplace.eip712 import Eip712Domain, KeyRequest, sign
from marketplace.errors import MarketplaceError
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import Capsule, CapsuleContext
from marketplace.keyrelease.combine import combine
from marketplace.keyrelease.errors import KeyReleaseError
from marketplace.keyrelease.keys import CommitteeKeys
from marketplace.keyrelease.share import VerifiedKeyShare, open_sealed_share
from storage.keys import DataKey

log = logging.getLogger(__name__)

#: How long a request stays valid; gateways accept at most 600 s.
REQUEST_LIFETIME = 120
#: Seconds a whole fetch may take by default (every node, every byte).
DEFAULT_TIMEOUT = 10.0


class KeyFetchFailed(MarketplaceError):
    """Fewer than t gateways gave a valid share; `faults` says what each node did."""

    def __init__(self, have: int, need: int, faults: Mapping[int, str]) -> None:
        self.have = have
        self.need = need
        self.faults = dict(faults)
        detail = "; ".join(f"node {i}: {why}" for i, why in sorted(self.faults.items()))
        super().__init__(f"got {have} valid key shares, need {need} ({detail or 'no answers'})")


@dataclass(frozen=True, slots=True)
class FetchedKey:
    """The recovered data key and what each node did (for receipts and blame)."""

    data_key: DataKey
    used_nodes: tuple[int, ...]
    faults: dict[int, str] = field(default_factory=dict)
    receipts: dict[int, dict[str, object]] = field(default_factory=dict)


class KeyClient:
    """Fetches data keys from a committee's gateways over HTTP, each fetch bounded by
    `timeout` seconds in all."""

    def __init__(
        self,
        committee: CommitteeKeys,
        domain: Eip712Domain,
        nodes: Mapping[int, httpx.Client],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        now: Callable[[], float] = time.time,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.committee = committee
        self.domain = domain
        self.nodes = dict(nodes)
        self.timeout = timeout
        self._now = now

    def fetch(
        self,
        wallet: LocalAccount,
        buyer_secret: BuyerSecretKey,
        debit_id: int,
        ctx: CapsuleContext,
        capsule: Capsule,
    ) -> FetchedKey:
        """Sign one request, ask all nodes at once, combine the first t valid shares;
        returns or raises `KeyFetchFailed` by the deadline."""
        deadline = Deadline(time.monotonic() + self.timeout)
        request = KeyRequest(
            debit_id=debit_id,
            version=ctx.version,
            expiry=int(self._now()) + REQUEST_LIFETIME,
            nonce=os.urandom(32),
        )
        body: dict[str, object] = {
            "request": request.to_message(),
            "signature": "0x" + sign(wallet, self.domain, request).hex(),
        }
        valid: dict[int, VerifiedKeyShare] = {}
        faults: dict[int, str] = {}
        receipts: dict[int, dict[str, object]] = {}
        need = self.committee.threshold
        answers: queue.SimpleQueue[tuple[int, dict[str, object] | GatewayAnswerError]] = (
            queue.SimpleQueue()
        )
        for index, client in self.nodes.items():
            _ask_in_background(index, client, body, deadline, answers)
        pending = set(self.nodes)
        # once t shares are in, the slower nodes' threads are left to finish (daemon
        # threads, bounded by the deadline): cutting them off would close their kept-alive
        # connections, and the next fetch would pay to reopen them
        while pending and len(valid) < need:
            try:
                index, answer = answers.get(timeout=deadline.remaining())
            except queue.Empty:
                break
            pending.discard(index)
            try:
                if isinstance(answer, GatewayAnswerError):
                    raise answer
                valid[index] = self._verified(index, answer, buyer_secret, debit_id, ctx, capsule)
                receipts[index] = answer
            except (GatewayAnswerError, KeyReleaseError) as e:
                faults[index] = str(e)
                log.warning("key share from node %d refused: %s", index, e)
        if len(valid) < need:
            for index in pending:
                faults[index] = f"timed out (no complete answer within {self.timeout:g} s)"
            raise KeyFetchFailed(len(valid), need, faults)
        chosen = sorted(valid)[:need]
        data_key = combine(self.committee, capsule, ctx, [valid[i] for i in chosen])
        return FetchedKey(data_key, tuple(chosen), faults, receipts)

    def _verified(
        self,
        index: int,
        answer: Mapping[str, object],
        buyer_secret: BuyerSecretKey,
        debit_id: int,
        ctx: CapsuleContext,
        capsule: Capsule,
    ) -> VerifiedKeyShare:
        try:
            sealed = base64.b64decode(str(answer["sealedShare"]), validate=True)
        except (KeyError, binascii.Error) as e:
            raise GatewayAnswerError("answer has no valid sealedShare") from e
        share = open_sealed_share(sealed, buyer_secret, debit_id, ctx.version)
        if share.index != index:
            raise GatewayAnswerError(f"answered with node {share.index}'s share")
        return share.verify(self.committee.share_key(index), capsule)


class GatewayAnswerError(MarketplaceError):
    """A gateway refused, was unreachable, was too slow, or answered something unusable."""


@dataclass(slots=True)
class Deadline:
    """When a fetch must be over (`time.monotonic()` seconds)."""

    at: float

    def remaining(self) -> float:
        """Seconds left, 0 once passed."""
        return max(self.at - time.monotonic(), 0.0)


def _ask_in_background(
    index: int,
    client: httpx.Client,
    body: dict[str, object],
    deadline: Deadline,
    answers: queue.SimpleQueue[tuple[int, dict[str, object] | GatewayAnswerError]],
) -> None:
    """One daemon thread per node: it can never keep the interpreter alive."""

    def run() -> None:
        try:
            answers.put((index, _post_keys(client, body, deadline)))
        except GatewayAnswerError as e:
            answers.put((index, e))
        except Exception as e:  # a bug or a closed client: a fault now, not a silent wait
            log.error("asking node %d failed", index, exc_info=True)
            answers.put((index, GatewayAnswerError(f"failed ({type(e).__name__})")))

    threading.Thread(target=run, name=f"keyclient-node-{index}", daemon=True).start()


#: A real answer is under 1 KiB; a gateway cannot make the buyer read (or parse) more.
MAX_ANSWER_SIZE = 64 * 1024


def _post_keys(
    client: httpx.Client, body: dict[str, object], deadline: Deadline
) -> dict[str, object]:
    """POST /v1/keys, reading at most MAX_ANSWER_SIZE raw bytes and nothing past the
    deadline; no content coding is accepted, so what is counted is what is parsed."""
    _thread_deadline.value = deadline
    try:
        left = deadline.remaining()
        if left <= 0:
            raise GatewayAnswerError("timed out before asking")
        with client.stream(
            "POST", "/v1/keys", json=body, headers={"Accept-Encoding": "identity"},
            timeout=httpx.Timeout(left),
        ) as response:
            coding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if coding != "identity":
                raise GatewayAnswerError(f"answer has Content-Encoding {coding[:20]!r}")
            raw = bytearray()
            for chunk in _raw_chunks(response):
                raw += chunk
                if len(raw) > MAX_ANSWER_SIZE:
                    raise GatewayAnswerError(f"answer larger than {MAX_ANSWER_SIZE} bytes")
                if deadline.remaining() <= 0:
                    raise GatewayAnswerError("timed out while reading the answer")
    except httpx.TimeoutException as e:
        raise GatewayAnswerError(f"timed out ({type(e).__name__})") from e
    except httpx.HTTPError as e:
        raise GatewayAnswerError(f"unreachable ({type(e).__name__})") from e
    finally:
        _thread_deadline.value = None
    return _parsed(response.status_code, bytes(raw))


def _raw_chunks(response: httpx.Response) -> Iterator[bytes]:
    """The body as sent. An in-process transport (TestClient, MockTransport) hands over a
    body it already holds; over a socket nothing is read before this."""
    if response.is_stream_consumed:
        return iter((response.content,))
    return response.iter_raw()


def _parsed(status: int, raw: bytes) -> dict[str, object]:
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise GatewayAnswerError(f"HTTP {status}, not JSON") from e
    if status != 200:
        code = payload.get("code", "?") if isinstance(payload, dict) else "?"
        raise GatewayAnswerError(f"refused with {str(code)[:40]} (HTTP {status})")
    if not isinstance(payload, dict):
        raise GatewayAnswerError("answer is not a JSON object")
    return payload


# ---------------------------------------------------------------- deadline-bound sockets


class _ThreadDeadline(threading.local):
    """The deadline of the fetch this worker thread serves (None outside a fetch)."""

    value: Deadline | None = None


_thread_deadline = _ThreadDeadline()


def _capped(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """`timeout` cut to what is left of this thread's fetch; raises once nothing is."""
    deadline = _thread_deadline.value
    if deadline is None:
        return timeout
    left = deadline.remaining()
    if left <= 0:
        raise expired("the key fetch's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket whose every read and write ends by the current fetch's deadline (httpx
    fixes a read timeout once per response, so a trickle would reset it every byte)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _capped(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _capped(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, capped))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.connect_tcp(host, port, capped, local_address, socket_options)
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, capped, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def gateway_client(url: str) -> httpx.Client:
    """An httpx client for one gateway whose sockets obey `KeyClient.fetch`'s deadline.

    httpx has no public hook for the socket layer, so the transport's connection pool
    is replaced by one built on `_DeadlineBackend` (tests/gateway/test_keyclient_deadline
    proves that a gateway trickling its headers is cut off at the deadline).
    """
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=_DeadlineBackend()
    )
    return httpx.Client(base_url=url, transport=transport, timeout=DEFAULT_TIMEOUT)
