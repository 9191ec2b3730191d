"""One gateway node's key release: check a wallet-signed request, then hand out this
node's sealed share with a signed receipt, only while the debit is entitled at the
confirmed head.

A (debit, version) is released once: the first release is appended to the log with a
receipt naming the block its entitlement was checked at; later requests by the same
buyer get the same sealed share and receipt back, but only after passing every check
again (a revoked debit gets nothing more).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from marketplace.chain.errors import UnknownDebit, UnknownVersion
from marketplace.chain.events import DebitConsented, DebitRequested, MarketEvent, VersionPublished
from marketplace.chain.hot_reads import HotReads
from marketplace.chain.market import MarketClient
from marketplace.committee import NodeKey
from marketplace.eip712 import (
    Eip712Domain,
    KeyRequest,
    MalformedSignature,
    ReleaseReceipt,
    recover_signer,
    sign,
)
from marketplace.errors import MarketplaceError
from marketplace.gateway.state import GatewayState, IndexedDebit, IndexedVersion, Release
from marketplace.gateway.watcher import ChainWatcher
from marketplace.keyrelease.buyer_key import BuyerPublicKey
from marketplace.keyrelease.capsule import BoundCapsule, Capsule, CapsuleContext
from marketplace.keyrelease.errors import CapsuleNotBound, MalformedCapsule
from marketplace.keyrelease.share import make_sealed_share

log = logging.getLogger(__name__)

#: A request may not be valid for longer than this (DESIGN §5).
MAX_EXPIRY_AHEAD = 600
#: Checked capsules remembered (a proof check costs two scalar multiplications).
_CAPSULE_CACHE_SIZE = 4096


class ReleaseRefused(MarketplaceError):
    """A key request this node will not serve; `code` is the stable wire code."""

    code = "refused"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class BadSignature(ReleaseRefused):
    code = "bad_signature"


class WrongSigner(ReleaseRefused):
    code = "wrong_signer"


class RequestExpired(ReleaseRefused):
    code = "expired"


class ExpiryTooFar(ReleaseRefused):
    code = "expiry_too_far"


class NonceReused(ReleaseRefused):
    code = "nonce_reused"


class UnknownDebitRequested(ReleaseRefused):
    code = "unknown_debit"


class UnknownVersionRequested(ReleaseRefused):
    code = "unknown_version"


class NotEntitled(ReleaseRefused):
    code = "not_entitled"


class UnboundCapsule(ReleaseRefused):
    """The version's capsule is malformed or its proof does not bind it to its listing:
    nodes never compute shares for it (it may carry an R copied from someone else)."""

    code = "invalid_capsule"


@dataclass(frozen=True, slots=True)
class _Checked:
    """What the checks after the nonce found: the version, the confirmed head, the
    entitlement there and (from memory only) the logged release."""

    version: IndexedVersion
    block: int
    entitled: bool
    release: Release | None


@dataclass(frozen=True, slots=True)
class SignedRelease:
    release: Release
    receipt: ReleaseReceipt


class KeyReleaser:
    """Serves `POST /v1/keys` for one node and prepares shares ahead on chain events."""

    def __init__(
        self,
        market: MarketClient,
        state: GatewayState,
        watcher: ChainWatcher,
        node: NodeKey,
        *,
        now: Callable[[], float] = time.time,
        head_ttl: float = 0.0,
    ) -> None:
        self.market = market
        self.state = state
        self.watcher = watcher
        self.node = node
        self.domain = Eip712Domain(market.chain_id, market.address)
        self._now = now
        self._head_ttl = head_ttl
        self._head: tuple[float, int, str | None] | None = None
        self._entitled: dict[tuple[int, int], bool] = {}
        self._capsules: dict[tuple[int, int, bytes, bytes], BoundCapsule] = {}
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        # bare JSON-RPC for the per-request chain reads (None: the embedded chain)
        self._reads = HotReads.for_market(market)

    # ------------------------------------------------------------ the request path

    def handle(self, request: KeyRequest, signature: bytes) -> SignedRelease:
        """Check everything DESIGN §5 lists, then release (or re-serve) this node's share."""
        answer = self._handle(request, signature, memory_only=False)
        assert answer is not None
        return answer

    def handle_from_memory(self, request: KeyRequest, signature: bytes) -> SignedRelease | None:
        """What `handle` would answer, or None, having recorded nothing, when answering
        needs the chain (a stale head, an entitlement not known at it, an unindexed debit
        or version) or a new release (signing, a durable write). What it does answer costs
        no I/O but SQLite reads and the nonce write, so the API runs it on the event loop
        and sends only the rest to a thread."""
        return self._handle(request, signature, memory_only=True)

    def _handle(
        self, request: KeyRequest, signature: bytes, *, memory_only: bool
    ) -> SignedRelease | None:
        now = int(self._now())
        if request.expiry <= now:
            raise RequestExpired(f"request expired at {request.expiry} (now {now})")
        if request.expiry > now + MAX_EXPIRY_AHEAD:
            raise ExpiryTooFar(f"expiry may be at most {MAX_EXPIRY_AHEAD} s ahead")
        debit: IndexedDebit | None = None
        checked: _Checked | None = None
        if memory_only:
            # everything the checks need, gathered from memory before any of them costs
            # anything: a None leaves the request to `handle` untouched (no nonce spent,
            # no signature recovered twice); the checks below then run in `handle`'s order
            debit = self.state.debit(request.debit_id)
            checked = self._checked_from_memory(debit, request.version) if debit else None
            if checked is None:
                return None
        try:
            signer = recover_signer(self.domain, request, signature)
        except MalformedSignature as e:
            raise BadSignature(str(e)) from e
        debit = debit or self._debit(request.debit_id)
        if signer.lower() != debit.buyer.lower():
            raise WrongSigner(f"request signed by {signer}, not by the debit's buyer")
        if not self.state.use_nonce(signer, request.nonce, request.expiry, now):
            raise NonceReused("this nonce was used before")
        checked = checked or self._checked(debit, request.version)
        if not checked.entitled:
            raise NotEntitled(
                f"debit {debit.debit_id} is not entitled to version {checked.version.version} "
                f"at block {checked.block}"
            )
        release = checked.release or self._release(debit, checked.version, checked.block)
        return SignedRelease(release, self.receipt_of(release))

    def _checked(self, debit: IndexedDebit, version_number: int) -> _Checked:
        """The version (indexed on demand), the confirmed head and the entitlement at it."""
        version = self._version(debit.listing_id, version_number)
        block = self.confirmed_head()
        entitled = self.entitled(debit.debit_id, version.version, block)
        return _Checked(version, block, entitled, None)

    def _checked_from_memory(self, debit: IndexedDebit, version_number: int) -> _Checked | None:
        """The same from the index and the remembered head and entitlement, with the
        existing release when entitled; None if any is missing."""
        version = self.state.version(debit.listing_id, version_number)
        with self._lock:  # the head and what is remembered at it, together
            head = self._head
            entitled = self._entitled.get((debit.debit_id, version_number))
        if version is None or head is None or entitled is None:
            return None
        if time.monotonic() - head[0] > self._head_ttl:
            return None
        block = head[1]
        release = self.state.release_for(debit.debit_id, version_number) if entitled else None
        if entitled and release is None:
            return None
        return _Checked(version, block, entitled, release)

    def _release(self, debit: IndexedDebit, version: IndexedVersion, block: int) -> Release:
        """The release of (debit, version): the logged one, else a new one appended."""
        release = self.state.release_for(debit.debit_id, version.version)
        if release is not None:
            return release
        sealed = self.state.prepared(debit.debit_id, version.version)
        if sealed is None:
            sealed = self._seal(debit, version)
        release = self.state.append_release(
            debit.debit_id,
            version.version,
            lambda seq: self._signed(seq, debit.debit_id, version.version, sealed, block),
        )
        log.info(
            "released share for debit %d version %d (seq %d, block %d)",
            debit.debit_id, version.version, release.seq, block,
        )
        return release

    def receipt_of(self, release: Release) -> ReleaseReceipt:
        return ReleaseReceipt(
            release.debit_id, release.version, release.node, release.sealed_share_hash,
            release.block,
        )

    # ------------------------------------------------------------ ahead-of-time shares

    def on_event(self, event: MarketEvent) -> None:
        """Watcher callback: prepare shares as soon as a (buyer, version) is entitled."""
        if isinstance(event, DebitRequested) and not event.auto_approved:
            return
        pairs: list[tuple[IndexedDebit, IndexedVersion]] = []
        if isinstance(event, DebitRequested | DebitConsented):
            debit = self.state.debit(event.debit_id)
            if debit is not None:
                pairs = [(debit, v) for v in self.state.versions_of_listing(event.listing_id)]
        elif isinstance(event, VersionPublished):
            version = self.state.version(event.listing_id, event.version)
            if version is not None:
                pairs = [(d, version) for d in self.state.debits_of_listing(event.listing_id)]
        block = self.confirmed_head() if pairs else -1
        for debit, version in pairs:
            if self.state.prepared(debit.debit_id, version.version) is not None:
                continue
            if self.entitled(debit.debit_id, version.version, block):
                try:
                    sealed = self._seal(debit, version)
                except UnboundCapsule as e:
                    log.warning("not preparing a share: %s", e.message)
                    continue
                self.state.store_prepared(
                    debit.debit_id, version.version, sealed, event.ref.block_number
                )

    # ------------------------------------------------------------ chain reads

    def confirmed_head(self) -> int:
        """Latest block minus the confirmation depth, cached for `head_ttl` seconds.

        Remembered entitlements are dropped whenever the confirmed head changes, by hash
        as well as by number: a reorg can replace the head with another block of the same
        height in which the debit is no longer entitled.
        """
        fresh = self._fresh_head()
        return fresh if fresh is not None else self._refresh_head()

    def _fresh_head(self) -> int | None:
        """The remembered confirmed head while it is at most `head_ttl` old, else None."""
        with self._lock:
            head = self._head
        if head is None or time.monotonic() - head[0] > self._head_ttl:
            return None
        return head[1]

    def _refresh_head(self) -> int:
        # one thread asks the chain, outside `_lock` (requests answered from memory go
        # on meanwhile); threads that queued behind it take its answer if still fresh
        with self._refresh_lock:
            fresh = self._fresh_head()
            if fresh is not None:
                return fresh
            clock = time.monotonic()
            head, head_hash = self._read_head()
            with self._lock:
                if self._head is None or (head, head_hash) != self._head[1:]:
                    self._entitled.clear()
                self._head = (clock, head, head_hash)
            return head

    def _read_head(self) -> tuple[int, str | None]:
        if self._reads is None:
            head = self.watcher.reader.confirmed_head()
            return head, self.watcher.block_hash(head) if head >= 0 else None
        head = self._reads.block_number() - self.watcher.reader.confirmations
        return head, self._reads.block_hash(head) if head >= 0 else None

    def entitled(self, debit_id: int, version: int, block: int) -> bool:
        """`isEntitled` at `block`, remembered while the confirmed head stays there."""
        key = (debit_id, version)
        with self._lock:
            cached = self._entitled.get(key) if self._head and self._head[1] == block else None
        if cached is not None:
            return cached
        if self._reads is None:
            answer = self.market.is_entitled(debit_id, version, block=max(block, 0))
        else:
            answer = self._reads.is_entitled(debit_id, version, max(block, 0))
        with self._lock:
            if self._head and self._head[1] == block:
                self._entitled[key] = answer
        return answer

    def _debit(self, debit_id: int) -> IndexedDebit:
        debit = self.state.debit(debit_id)
        if debit is None:
            self.watcher.poll_once()
            debit = self.state.debit(debit_id)
        if debit is not None:
            return debit
        try:
            self.market.debit(debit_id)
        except UnknownDebit as e:
            raise UnknownDebitRequested(f"no debit {debit_id}") from e
        raise NotEntitled(f"debit {debit_id} is not confirmed yet")

    def _version(self, listing_id: int, version: int) -> IndexedVersion:
        found = self.state.version(listing_id, version)
        if found is None:
            self.watcher.poll_once()
            found = self.state.version(listing_id, version)
        if found is not None:
            return found
        try:
            self.market.version(listing_id, version)
        except UnknownVersion as e:
            raise UnknownVersionRequested(f"listing {listing_id} has no version {version}") from e
        raise NotEntitled(f"version {version} of listing {listing_id} is not confirmed yet")

    # ------------------------------------------------------------ crypto

    def _seal(self, debit: IndexedDebit, version: IndexedVersion) -> bytes:
        return make_sealed_share(
            self.node.share,
            self._bound(version),
            BuyerPublicKey(debit.buyer_key),
            debit.debit_id,
            version.version,
        )

    def _bound(self, version: IndexedVersion) -> BoundCapsule:
        """The version's capsule with its proof checked against the context rebuilt from
        the chain (chain id, market, listing, version, CID); remembered per capsule."""
        key = (version.listing_id, version.version, version.cid, version.capsule)
        with self._lock:
            bound = self._capsules.get(key)
        if bound is not None:
            return bound
        ctx = CapsuleContext(
            self.market.chain_id, self.market.address, version.listing_id, version.version,
            version.cid,
        )
        try:
            bound = Capsule.from_bytes(version.capsule).bind(ctx)
        except (MalformedCapsule, CapsuleNotBound) as e:
            raise UnboundCapsule(
                f"version {version.version} of listing {version.listing_id}: {e}"
            ) from e
        with self._lock:
            if len(self._capsules) >= _CAPSULE_CACHE_SIZE:
                self._capsules.clear()
            self._capsules[key] = bound
        return bound

    def _signed(self, seq: int, debit_id: int, version: int, sealed: bytes, block: int) -> Release:
        receipt = ReleaseReceipt.for_sealed_share(debit_id, version, self.node.index, sealed, block)
        return Release(
            seq=seq,
            debit_id=debit_id,
            version=version,
            node=self.node.index,
            sealed_share=sealed,
            sealed_share_hash=receipt.sealed_share_hash,
            block=block,
            signature=sign(self.node.account, self.domain, receipt),
        )
