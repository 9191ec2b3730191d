"""One gateway node's key release: check a wallet-signed request, then hand out this
node's sealed share with a signed receipt, only while the debit is entitled at the
confirmed head.

A (debit, version, buyer key) is released once: the first release is appended to the log
with a receipt naming the buyer, the hash of the key the share was sealed to, the request
that asked and the block its entitlement was checked at; later requests by the same buyer
get the same sealed share and receipt back, but only after passing every check again (a
revoked debit gets nothing more). Before a first release the node confirms at the
confirmed head that the debit's buyer and listing are what it indexed and that the
indexed log's block is still canonical: a reorg can give a debit id to another buyer.

Shares are also prepared ahead of requests, but boundedly: at most `PREPARE_PER_EVENT`
pairs per chain event, a bounded queue worked off outside the watcher's lock, and a
capped, expiring table; whatever is not prepared is made on request.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount

from marketplace.chain.errors import ChainError, UnknownDebit, UnknownVersion
from marketplace.chain.events import DebitConsented, DebitRequested, MarketEvent, VersionPublished
from marketplace.chain.hot_reads import HotReads
from marketplace.chain.market import MarketClient
from marketplace.eip712 import (
    MAX_REQUEST_LIFETIME,
    Eip712Domain,
    KeyRequest,
    MalformedSignature,
    ReleaseReceipt,
    digest,
    recover_digest_signer,
    sign,
)
from marketplace.errors import MarketplaceError
from marketplace.gateway.shares import EpochShare, EpochShares, NotInCommittee
from marketplace.gateway.state import GatewayState, IndexedDebit, IndexedVersion, Release
from marketplace.gateway.watcher import ChainWatcher
from marketplace.keyrelease.buyer_key import BuyerPublicKey, is_small_order
from marketplace.keyrelease.capsule import BoundCapsule, Capsule, CapsuleContext
from marketplace.keyrelease.errors import CapsuleNotBound, MalformedCapsule
from marketplace.keyrelease.share import make_sealed_share

log = logging.getLogger(__name__)

#: A request may not be valid for longer than this (DESIGN §5).
MAX_EXPIRY_AHEAD = MAX_REQUEST_LIFETIME
#: Checked capsules remembered (a proof check costs two scalar multiplications).
_CAPSULE_CACHE_SIZE = 4096
#: The largest id the state's BIGINT columns hold; no debit has a larger one.
MAX_DEBIT_ID = 2**63 - 1
#: Ahead-of-time work per chain event: the newest versions of a listing for a new debit,
#: the newest debits of a listing for a new version. The rest is made on request.
PREPARE_PER_EVENT = 64
#: (debit, version) pairs waiting to be prepared; more are dropped (made on request).
PREPARE_QUEUE_SIZE = 4096
#: Pairs prepared per background round: ahead-of-time work is paced, so requests, which
#: share the interpreter with it, keep the CPU.
PREPARE_PER_ROUND = 256
#: Prepared shares kept at most, and how many blocks after their event.
PREPARED_MAX_ROWS = 10_000
PREPARED_MAX_AGE_BLOCKS = 7200


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


class BuyerKeyUnusable(ReleaseRefused):
    """The debit names a low-order X25519 key: nothing can be sealed to it."""

    code = "invalid_buyer_key"


class UnboundCapsule(ReleaseRefused):
    """The version's capsule is malformed or its proof does not bind it to its listing:
    nodes never compute shares for it (it may carry an R copied from someone else)."""

    code = "invalid_capsule"


class NoShareInForce(ReleaseRefused):
    """This node holds no share of the committee epoch in force at the confirmed head
    (not in its roster, or the ceremony's share is not stored yet)."""

    code = "not_in_committee"


@dataclass(frozen=True, slots=True)
class Head:
    """The confirmed head: its number and hash (None before the first block), and when
    it was read (monotonic clock)."""

    number: int
    hash: str | None
    read_at: float = field(compare=False)


@dataclass(frozen=True, slots=True)
class _Checked:
    """What the checks after the nonce found: the version, the confirmed head, the
    entitlement there and (from memory only) the logged release."""

    version: IndexedVersion
    head: Head
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
        account: LocalAccount,
        shares: EpochShares,
        *,
        now: Callable[[], float] = time.time,
        head_ttl: float = 0.0,
    ) -> None:
        self.market = market
        self.state = state
        self.watcher = watcher
        self.account = account
        self.shares = shares
        self.domain = Eip712Domain(market.chain_id, market.address)
        self._now = now
        self._head_ttl = head_ttl
        self._head: Head | None = None
        # what is remembered at `_head` (cleared when it changes, by number or by hash)
        self._entitled: dict[tuple[int, int], bool] = {}
        self._confirmed: set[tuple[int, bytes]] = set()
        self._capsules: dict[tuple[int, int, bytes, bytes], BoundCapsule] = {}
        self._debit_count: tuple[Head | None, int] = (None, 0)  # (at head, count at latest)
        self._to_prepare: dict[tuple[int, int], int] = {}  # (debit, version) -> event block
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
        if request.debit_id > MAX_DEBIT_ID:
            raise UnknownDebitRequested(f"no debit {request.debit_id}")
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
        request_digest = digest(self.domain, request)
        try:
            signer = recover_digest_signer(request_digest, signature)
        except MalformedSignature as e:
            raise BadSignature(str(e)) from e
        debit = debit or self._debit(request.debit_id)
        if signer.lower() != debit.buyer.lower():
            raise WrongSigner(f"request signed by {signer}, not by the debit's buyer")
        if is_small_order(debit.buyer_key):
            raise BuyerKeyUnusable(
                f"debit {debit.debit_id} names a low-order X25519 key: nothing can be sealed to it"
            )
        if not self.state.use_nonce(signer, request.nonce, request.expiry, now, request_digest):
            raise NonceReused("this nonce was used before for another request")
        checked = checked or self._checked(debit, request.version)
        if not checked.entitled:
            raise NotEntitled(
                f"debit {debit.debit_id} is not entitled to version {checked.version.version} "
                f"at block {checked.head.number}"
            )
        release = checked.release or self._release(
            debit, checked, request, signature, request_digest
        )
        return SignedRelease(release, self.receipt_of(release))

    def _checked(self, debit: IndexedDebit, version_number: int) -> _Checked:
        """The version (indexed on demand), the confirmed head and the entitlement at it."""
        version = self._version(debit.listing_id, version_number)
        # the debit was indexed up to a head newer than a remembered one: read it again
        head = self.head(at_least=debit.block_number)
        entitled = self.entitled(debit.debit_id, version.version, head)
        return _Checked(version, head, entitled, None)

    def _checked_from_memory(self, debit: IndexedDebit, version_number: int) -> _Checked | None:
        """The same from the index and the remembered head and entitlement, with the
        existing release when entitled; None if any is missing."""
        version = self.state.version(debit.listing_id, version_number)
        with self._lock:  # the head and what is remembered at it, together
            head = self._head
            entitled = self._entitled.get((debit.debit_id, version_number))
        if version is None or head is None or entitled is None:
            return None
        if time.monotonic() - head.read_at > self._head_ttl or head.number < debit.block_number:
            return None
        release = None
        if entitled:
            release = self.state.release_for(debit.debit_id, version_number, _key_hash(debit))
            if release is None:
                return None
        return _Checked(version, head, entitled, release)

    def _release(
        self,
        debit: IndexedDebit,
        checked: _Checked,
        request: KeyRequest,
        signature: bytes,
        request_digest: bytes,
    ) -> Release:
        """The release of (debit, version, key): the logged one, else a new one appended,
        once the debit is confirmed to be the indexed buyer's on the canonical chain."""
        version, block = checked.version, checked.head.number
        key_hash = _key_hash(debit)
        release = self.state.release_for(debit.debit_id, version.version, key_hash)
        if release is not None:
            return release
        self._confirm_debit(debit, checked.head)
        share = self._share_at(block)
        sealed = self.state.prepared(
            debit.debit_id, version.version, debit.buyer_key, epoch=share.epoch
        )
        if sealed is None:
            sealed = self._seal(share, debit, version)
        release = self.state.append_release(
            debit.debit_id,
            version.version,
            key_hash,
            lambda seq: self._signed(
                seq, share, debit, version.version, sealed, block, request, signature,
                request_digest,
            ),
        )
        log.info(
            "released share for debit %d version %d (seq %d, block %d)",
            debit.debit_id, version.version, release.seq, block,
        )
        return release

    def _confirm_debit(self, debit: IndexedDebit, head: Head) -> None:
        """Refuse unless, at the confirmed head, the debit's buyer and listing are the
        indexed ones and the block of its indexed `DebitRequested` log is still canonical
        (so is the buyer key read from that log). Remembered while the chain only grows
        on top of the head it was confirmed at (forgotten at any other head change)."""
        remembered = (debit.debit_id, debit.buyer_key)
        with self._lock:
            if remembered in self._confirmed:  # cleared unless the chain only grew
                return
        listing_id, buyer, log_block_hash = self._debit_at(debit, head)
        if buyer.lower() != debit.buyer.lower():
            self._notice_reorg()
            raise WrongSigner(
                f"debit {debit.debit_id} belongs to {buyer} at block {head.number}: the "
                "chain was reorganised since it was indexed"
            )
        if listing_id != debit.listing_id or log_block_hash != debit.block_hash:
            self._notice_reorg()
            raise NotEntitled(
                f"debit {debit.debit_id} as indexed is not on the canonical chain at block "
                f"{head.number} (a reorg); ask again once the node has caught up"
            )
        with self._lock:
            if self._head == head:
                self._confirmed.add(remembered)

    def _debit_at(self, debit: IndexedDebit, head: Head) -> tuple[int, str, str | None]:
        """(listingId, buyer) of the debit at the head, and the hash of its log's block."""
        if head.hash is None:
            raise NotEntitled(f"debit {debit.debit_id} is not confirmed yet")
        try:
            if self._reads is not None:  # one round trip
                return self._reads.debit_owner_and_block(
                    debit.debit_id, head.hash, debit.block_number
                )
            on_chain = self.market.debit(debit.debit_id, block=head.number)
        except UnknownDebit as e:  # reorganised away entirely
            self._notice_reorg()
            raise NotEntitled(f"debit {debit.debit_id} is not on the canonical chain") from e
        return on_chain.listing_id, on_chain.buyer, self.watcher.block_hash(debit.block_number)

    def _notice_reorg(self) -> None:
        """Let the watcher rewind the index now rather than at its next poll."""
        try:
            self.watcher.poll_once()
        except ChainError as e:
            log.warning("could not re-index after a reorg: %s", e)

    def receipt_of(self, release: Release) -> ReleaseReceipt:
        return ReleaseReceipt(
            release.debit_id, release.version, release.node, release.epoch,
            release.buyer,  # type: ignore[arg-type]
            release.buyer_key_hash, release.request_digest, release.sealed_share_hash,
            release.block,
        )

    # ------------------------------------------------------------ ahead-of-time shares

    def on_event(self, event: MarketEvent) -> None:
        """Watcher callback, under the watcher's lock: only queues what may be prepared
        (no chain reads, no crypto); `prepare_pending` does the work outside the lock."""
        if isinstance(event, DebitRequested) and not event.auto_approved:
            return
        pairs: list[tuple[int, int]] = []
        if isinstance(event, DebitRequested | DebitConsented):
            versions = self.state.versions_of_listing(event.listing_id, newest=PREPARE_PER_EVENT)
            pairs = [(event.debit_id, v.version) for v in versions]
        elif isinstance(event, VersionPublished):
            debits = self.state.debits_of_listing(event.listing_id, newest=PREPARE_PER_EVENT)
            pairs = [(d.debit_id, event.version) for d in debits]
        with self._lock:
            for pair in pairs:
                if len(self._to_prepare) >= PREPARE_QUEUE_SIZE:
                    break
                self._to_prepare.setdefault(pair, event.ref.block_number)

    def pending_preparations(self) -> int:
        with self._lock:
            return len(self._to_prepare)

    def prepare_pending(self, limit: int = PREPARE_PER_ROUND) -> int:
        """Prepare up to `limit` queued shares that are entitled at the confirmed head and
        not yet prepared or released; expire old prepared rows. Returns how many were made.
        Between two shares the thread yields the interpreter to waiting requests."""
        head = self.head()
        rows = self.state.prune_prepared(head.number - PREPARED_MAX_AGE_BLOCKS, PREPARED_MAX_ROWS)
        made = 0
        for _ in range(limit):
            with self._lock:
                if not self._to_prepare:
                    break
                pair = next(iter(self._to_prepare))
                block_number = self._to_prepare.pop(pair)
            if rows >= PREPARED_MAX_ROWS:
                continue  # full: what is not prepared is made on request
            if head.number < block_number:  # queued from a block newer than the head read
                head = self.head(at_least=block_number)
            if self._prepare(pair[0], pair[1], head, block_number):
                made += 1
                rows += 1
            time.sleep(0)  # let a request thread take the GIL
        return made

    def _prepare(self, debit_id: int, version_number: int, head: Head, block_number: int) -> bool:
        debit = self.state.debit(debit_id)
        if debit is None or is_small_order(debit.buyer_key):
            return False
        version = self.state.version(debit.listing_id, version_number)
        if version is None:
            return False
        try:
            share = self._share_at(head.number)
        except ReleaseRefused:
            return False  # not in the committee in force: nothing to prepare
        if self.state.prepared(debit_id, version_number, debit.buyer_key, epoch=share.epoch):
            return False
        if self.state.release_for(debit_id, version_number, _key_hash(debit)) is not None:
            return False
        if not self.entitled(debit_id, version_number, head):
            return False
        try:
            self._confirm_debit(debit, head)  # ahead too: a first release then needs no read
            sealed = self._seal(share, debit, version)
        except ReleaseRefused as e:
            log.warning("not preparing a share: %s", e.message)
            return False
        self.state.store_prepared(
            debit_id, version_number, debit.buyer_key, sealed, block_number, epoch=share.epoch
        )
        return True

    # ------------------------------------------------------------ chain reads

    def head(self, *, at_least: int = -1) -> Head:
        """Latest block minus the confirmation depth, cached for `head_ttl` seconds (read
        again if the cached one is below `at_least`).

        Remembered entitlements are dropped whenever the confirmed head changes, by hash
        as well as by number: a reorg can replace the head with another block of the same
        height in which the debit is no longer entitled.
        """
        fresh = self._fresh_head()
        if fresh is not None and fresh.number >= at_least:
            return fresh
        return self._refresh_head(at_least)

    def _fresh_head(self) -> Head | None:
        """The remembered confirmed head while it is at most `head_ttl` old, else None."""
        with self._lock:
            head = self._head
        if head is None or time.monotonic() - head.read_at > self._head_ttl:
            return None
        return head

    def _refresh_head(self, at_least: int = -1) -> Head:
        # one thread asks the chain, outside `_lock` (requests answered from memory go
        # on meanwhile); threads that queued behind it take its answer if still fresh
        with self._refresh_lock:
            fresh = self._fresh_head()
            if fresh is not None and fresh.number >= at_least:
                return fresh
            clock = time.monotonic()
            number, block_hash, parent = self._read_head()
            head = Head(number, block_hash, clock)
            with self._lock:
                old = self._head
                if old is None or (number, block_hash) != (old.number, old.hash):
                    self._entitled.clear()
                    # confirmed debits stay confirmed when the new head is the old one's
                    # child: every block under the old head is still canonical
                    if old is None or parent is None or (number, parent) != (
                        old.number + 1, old.hash
                    ):
                        self._confirmed.clear()
                self._head = head
            return head

    def _read_head(self) -> tuple[int, str | None, str | None]:
        """(number, hash, parent hash) of the confirmed head; hashes None before the first
        block, the parent None where it is not read (the embedded chain)."""
        if self._reads is None:
            head = self.watcher.reader.confirmed_head()
            return head, self.watcher.block_hash(head) if head >= 0 else None, None
        confirmations = self.watcher.reader.confirmations
        if confirmations == 0:  # number, hash and parent in one round trip
            header = self._reads.header()
        else:
            number = self._reads.block_number() - confirmations
            header = self._reads.header(number) if number >= 0 else None
            if header is None:
                return number, None, None
        if header is None:
            raise ChainError("the chain node has no latest block")
        return header

    def entitled(self, debit_id: int, version: int, head: Head) -> bool:
        """`isEntitled` in the confirmed head's block, asked by its hash (EIP-1898) and
        remembered while the confirmed head is that block."""
        key = (debit_id, version)
        with self._lock:
            cached = self._entitled.get(key) if self._head == head else None
        if cached is not None:
            return cached
        if head.hash is None:
            return False
        try:
            if self._reads is not None:
                answer = self._reads.is_entitled(debit_id, version, head.hash)
            else:
                # eth-tester takes no block hash: ask by number, then make sure that
                # number still names the same block (else the answer may be another
                # branch's)
                answer = self.market.is_entitled(debit_id, version, block=head.number)
                if self.watcher.block_hash(head.number) != head.hash:
                    return False
        except (UnknownDebit, UnknownVersion):
            answer = False  # not (yet, or no longer) on the chain at that block
        with self._lock:
            if self._head == head:
                self._entitled[key] = answer
        return answer

    def _debit(self, debit_id: int) -> IndexedDebit:
        debit = self.state.debit(debit_id)
        if debit is not None:
            return debit
        if debit_id > self._known_debit_count():
            raise UnknownDebitRequested(f"no debit {debit_id}")
        # indexed on demand, not by a watcher poll: the watcher may be busy (and holding its
        # lock) with a flood of other logs
        debit = self.watcher.find_debit(debit_id, self.head().number)
        if debit is None:
            raise NotEntitled(f"debit {debit_id} is not confirmed yet")
        self.state.remember(debit, debit.block_number)
        return debit

    def _known_debit_count(self) -> int:
        """`debitCount` at the latest block, read at most once per confirmed head: the
        count grows only with new blocks, so unknown ids cannot make a node spam its chain
        node (they cost nothing beyond the head read the node makes anyway)."""
        head = self.head()
        with self._lock:
            at, count = self._debit_count
        if at == head:
            return count
        count = self._reads.debit_count() if self._reads else self.market.debit_count()
        with self._lock:
            self._debit_count = (head, count)
        return count

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

    def _share_at(self, block: int) -> EpochShare:
        """The share of the committee epoch in force at `block` (the epoch the receipt
        names and the auditor checks the release against)."""
        try:
            return self.shares.at(block)
        except NotInCommittee as e:
            raise NoShareInForce(str(e)) from e

    def _seal(self, share: EpochShare, debit: IndexedDebit, version: IndexedVersion) -> bytes:
        return make_sealed_share(
            share.share,
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

    def _signed(
        self,
        seq: int,
        share: EpochShare,
        debit: IndexedDebit,
        version: int,
        sealed: bytes,
        block: int,
        request: KeyRequest,
        request_signature: bytes,
        request_digest: bytes,
    ) -> Release:
        receipt = ReleaseReceipt.for_sealed_share(
            debit.debit_id, version, share.index, sealed, block,
            epoch=share.epoch, buyer=debit.buyer, buyer_key=debit.buyer_key,
            request_digest=request_digest,
        )
        return Release(
            seq=seq,
            debit_id=debit.debit_id,
            version=version,
            node=share.index,
            epoch=receipt.epoch,
            buyer=receipt.buyer,
            buyer_key_hash=receipt.buyer_key_hash,
            request=request,
            request_signature=request_signature,
            request_digest=request_digest,
            sealed_share=sealed,
            sealed_share_hash=receipt.sealed_share_hash,
            block=block,
            signature=sign(self.account, self.domain, receipt),
        )


def _key_hash(debit: IndexedDebit) -> bytes:
    """SHA-256 of the debit's buyer key: what releases are keyed by, beside the ids."""
    return hashlib.sha256(debit.buyer_key).digest()
