"""A gateway's part in aggregate debits (DESIGN §10, docs/protocol.md §20): it follows the
AggregateMarket's logs, runs rounds 1 and 2 of `marketplace.aggregate.session` per debit on
the chain's clock, keeps its partial sum sealed to the buyer, and serves it on
`POST /v1/partials` with a signed receipt.

Everything a node decides is derived from the chain, so every honest node decides the same
and a restarted node resumes where the chain stands (the `CeremonyRunner` pattern):
- candidates: the debit's `ContributionRecorded` logs, in chain order (the contract takes
  them only before the deadline);
- seed: BLAKE2b-256("datadebit/aggregate-seed/v1" || chainId (32 BE) || aggregator (20) ||
  debitId (32 BE) || hash of the first block whose timestamp >= deadline);
- round r (1, 2) closes at T + r * roundSeconds, T the timestamp of that first block: a
  node's first post of the round counts iff its block's timestamp <= the cut-off. A
  round's set is final once every node of the committee has a counted post, or once a
  confirmed block is past the cut-off;
- dealers: the nodes with a counted round-1 post; openings: the counted round-2 posts.
Payloads live in the content store (read with their CID checked and a size cap). A bundle
this node cannot fetch or open is listed as unopened in its round-2 message, which excludes
it for every node alike. Nothing here logs a share, a contribution, noise or a partial.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from marketplace import jsonsafe
from marketplace.aggregate import (
    AggregateError,
    Aggregation,
    ContributionContext,
    DealtShares,
    NodeOpening,
    NoisePlan,
    Partial,
    committee_noise_plan,
    deal_round1,
    decide,
    decode_opening,
    dimension,
    encode_opening,
    make_opening,
    open_round1,
    open_share,
    partial,
    seal_partial,
)
from marketplace.aggregate.field import Vector
from marketplace.aggregate.query_document import epsilon_matches, load_query_document
from marketplace.chain.aggregate import AggregateClient
from marketplace.chain.aggregate_types import (
    ROUND_OPENINGS,
    ROUND_SHARINGS,
    AggregateEvent,
    AggregateRequested,
    AggregateRoundPosted,
    ContributionRecorded,
)
from marketplace.chain.errors import ChainError
from marketplace.chain.events import EventReader
from marketplace.chain.market import MarketClient
from marketplace.chain.types import CommitteeEpoch
from marketplace.chain.watcher import ChainWatcher
from marketplace.committee import node_encryption_secret
from marketplace.documents import DocumentError, DocumentUnavailable
from marketplace.eip712 import (
    MAX_REQUEST_LIFETIME,
    Eip712Domain,
    MalformedSignature,
    PartialReceipt,
    PartialRequest,
    digest,
    recover_digest_signer,
    sign,
)
from marketplace.gateway.aggregate_state import (
    FAILED,
    READY,
    TOO_FEW,
    AggregateState,
    ContributionRow,
    DebitRow,
    Excluded,
    IndexedDebit,
    IndexRow,
    Outcome,
    PartialRelease,
    RoundRow,
)
from marketplace.gateway.releaser import (
    BadSignature,
    ExpiryTooFar,
    NonceReused,
    ReleaseRefused,
    RequestExpired,
    WrongSigner,
)
from marketplace.gateway.state import GatewayState
from marketplace.gateway.wire import MAX_BODY_SIZE, MalformedBody
from storage.cid import Cid
from storage.errors import StorageError
from storage.stores.base import ContentStore

log = logging.getLogger(__name__)

SEED_TAG = b"datadebit/aggregate-seed/v1"
#: The largest id the state's BIGINT columns hold; no aggregate debit has a larger one.
MAX_DEBIT_ID = 2**63 - 1
#: Reasons an owner's contribution is not counted (the `excluded` list of `/v1/partials`).
UNOPENED, INVALID = "unopened", "invalid"


# ---------------------------------------------------------------- refusals (wire codes)


class NotReady(ReleaseRefused):
    """The partial does not exist yet (before the deadline, during the rounds, or the
    debit is not confirmed yet); ask again after `retry_after` seconds."""

    code = "not_ready"

    def __init__(self, message: str, retry_after: int) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(message)


class TooFewContributions(ReleaseRefused):
    """Fewer than the cohort's k owners contributed: no partial, ever (refund instead)."""

    code = "too_few_contributions"


class UnknownAggregateRequested(ReleaseRefused):
    code = "unknown_aggregate"


class AggregationFailed(ReleaseRefused):
    """The aggregation cannot finish at this node (a query document nodes refuse, too few
    dealers or openings, a dealer's message this node cannot open)."""

    code = "aggregation_failed"


class NotServedHere(ReleaseRefused):
    """This node is not in the committee epoch the debit was requested under."""

    code = "not_in_committee"


class _Transient(Exception):
    """Something to retry at the next round (a store or chain hiccup)."""


class _Failed(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# ---------------------------------------------------------------- following the logs


class _Decoder:
    """The AggregateMarket's decoder under the name `EventReader` reads (`market`)."""

    def __init__(self, client: AggregateClient) -> None:
        self.market: ChecksumAddress = client.address
        self._decoder = client.decoder

    def topics(self, kinds: Sequence[Any] | None) -> list[str]:
        return self._decoder.topics(kinds)

    def decode(self, entry: Any) -> AggregateEvent:
        return self._decoder.decode(entry)


class _LogSource:
    """What the generic watcher reads from a market (w3, chain id, an event reader), for
    the AggregateMarket: its events have the same `ref` as the DataMarket's."""

    def __init__(self, client: AggregateClient, chain_id: int) -> None:
        self.w3 = client.w3
        self.chain_id = chain_id
        self._decoder = _Decoder(client)

    def events(self, *, confirmations: int = 0, max_block_range: int = 500) -> EventReader:
        return EventReader(
            self.w3, cast(Any, self._decoder), confirmations=confirmations,
            max_block_range=max_block_range,
        )


def index_rows(event: Any) -> list[IndexRow]:
    """The rows one AggregateMarket event gives (debits, contributions, round posts)."""
    if isinstance(event, AggregateRequested):
        return [DebitRow(event.debit_id, event.cohort_id, event.buyer, event.epsilon,
                         event.deadline, event.epoch, event.query_hash, event.query_uri)]
    if isinstance(event, ContributionRecorded):
        return [ContributionRow(event.debit_id, event.owner, event.bundle_cid,
                                event.ref.log_index)]
    if isinstance(event, AggregateRoundPosted):
        return [RoundRow(event.debit_id, event.round, event.node, event.cid,
                         event.ref.log_index)]
    return []


# ---------------------------------------------------------------- one debit's work


@dataclass(frozen=True, slots=True)
class _Head:
    number: int
    timestamp: int


@dataclass
class _Work:
    """What a node derived for one debit (kept in memory between rounds; recomputed from
    the chain and the store after a restart)."""

    agg: Aggregation
    plan: NoisePlan
    buyer_key: bytes
    round_seconds: int
    index: int
    seed: bytes | None = None
    #: timestamp of the first block at or after the deadline: the rounds count from it
    opened_at: int | None = None
    received: dict[int, DealtShares] | None = None
    dealers: tuple[int, ...] = ()
    shares: Vector | None = None
    unopened: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SignedPartial:
    release: PartialRelease
    receipt: PartialReceipt
    outcome: Outcome


#: The gateways' plan (one rule, shared with the buyer): marketplace.aggregate.noise.
noise_plan = committee_noise_plan


def aggregation_seed(chain_id: int, aggregator: bytes, debit_id: int, block_hash: bytes) -> bytes:
    return hashlib.blake2b(
        SEED_TAG + chain_id.to_bytes(32, "big") + aggregator + debit_id.to_bytes(32, "big")
        + block_hash,
        digest_size=32,
    ).digest()


def _bundle_cap(d: int, n: int) -> int:
    return n * (8 * d + 1024) + 4096


def _round1_cap(count: int, m: int, n: int) -> int:
    return n * (8 * (2 * count + m) + 1024) + 4096


def _round2_cap(count: int) -> int:
    return 48 * count + 4096


class AggregationService:
    """One node's aggregation: `tick()` is a background round, `handle` a request."""

    def __init__(
        self,
        client: AggregateClient,
        market: MarketClient,
        state: AggregateState,
        requests: GatewayState,
        account: LocalAccount,
        store: ContentStore,
        *,
        confirmations: int = 0,
        start_block: int = 0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.market = market
        self.state = state
        self.requests = requests  # the node's nonce table: one nonce once per node
        self.account = account
        self.store = store
        self.chain_id = market.chain_id
        self.aggregator = bytes.fromhex(client.address[2:])
        self.domain = Eip712Domain(self.chain_id, client.address)
        self.watcher: ChainWatcher[IndexRow] = ChainWatcher(
            cast(MarketClient, _LogSource(client, self.chain_id)), state, index_rows,
            confirmations=confirmations, start_block=start_block,
        )
        self._secret = node_encryption_secret(account)
        self._now = now
        self._work: dict[int, _Work] = {}
        self._tick_lock = threading.Lock()

    # ------------------------------------------------------------ background rounds

    def tick(self) -> None:
        """Index new logs, then move every pending debit as far as the chain allows."""
        with self._tick_lock:
            self.watcher.catch_up()
            head = self._head()
            if head is None:
                return
            for debit in self.state.pending_debits():
                try:
                    self._advance(debit, head)
                except _Transient as e:
                    log.info("aggregate debit %d waits: %s", debit.row.debit_id, e)
                except _Failed as e:
                    self._finish(debit, head, FAILED, e.reason)
                    log.warning("aggregate debit %d failed here: %s", debit.row.debit_id,
                                e.reason)

    def _head(self) -> _Head | None:
        number = self.watcher.reader.confirmed_head()
        if number < 0:
            return None
        return _Head(number, self._timestamp(number))

    def _timestamp(self, number: int) -> int:
        return int(self.market.w3.eth.get_block(number)["timestamp"])

    def _advance(self, debit: IndexedDebit, head: _Head) -> None:
        row = debit.row
        if head.timestamp < row.deadline:
            return
        committee = self.market.committee_at(row.epoch, block=head.number)
        index = committee.committee.index_of(self.account.address)
        if index is None:
            return  # not ours to aggregate
        contributions = self.state.contributions(row.debit_id)
        k = self.client.cohort(row.cohort_id, block=head.number).min_contributors
        if len(contributions) < k:
            self._finish(debit, head, TOO_FEW, f"{len(contributions)} of {k} contributions")
            return
        work = self._work_for(debit, committee, index, [c.owner for c in contributions])
        agg = work.agg
        if work.seed is None or work.opened_at is None:
            work.seed, work.opened_at = self._seed(debit, head)
        # round 1: deal, then the dealer set
        final, dealers = self._counted(row, ROUND_SHARINGS, committee, head, work.round_seconds,
                                       work.opened_at)
        if not final:
            if index not in dealers and self._may_post(row.debit_id, ROUND_SHARINGS):
                payload = deal_round1(agg, index, committee.encryption_keys)
                self._post(row.debit_id, ROUND_SHARINGS, payload)
            return
        if len(dealers) < work.plan.dealers:
            raise _Failed(f"{len(dealers)} nodes dealt in round 1, {work.plan.dealers} needed")
        if work.received is None or work.dealers != dealers:
            work.received = self._received(row, committee, dealers, agg, index)
            work.dealers = dealers
        if work.shares is None:
            work.shares, work.unopened = self._shares(agg, contributions, index)
        # round 2: open, then the openings
        final, openers = self._counted(row, ROUND_OPENINGS, committee, head, work.round_seconds,
                                       work.opened_at)
        if not final:
            if index not in openers and self._may_post(row.debit_id, ROUND_OPENINGS):
                opening = make_opening(agg, work.seed, work.shares, work.unopened, work.received)
                self._post(row.debit_id, ROUND_OPENINGS, encode_opening(agg, index, opening))
            return
        openings = self._openings(row, committee, openers, agg)
        if len(openings) < 2 * agg.t - 1:
            raise _Failed(f"{len(openings)} valid openings, {2 * agg.t - 1} needed")
        valid = decide(agg, openings)
        values = partial(agg, work.shares, valid, work.received)
        counted = int(valid.sum())
        sealed = seal_partial(agg, Partial(index, values, counted, len(dealers)), work.buyer_key)
        unopened = {k for o in openings.values() for k in o.unopened}
        excluded = tuple(
            Excluded(to_checksum_address(contributions[k].owner),
                     UNOPENED if k in unopened else INVALID)
            for k in np.flatnonzero(~valid).tolist()
        )
        outcome = Outcome(row.debit_id, READY, "", index, row.epoch, counted, dealers,
                          excluded, sealed, head.number)
        self.state.record_outcome(outcome)
        self._work.pop(row.debit_id, None)
        log.info("aggregate debit %d: partial ready (%d counted, %d excluded, dealers %s)",
                 row.debit_id, counted, len(excluded), list(dealers))

    def _finish(self, debit: IndexedDebit, head: _Head, status: str, reason: str) -> None:
        self.state.record_outcome(Outcome(
            debit.row.debit_id, status, reason, 0, debit.row.epoch, 0, (), (), b"", head.number))
        self._work.pop(debit.row.debit_id, None)

    def _work_for(
        self, debit: IndexedDebit, committee: CommitteeEpoch, index: int, owners: list[str]
    ) -> _Work:
        row = debit.row
        candidates = tuple(bytes.fromhex(o[2:]) for o in owners)
        work = self._work.get(row.debit_id)
        if work is not None and work.agg.candidates == candidates:
            return work
        try:
            document = load_query_document(self.store, row.query_uri, row.query_hash)
        except DocumentUnavailable as e:
            raise _Transient("query document unavailable") from e
        except DocumentError as e:
            raise _Failed(f"query document refused ({e.reason})") from e
        try:
            query = document.parsed
        except AggregateError as e:
            raise _Failed("query document holds an invalid query") from e
        if not epsilon_matches(query, row.epsilon):
            raise _Failed("the query's epsilon differs from the on-chain epsilon")
        n, t = len(committee.nodes), committee.threshold
        try:
            plan = noise_plan(query, n, t)
            agg = Aggregation(self.chain_id, self.aggregator, row.debit_id, query, n, t,
                              candidates, plan)
        except AggregateError as e:
            raise _Failed(f"cannot aggregate this query on this committee: {e}") from e
        work = _Work(agg, plan, document.buyer_key_bytes, document.round_seconds, index)
        self._work[row.debit_id] = work
        return work

    def _seed(self, debit: IndexedDebit, head: _Head) -> tuple[bytes, int]:
        """(seed, opening time) from the first block whose timestamp >= deadline (binary
        search: timestamps never decrease). The rounds count from that block's timestamp,
        not from the deadline: on a chain that mines only when sent a transaction (anvil
        without a block time) that block may come long after the deadline, and rounds
        counted from the deadline would have closed before anyone could post."""
        low, high = debit.block_number, head.number  # ts(low) < deadline <= ts(high)
        while high - low > 1:
            middle = (low + high) // 2
            if self._timestamp(middle) >= debit.row.deadline:
                high = middle
            else:
                low = middle
        block = self.market.w3.eth.get_block(high)
        seed = aggregation_seed(self.chain_id, self.aggregator, debit.row.debit_id,
                                bytes(block["hash"]))
        return seed, int(block["timestamp"])

    def _counted(
        self, row: DebitRow, round_number: int, committee: CommitteeEpoch, head: _Head,
        round_seconds: int, opened_at: int,
    ) -> tuple[bool, tuple[int, ...]]:
        """(final, nodes whose first post of the round counts), in node order."""
        cutoff = opened_at + round_number * round_seconds
        first: dict[int, int] = {}  # node index -> block of its first post
        timestamps: dict[int, int] = {}
        for post in self.state.rounds(row.debit_id, round_number):
            node = committee.committee.index_of(post.node)
            if node is None or node in first:
                continue
            first[node] = post.block_number
        counted = []
        for node, block in first.items():
            if block not in timestamps:
                timestamps[block] = self._timestamp(block)
            if timestamps[block] <= cutoff:
                counted.append(node)
        final = len(counted) == len(committee.nodes) or head.timestamp > cutoff
        return final, tuple(sorted(counted))

    def _may_post(self, debit_id: int, round_number: int) -> bool:
        """Post once per round: a post sent but not yet confirmed is not repeated."""
        if self.state.posted(debit_id, round_number) is not None:
            return False
        me = self.account.address.lower()
        return all(p.node != me for p in self.state.rounds(debit_id, round_number))

    def _post(self, debit_id: int, round_number: int, payload: bytes) -> None:
        try:
            cid = self.store.put(io.BytesIO(payload))
        except (StorageError, OSError) as e:
            raise _Transient(f"cannot store the round-{round_number} payload") from e
        try:
            sent = self.client.post_round(self.account, debit_id, round_number, cid.binary)
        except ChainError as e:
            raise _Transient(f"posting round {round_number} failed: {type(e).__name__}") from e
        self.state.record_posted(debit_id, round_number, cid.binary, sent.block_number)
        log.info("aggregate debit %d: posted round %d", debit_id, round_number)

    def _fetch(self, cid_bytes: bytes, cap: int) -> bytes | None:
        """The verified content of a CID posted on chain; None if it is not a CID this
        project makes or is over `cap` (both the same for every node); `_Transient` if
        the store cannot give it now."""
        try:
            cid = Cid(cid_bytes)
        except ValueError:
            return None
        buffer = bytearray()
        pieces: Iterator[bytes] = iter(())
        try:
            pieces = self.store.stream(cid)
            for piece in pieces:
                buffer += piece
                if len(buffer) > cap:
                    return None
        except (StorageError, OSError) as e:
            raise _Transient(f"content {cid.text} unavailable: {type(e).__name__}") from e
        finally:
            close = getattr(pieces, "close", None)
            if callable(close):
                close()
        return bytes(buffer)

    def _received(
        self, row: DebitRow, committee: CommitteeEpoch, dealers: tuple[int, ...],
        agg: Aggregation, index: int,
    ) -> dict[int, DealtShares]:
        """This node's shares from every counted dealer's round-1 box."""
        posts = self._first_posts(row.debit_id, ROUND_SHARINGS, committee)
        received: dict[int, DealtShares] = {}
        cap = _round1_cap(agg.count, agg.plan.dimension, agg.n)
        for dealer in dealers:
            payload = self._fetch(posts[dealer], cap)
            try:
                if payload is None:
                    raise _Failed(f"dealer {dealer}'s round-1 message is not readable")
                received[dealer] = open_round1(agg, payload, dealer, index, self._secret)
            except AggregateError as e:
                raise _Failed(f"dealer {dealer}'s round-1 box does not open here: "
                              f"{type(e).__name__}") from e
        return received

    def _first_posts(
        self, debit_id: int, round_number: int, committee: CommitteeEpoch
    ) -> dict[int, bytes]:
        first: dict[int, bytes] = {}
        for post in self.state.rounds(debit_id, round_number):
            node = committee.committee.index_of(post.node)
            if node is not None and node not in first:
                first[node] = post.cid
        return first

    def _shares(
        self, agg: Aggregation, contributions: Sequence[Any], index: int
    ) -> tuple[Vector, tuple[int, ...]]:
        """This node's share of every candidate (zeros and listed as unopened where the
        bundle cannot be fetched, parsed or opened)."""
        d = dimension(agg.query)
        rows: list[Vector] = []
        unopened: list[int] = []
        cap = _bundle_cap(d, agg.n)
        for k, contribution in enumerate(contributions):
            owner = bytes.fromhex(contribution.owner[2:])
            context = ContributionContext(self.chain_id, self.aggregator, agg.debit_id, owner, d)
            try:
                bundle = self._fetch(contribution.bundle_cid, cap)
            except _Transient:
                bundle = None  # unretrievable now: unopened (the round cannot wait for it)
            vector = None
            if bundle is not None:
                try:
                    vector = open_share(bundle, index, self._secret, context)
                except AggregateError as e:
                    log.info("aggregate debit %d: candidate %d does not open here (%s)",
                             agg.debit_id, k, type(e).__name__)
            if vector is None:
                unopened.append(k)
                vector = np.zeros(d, dtype=np.int64)
            rows.append(vector)
        shares = np.stack(rows) if rows else np.zeros((0, d), dtype=np.int64)
        return shares, tuple(unopened)

    def _openings(
        self, row: DebitRow, committee: CommitteeEpoch, openers: tuple[int, ...],
        agg: Aggregation,
    ) -> dict[int, NodeOpening]:
        """The counted round-2 messages; one that does not parse is dropped (by every node:
        its bytes are fixed by the CID on chain)."""
        posts = self._first_posts(row.debit_id, ROUND_OPENINGS, committee)
        openings: dict[int, NodeOpening] = {}
        for node in openers:
            payload = self._fetch(posts[node], _round2_cap(agg.count))
            if payload is None:
                continue
            try:
                openings[node] = decode_opening(agg, payload, node)
            except AggregateError as e:
                log.warning("aggregate debit %d: node %d's opening refused (%s)",
                            agg.debit_id, node, type(e).__name__)
        return openings

    # ------------------------------------------------------------ the request path

    def handle(self, request: PartialRequest, signature: bytes) -> SignedPartial:
        """`POST /v1/partials`: the checks of `/v1/keys`, then this node's sealed partial."""
        now = int(self._now())
        if request.expiry <= now:
            raise RequestExpired(f"request expired at {request.expiry} (now {now})")
        if request.expiry > now + MAX_REQUEST_LIFETIME:
            raise ExpiryTooFar(f"expiry may be at most {MAX_REQUEST_LIFETIME} s ahead")
        if not 1 <= request.debit_id <= MAX_DEBIT_ID:
            raise UnknownAggregateRequested(f"no aggregate debit {request.debit_id}")
        debit = self.state.debit(request.debit_id)
        if debit is None:
            self.watcher.poll_once()
            debit = self.state.debit(request.debit_id)
        if debit is None:
            if request.debit_id > self.client.aggregate_count():
                raise UnknownAggregateRequested(f"no aggregate debit {request.debit_id}")
            raise NotReady(f"aggregate debit {request.debit_id} is not confirmed yet", 1)
        request_digest = digest(self.domain, request)
        try:
            signer = recover_digest_signer(request_digest, signature)
        except MalformedSignature as e:
            raise BadSignature(str(e)) from e
        row = debit.row
        if signer.lower() != row.buyer.lower():
            raise WrongSigner(f"request signed by {signer}, not by the debit's buyer")
        if not self.requests.use_nonce(signer, request.nonce, request.expiry, now,
                                       request_digest):
            raise NonceReused("this nonce was used before for another request")
        outcome = self.state.outcome(row.debit_id)
        if outcome is None:
            raise self._not_ready(debit)
        if outcome.status == TOO_FEW:
            raise TooFewContributions(
                f"aggregate debit {row.debit_id} has too few contributions ({outcome.reason})")
        if outcome.status == FAILED:
            raise AggregationFailed(f"aggregate debit {row.debit_id}: {outcome.reason}")
        release = self.state.append_release(
            row.debit_id,
            lambda seq: self._signed(seq, outcome, row, request, signature, request_digest),
        )
        log.info("released partial for aggregate debit %d (seq %d)", row.debit_id, release.seq)
        return SignedPartial(release, self.receipt_of(release), outcome)

    def _not_ready(self, debit: IndexedDebit) -> ReleaseRefused:
        row = debit.row
        head = self._head()
        chain_now = head.timestamp if head else 0
        if chain_now < row.deadline:
            return NotReady(f"contributions to aggregate debit {row.debit_id} close at "
                            f"{row.deadline}", row.deadline - chain_now)
        if head is not None:
            committee = self.market.committee_at(row.epoch, block=head.number)
            if committee.committee.index_of(self.account.address) is None:
                return NotServedHere(f"this node is not in committee epoch {row.epoch}")
        work = self._work.get(row.debit_id)
        step = work.round_seconds if work else 1
        opened = work.opened_at if work and work.opened_at is not None else row.deadline
        for r in (1, 2):
            cutoff = opened + r * step
            if chain_now <= cutoff:
                return NotReady(f"aggregate debit {row.debit_id} is in round {r}",
                                cutoff - chain_now + 1)
        return NotReady(f"aggregate debit {row.debit_id} is being aggregated", 1)

    def _signed(
        self, seq: int, outcome: Outcome, row: DebitRow, request: PartialRequest,
        signature: bytes, request_digest: bytes,
    ) -> PartialRelease:
        head = self.watcher.reader.confirmed_head()
        sealed_hash = hashlib.sha256(outcome.sealed_partial).digest()
        receipt = PartialReceipt(row.debit_id, outcome.node, sealed_hash, head, outcome.epoch)
        return PartialRelease(
            seq=seq, debit_id=row.debit_id, node=outcome.node, epoch=outcome.epoch,
            buyer=row.buyer, request=request, request_signature=signature,
            request_digest=request_digest, sealed_partial_hash=sealed_hash, block=head,
            signature=sign(self.account, self.domain, receipt),
        )

    def receipt_of(self, release: PartialRelease) -> PartialReceipt:
        return PartialReceipt(release.debit_id, release.node, release.sealed_partial_hash,
                              release.block, release.epoch)


# ---------------------------------------------------------------- the wire


_NONCE_HEX = 66
_REQUEST_FIELDS = frozenset(("debitId", "expiry", "nonce"))
_BODY_FIELDS = frozenset(("request", "signature"))


def parse_partials_body(raw: bytes) -> tuple[PartialRequest, str]:
    """`{"request": {"debitId", "expiry", "nonce"}, "signature"}` or MalformedBody."""
    if len(raw) > MAX_BODY_SIZE:
        raise MalformedBody("body", f"must be at most {MAX_BODY_SIZE} bytes")
    try:
        body = jsonsafe.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise MalformedBody("body", "not valid JSON") from e
    _exact(body, "body", _BODY_FIELDS)
    fields = body["request"]
    _exact(fields, "request", _REQUEST_FIELDS)
    if not isinstance(body["signature"], str):
        raise MalformedBody("signature", "must be a string")
    nonce = fields["nonce"]
    if (not isinstance(nonce, str) or len(nonce) != _NONCE_HEX or not nonce.startswith("0x")
            or any(c not in "0123456789abcdefABCDEF" for c in nonce[2:])):
        raise MalformedBody("request.nonce", "must be 0x followed by 64 hex digits")
    values = {}
    for name, bits in (("debitId", 256), ("expiry", 64)):
        value = fields[name]
        if type(value) is not int or not 0 <= value < 2**bits:
            raise MalformedBody(f"request.{name}", f"must be an integer in [0, 2^{bits})")
        values[name] = value
    request = PartialRequest(values["debitId"], values["expiry"], bytes.fromhex(nonce[2:]))
    return request, body["signature"]


def _exact(value: Any, where: str, names: frozenset[str]) -> None:
    if not isinstance(value, dict):
        raise MalformedBody(where, "must be a JSON object")
    missing = sorted(names - value.keys())
    if missing:
        raise MalformedBody(missing[0] if where == "body" else f"{where}.{missing[0]}",
                            "field required")
    extra = sorted(value.keys() - names)
    if extra:
        raise MalformedBody(extra[0] if where == "body" else f"{where}.{extra[0]}",
                            "extra field not permitted")


def partials_answer(signed: SignedPartial) -> bytes:
    """The 200 answer of `POST /v1/partials`, as JSON bytes."""
    outcome, release = signed.outcome, signed.release
    return json.dumps(
        {
            "node": release.node,
            "debitId": release.debit_id,
            "sealedPartial": base64.b64encode(outcome.sealed_partial).decode(),
            "counted": outcome.counted,
            "dealers": list(outcome.dealers),
            "excluded": [{"owner": e.owner, "reason": e.reason} for e in outcome.excluded],
            "receipt": signed.receipt.to_message(),
            "receiptSignature": "0x" + release.signature.hex(),
        },
        separators=(",", ":"),
    ).encode()
