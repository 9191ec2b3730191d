"""The buyer's side of key release: ask every gateway at once, stop at t valid shares.

One wallet-signed `KeyRequest` goes to all nodes in parallel (each node keeps its own
nonce log, so one signature serves all). Each answer is opened with the buyer's X25519
key and its DLEQ proof checked against Y_i of the committee epoch its receipt names (a
gateway answers with the share of the epoch in force at its confirmed head, so around a
reshare nodes may answer from two epochs); a node whose share fails, or names an epoch
the chain does not know, is named, never used. Shares combine only within one epoch
(newest first); with fewer than t valid shares of any epoch the error lists every
node's fault.

A fetch has one deadline (`timeout` seconds from its start), not a timeout per read: a
gateway that trickles its answer a byte at a time cannot hold the buyer past it. The
workers are daemon threads, so a node still talking when the fetch returns can never
keep the process alive, and with clients from `gateway_client` every socket operation
is cut off at the deadline too, so the worker itself ends by then.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import queue
import threading
import time
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpcore
import httpx
from eth_account.signers.local import LocalAccount

from marketplace import jsonsafe
from marketplace.chain.types import Committee
from marketplace.eip712 import FIRST_EPOCH, Eip712Domain, KeyRequest, sign
from marketplace.errors import MarketplaceError
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import Capsule, CapsuleContext
from marketplace.keyrelease.combine import combine
from marketplace.keyrelease.keys import MAX_EPOCH, CommitteeKeys
from marketplace.keyrelease.share import VerifiedKeyShare, open_sealed_share
from storage.keys import DataKey

log = logging.getLogger(__name__)

#: How long a request stays valid; gateways accept at most 600 s.
REQUEST_LIFETIME = 120
#: Seconds a whole fetch may take by default (every node, every byte).
DEFAULT_TIMEOUT = 10.0


class KeyFetchFailed(MarketplaceError):
    """Fewer than t gateways gave a valid share; `faults` says what each node did.

    `have`/`need` are for the epoch that came closest (the newest among equals);
    `by_epoch` gives every epoch's (valid shares, threshold) when shares of more than one
    epoch came back.
    """

    def __init__(
        self,
        have: int,
        need: int,
        faults: Mapping[int, str],
        by_epoch: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        self.have = have
        self.need = need
        self.faults = dict(faults)
        self.by_epoch = dict(by_epoch or {})
        detail = "; ".join(f"node {i}: {why}" for i, why in sorted(self.faults.items()))
        epochs = ""
        if len(self.by_epoch) > 1:
            epochs = " per committee epoch: " + ", ".join(
                f"epoch {e} {got} of {t}" for e, (got, t) in sorted(self.by_epoch.items())
            ) + ";"
        super().__init__(
            f"got {have} valid key shares, need {need} ({epochs}{detail or 'no answers'})"
        )


class UnknownCommitteeEpoch(MarketplaceError, LookupError):
    """A gateway answered for a committee epoch the chain has not finalized (or that the
    buyer's resolver does not know)."""

    def __init__(self, epoch: int, current: int | None = None) -> None:
        self.epoch = epoch
        self.current = current
        known = f" (the current epoch is {current})" if current is not None else ""
        super().__init__(f"share for committee epoch {epoch}, not a finalized epoch "
                         f"this client knows{known}")


CommitteeResolver = Callable[[int], CommitteeKeys]
"""`committee_for(epoch)`: the public keys of a finalized committee epoch, or raises
`UnknownCommitteeEpoch`."""


class _FinalizedEpoch(Protocol):
    @property
    def committee(self) -> Committee: ...


class EpochReader(Protocol):
    """What `ChainCommittees` reads; `MarketClient` is one."""

    def current_epoch(self) -> int: ...

    def committee_at(self, epoch: int) -> _FinalizedEpoch: ...


class ChainCommittees:
    """`committee_for(epoch)` from the chain (`committeeAt`), each epoch read once.

    A finalized epoch never changes, so caching is safe; an epoch above the current one
    is looked up again each time (a gateway may have seen a newer epoch first).
    """

    def __init__(self, market: EpochReader) -> None:
        self.market = market
        self._epochs: dict[int, CommitteeKeys] = {}
        self._lock = threading.Lock()

    def current(self) -> CommitteeKeys:
        """The committee in force at the latest block."""
        return self(self.market.current_epoch())

    def __call__(self, epoch: int) -> CommitteeKeys:
        with self._lock:
            cached = self._epochs.get(epoch)
        if cached is not None:
            return cached
        current = self.market.current_epoch()
        if not FIRST_EPOCH <= epoch <= current:
            raise UnknownCommitteeEpoch(epoch, current)
        record = self.market.committee_at(epoch)
        public = record.committee
        keys = CommitteeKeys.from_bytes(
            public.threshold, public.committee_key, public.share_keys, epoch=epoch
        )
        with self._lock:
            self._epochs[epoch] = keys
        return keys


@dataclass(frozen=True, slots=True)
class FetchedKey:
    """The recovered data key and what each node did (for receipts and blame).

    Node numbers are the keys of `KeyClient.nodes` (the committee document's indices);
    `epoch` is the committee epoch whose shares were combined.
    """

    data_key: DataKey
    used_nodes: tuple[int, ...]
    faults: dict[int, str] = field(default_factory=dict)
    receipts: dict[int, dict[str, object]] = field(default_factory=dict)
    epoch: int = FIRST_EPOCH


@dataclass(slots=True)
class _EpochShares:
    """The valid shares of one epoch so far: epoch index -> (gateway, share)."""

    committee: CommitteeKeys
    shares: dict[int, tuple[int, VerifiedKeyShare]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.shares) >= self.committee.threshold


class KeyClient:
    """Fetches data keys from a committee's gateways over HTTP, each fetch bounded by
    `timeout` seconds in all.

    `nodes` are keyed by the indices of `committee` (the committee document's, for its
    epoch). An answer is verified against the committee of the epoch its receipt names:
    `committee` itself for its own epoch (and for an answer without a receipt), else
    `committees(epoch)` (e.g. `ChainCommittees`); without a resolver, only `committee`'s
    epoch is accepted.
    """

    def __init__(
        self,
        committee: CommitteeKeys,
        domain: Eip712Domain,
        nodes: Mapping[int, httpx.Client],
        *,
        committees: CommitteeResolver | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        now: Callable[[], float] = time.time,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.committee = committee
        self.domain = domain
        self.nodes = dict(nodes)
        self.timeout = timeout
        self._committees = committees
        self._now = now

    def committee_for(self, epoch: int) -> CommitteeKeys:
        """The committee of `epoch`; UnknownCommitteeEpoch if it is not a known epoch."""
        if epoch == self.committee.epoch:
            return self.committee
        if self._committees is None:
            raise UnknownCommitteeEpoch(epoch, self.committee.epoch)
        return self._committees(epoch)

    def fetch(
        self,
        wallet: LocalAccount,
        buyer_secret: BuyerSecretKey,
        debit_id: int,
        ctx: CapsuleContext,
        capsule: Capsule,
    ) -> FetchedKey:
        """Sign one request, ask all nodes at once, combine the first t valid shares of one
        epoch; returns or raises `KeyFetchFailed` by the deadline."""
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
        epochs: dict[int, _EpochShares] = {}
        faults: dict[int, str] = {}
        receipts: dict[int, dict[str, object]] = {}
        answers: queue.SimpleQueue[tuple[int, dict[str, object] | GatewayAnswerError]] = (
            queue.SimpleQueue()
        )
        for index, client in self.nodes.items():
            _ask_in_background(index, client, body, deadline, answers)
        pending = set(self.nodes)
        # once t shares of one epoch are in, the slower nodes' threads are left to finish
        # (daemon threads, bounded by the deadline): cutting them off would close their
        # kept-alive connections, and the next fetch would pay to reopen them
        while pending and not any(group.complete for group in epochs.values()):
            try:
                index, answer = answers.get(timeout=deadline.remaining())
            except queue.Empty:
                break
            pending.discard(index)
            try:
                if isinstance(answer, GatewayAnswerError):
                    raise answer
                epoch, share = self._verified(index, answer, buyer_secret, debit_id, ctx, capsule)
                group = epochs.setdefault(epoch, _EpochShares(self.committee_for(epoch)))
                if share.index in group.shares:
                    other = group.shares[share.index][0]
                    raise GatewayAnswerError(f"answered with epoch {epoch} node {share.index}'s "
                                             f"share, which node {other} already gave")
                group.shares[share.index] = (index, share)
                receipts[index] = answer
            except MarketplaceError as e:  # the share, its epoch, or reading that epoch
                faults[index] = str(e)
                log.warning("key share from node %d refused: %s", index, e)
        complete = sorted(e for e, group in epochs.items() if group.complete)
        if not complete:
            for index in pending:
                faults[index] = f"timed out (no complete answer within {self.timeout:g} s)"
            raise self._failed(epochs, faults)
        epoch = complete[-1]
        group = epochs[epoch]
        chosen = sorted(group.shares)[: group.committee.threshold]
        data_key = combine(group.committee, capsule, ctx, [group.shares[i][1] for i in chosen])
        used = tuple(sorted(group.shares[i][0] for i in chosen))
        return FetchedKey(data_key, used, faults, receipts, epoch)

    def _failed(self, epochs: Mapping[int, _EpochShares], faults: Mapping[int, str]
                ) -> KeyFetchFailed:
        """The failure, counted for the epoch that came closest (newest among equals)."""
        counts = {e: (len(g.shares), g.committee.threshold) for e, g in epochs.items()}
        if not counts:
            return KeyFetchFailed(0, self.committee.threshold, faults)
        closest = max(counts, key=lambda e: (counts[e][0] - counts[e][1], e))
        have, need = counts[closest]
        return KeyFetchFailed(have, need, faults, counts)

    def _verified(
        self,
        index: int,
        answer: Mapping[str, object],
        buyer_secret: BuyerSecretKey,
        debit_id: int,
        ctx: CapsuleContext,
        capsule: Capsule,
    ) -> tuple[int, VerifiedKeyShare]:
        """The answer's epoch and its share, verified against that epoch's committee; in
        the client's own epoch the share must also be the asked node's."""
        try:
            sealed = base64.b64decode(str(answer["sealedShare"]), validate=True)
        except (KeyError, binascii.Error) as e:
            raise GatewayAnswerError("answer has no valid sealedShare") from e
        epoch, receipt_node = _receipt_epoch_and_node(answer, self.committee.epoch)
        committee = self.committee_for(epoch)
        share = open_sealed_share(sealed, buyer_secret, debit_id, ctx.version)
        if receipt_node is not None and share.index != receipt_node:
            raise GatewayAnswerError(
                f"answered with node {share.index}'s share, its receipt names node {receipt_node}"
            )
        if epoch == self.committee.epoch and share.index != index:
            raise GatewayAnswerError(f"answered with node {share.index}'s share")
        return epoch, share.verify(committee.share_key(share.index), capsule)


def _receipt_epoch_and_node(answer: Mapping[str, object], default: int) -> tuple[int, int | None]:
    """`receipt.epoch` and `receipt.node` of an answer; an answer without a receipt (an
    older gateway) is taken for `default`, the client's own epoch."""
    receipt = answer.get("receipt")
    if receipt is None:
        return default, None
    if not isinstance(receipt, dict):
        raise GatewayAnswerError("answer's receipt is not a JSON object")
    epoch = receipt.get("epoch", default)
    node = receipt.get("node")
    if type(epoch) is not int or not FIRST_EPOCH <= epoch <= MAX_EPOCH:
        raise GatewayAnswerError("answer's receipt.epoch is not an epoch number (1..2^64-1)")
    if node is not None and (type(node) is not int or not 1 <= node <= 255):
        raise GatewayAnswerError("answer's receipt.node is not a node index (1..255)")
    return epoch, node


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
    """POST /v1/keys: the answer as a JSON object, or GatewayAnswerError."""
    return _parsed(*post_raw(client, "/v1/keys", body, deadline))


def post_raw(
    client: httpx.Client, path: str, body: dict[str, object], deadline: Deadline,
    limit: int = MAX_ANSWER_SIZE,
) -> tuple[int, bytes]:
    """POST `path` (status, body), reading at most `limit` raw bytes and nothing past the
    deadline; no content coding is accepted, so what is counted is what is parsed. Also
    used for the aggregate partials (marketplace.app.aggregate)."""
    _thread_deadline.value = deadline
    try:
        left = deadline.remaining()
        if left <= 0:
            raise GatewayAnswerError("timed out before asking")
        with client.stream(
            "POST", path, json=body, headers={"Accept-Encoding": "identity"},
            timeout=httpx.Timeout(left),
        ) as response:
            coding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if coding != "identity":
                raise GatewayAnswerError(f"answer has Content-Encoding {coding[:20]!r}")
            raw = bytearray()
            for chunk in _raw_chunks(response):
                raw += chunk
                if len(raw) > limit:
                    raise GatewayAnswerError(f"answer larger than {limit} bytes")
                if deadline.remaining() <= 0:
                    raise GatewayAnswerError("timed out while reading the answer")
    except httpx.TimeoutException as e:
        raise GatewayAnswerError(f"timed out ({type(e).__name__})") from e
    except httpx.HTTPError as e:
        raise GatewayAnswerError(f"unreachable ({type(e).__name__})") from e
    finally:
        _thread_deadline.value = None
    return response.status_code, bytes(raw)


def _raw_chunks(response: httpx.Response) -> Iterator[bytes]:
    """The body as sent. An in-process transport (TestClient, MockTransport) hands over a
    body it already holds; over a socket nothing is read before this."""
    if response.is_stream_consumed:
        return iter((response.content,))
    return response.iter_raw()


def _parsed(status: int, raw: bytes) -> dict[str, object]:
    try:
        payload = jsonsafe.loads(raw)
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
