"""The buyer's operations: browse listings with their documents, request a debit with a
purpose (sealed to the owner when the listing publishes an owner key), fetch and
decrypt versions, follow and cancel debits.

The buyer's X25519 key is derived from the wallet (one deterministic EIP-712 signature
in the market's domain), so the same wallet re-derives it on any machine. `fetch` reads
CID and capsule from the chain (`VersionPublished`), asks the committee's gateways for
key shares (t of n suffice), fetches the ciphertext from the store by CID and decrypts:
the output file appears only if all of that worked.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak

from marketplace.app.owner import DebitChanged, NoContentStore, Payout, withdraw
from marketplace.app.progress import Stages, silent_stages
from marketplace.app.reads import DebitView, debits_of, listing_created, topic
from marketplace.chain.errors import ContractRevert, TransactionFailed
from marketplace.chain.events import ListingCreated, VersionPublished
from marketplace.chain.market import MarketClient, chain_time
from marketplace.chain.tokens import allowance, sign_permit, supports_permit, token_balance
from marketplace.chain.types import ETHER, Debit, DebitId, Listing, Sent
from marketplace.documents import (
    DocumentError,
    ListingDocument,
    NotADocumentUri,
    PurposeDocument,
    load_listing_document,
    put_purpose,
)
from marketplace.errors import MarketplaceError
from marketplace.keyclient import KeyClient
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import Capsule, CapsuleContext
from storage.cid import Cid
from storage.envelope import decrypt_file
from storage.progress import reporting
from storage.stores.base import ContentStore, save

#: The chain keeps this many leading bytes of keccak256(cid) per version.
_CID_DIGEST_SIZE = 27

#: Builds the key client for a fetch: the committee's gateways, their transport and the
#: fetch's deadline are the caller's (HTTP URLs from committee.json, or in-process apps).
KeyClientFactory = Callable[[], KeyClient]


class VersionNotFound(MarketplaceError, LookupError):
    """The listing has no such version, or no (readable) VersionPublished event for it."""


class NoKeyClient(MarketplaceError):
    """A fetch on an app made without a key client factory (no gateways to ask)."""

    def __init__(self) -> None:
        super().__init__("fetching needs the committee's gateways: no key client was given")


class NotYourDebit(MarketplaceError, PermissionError):
    """The debit was opened by another wallet: its key shares are sealed to that one."""

    def __init__(self, debit_id: int, buyer: str, wallet: str) -> None:
        self.debit_id, self.buyer, self.wallet = debit_id, buyer, wallet
        super().__init__(f"debit {debit_id} belongs to {buyer}, not to {wallet}")


#: A permit signed for a purchase is good for this long (it is spent at once).
PERMIT_SECONDS = 3_600


def _unit(asset: str) -> str:
    return "wei" if asset == ETHER else f"base units of {asset}"


class PriceAboveLimit(MarketplaceError):
    """The listing's total is more than the buyer allowed (both in the listing's asset);
    nothing is sent."""

    def __init__(self, listing_id: int, total: int, limit: int, asset: str = ETHER) -> None:
        self.listing_id, self.total, self.limit, self.asset = listing_id, total, limit, asset
        super().__init__(
            f"listing {listing_id} costs {total} {_unit(asset)} in total, above the limit of "
            f"{limit}; nothing was paid"
        )


class InsufficientTokens(MarketplaceError):
    """The buyer's wallet holds less of the listing's token than the total: refused
    before any approval or request is sent (it would only revert, for gas)."""

    def __init__(self, listing_id: int, asset: str, balance: int, total: int) -> None:
        self.listing_id, self.asset, self.balance, self.total = listing_id, asset, balance, total
        super().__init__(
            f"listing {listing_id} costs {total} {_unit(asset)}, the wallet holds {balance}; "
            "nothing was sent"
        )


class PriceChanged(MarketplaceError):
    """The owner changed the price between our read and the payment: the contract takes
    only the exact total, so the payment was refused and nothing was paid."""

    def __init__(self, listing_id: int, seen: int, now: int, asset: str = ETHER) -> None:
        self.listing_id, self.seen, self.now, self.asset = listing_id, seen, now, asset
        super().__init__(
            f"listing {listing_id}'s price changed from {seen} to {now} {_unit(asset)} per "
            "period while paying; the payment was refused and nothing was paid"
        )


class CannotSealPurpose(MarketplaceError):
    """The listing points at a document that cannot be read, so there is no verified
    owner key to seal the purpose to; publishing it in the clear instead would be a
    silent downgrade, so nothing is stored or paid."""

    def __init__(self, listing_id: int, error: DocumentError) -> None:
        self.listing_id, self.error = listing_id, error
        super().__init__(
            f"listing {listing_id}'s document cannot be read ({error.reason}: {error}), so "
            "the purpose cannot be sealed to its owner; nothing was stored or paid "
            "(request without sealing to publish the purpose in the clear)"
        )


@dataclass(frozen=True, slots=True)
class Quote:
    """What a request will pay: one read of the price, and exactly that total, in the
    listing's asset (`price_wei`/`total_wei` are its base units for a token)."""

    listing_id: int
    periods: int
    price_wei: int
    total_wei: int
    asset: str = ETHER


@dataclass(frozen=True, slots=True)
class RequestedDebit:
    debit: Debit
    quote: Quote
    purpose_hash: bytes
    #: where the purpose document is stored (None: no purpose declared)
    purpose_cid: Cid | None
    sealed: bool
    tx_hash: str
    gas_used: int
    #: how it was paid: "ether", "permit" (one transaction) or "approve" (an ERC-20
    #: approval of exactly the total, then the request)
    payment: str = "ether"
    #: the consent deadline asked for (unix seconds; 0: none)
    consent_deadline: int = 0


@dataclass(frozen=True, slots=True)
class FetchResult:
    debit_id: int
    listing_id: int
    version: int
    cid: Cid
    out: Path
    size: int
    used_nodes: tuple[int, ...]
    #: gateways that did not help, and why (by node number)
    faults: dict[int, str]
    epoch: int
    #: seconds per step ("key", "download", "decrypt")
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ListingEntry:
    """A listing with its document: `document` when it verified, else `problem` (None
    for both when the listing's metadata URI is not a document URI)."""

    listing: Listing
    created: ListingCreated
    document: ListingDocument | None
    problem: DocumentError | None


class BuyerApp:
    """One buyer wallet on one market and store. `from_block`: where event reads start
    (the market's deployment block). `store` may be None for what touches only the chain
    (a request without purpose, cancel, status), `key_client_factory` for all but fetch."""

    def __init__(
        self,
        market: MarketClient,
        store: ContentStore | None,
        wallet: LocalAccount,
        key_client_factory: KeyClientFactory | None = None,
        *,
        from_block: int = 0,
    ) -> None:
        self.market = market
        self.store = store
        self.wallet = wallet
        self.key_client_factory = key_client_factory
        self.from_block = from_block

    def content(self, operation: str) -> ContentStore:
        if self.store is None:
            raise NoContentStore(operation)
        return self.store

    # ------------------------------------------------------------ listings

    def browse(self) -> list[ListingEntry]:
        """Every listing on the market with its document (a chain scan; the catalog is
        the indexed, searchable version of this)."""
        created = self.market.events().read(self.from_block, kinds=[ListingCreated])
        return [self._entry(e) for e in created if isinstance(e, ListingCreated)]

    def listing(self, listing_id: int) -> ListingEntry:
        """One listing with its document, verified against its CID."""
        return self._entry(listing_created(self.market, listing_id, self.from_block))

    def _entry(self, created: ListingCreated) -> ListingEntry:
        listing = self.market.listing(created.listing_id)
        try:
            document = load_listing_document(self.content("reading listing documents"),
                                             created.metadata_uri)
        except NotADocumentUri:
            return ListingEntry(listing, created, None, None)
        except DocumentError as e:
            return ListingEntry(listing, created, None, e)
        return ListingEntry(listing, created, document, None)

    # ------------------------------------------------------------ requests

    def quote(self, listing_id: int, periods: int) -> Quote:
        listing = self.market.listing(listing_id)
        price = listing.price_per_period
        return Quote(listing_id, periods, price, price * periods, listing.asset)

    def request(
        self,
        listing_id: int,
        periods: int,
        purpose: PurposeDocument | None,
        max_price_wei: int | None = None,
        seal_purpose: bool = True,
        *,
        on_quote: Callable[[Quote], None] | None = None,
        consent_within: int | None = None,
        use_permit: bool = True,
    ) -> RequestedDebit:
        """Pay price x periods into escrow; the purpose document (if any) is stored
        first, sealed to the listing's ownerKey when its document has one, and its hash
        goes on chain. `on_quote` sees the total before anything is stored or paid.

        `max_price_wei` is in the listing's asset. A token listing is paid with an
        EIP-2612 permit of exactly the total when the token supports it (one
        transaction), else by approving exactly the total and requesting: either way the
        market can pull no more than the total shown, even if the owner raises the price
        meanwhile. `consent_within` (seconds): the owner must consent by chain time + that,
        after which the buyer may cancel for a refund."""
        quote = self.quote(listing_id, periods)
        if on_quote is not None:
            on_quote(quote)
        if max_price_wei is not None and quote.total_wei > max_price_wei:
            raise PriceAboveLimit(listing_id, quote.total_wei, max_price_wei, quote.asset)
        if quote.asset != ETHER:
            held = token_balance(self.market.w3, quote.asset, self.wallet.address)
            if held < quote.total_wei:
                raise InsufficientTokens(listing_id, quote.asset, held, quote.total_wei)
        if consent_within is not None and consent_within <= 0:
            raise ValueError("a consent deadline is a positive number of seconds away")
        deadline = 0 if consent_within is None else chain_time(self.market.w3) + consent_within
        # a BuyerPublicKey refuses low-order points: a key nothing can be sealed to is an
        # error here, before any transaction
        buyer_key = BuyerSecretKey.from_account(self.wallet, self.market.domain).public_key()
        purpose_hash, cid, sealed = bytes(32), None, False
        if purpose is not None:
            owner_key = self.owner_key(listing_id) if seal_purpose else None
            purpose_hash, cid = put_purpose(self.content("storing a purpose"), purpose,
                                            owner_key)
            sealed = owner_key is not None
        try:
            sent, payment = self._pay(quote, buyer_key.key, purpose_hash, deadline, use_permit)
        except (ContractRevert, TransactionFailed) as e:
            now = self.market.listing(listing_id).price_per_period
            if now != quote.price_wei:
                raise PriceChanged(listing_id, quote.price_wei, now, quote.asset) from e
            raise
        return RequestedDebit(self.market.debit(sent.value), quote, purpose_hash, cid, sealed,
                              sent.tx_hash, sent.gas_used, payment, deadline)

    def _pay(
        self, quote: Quote, buyer_key: bytes, purpose_hash: bytes, deadline: int,
        use_permit: bool,
    ) -> tuple[Sent[DebitId], str]:
        """The request transaction(s) for `quote`, and how it was paid."""
        market, w3, listing_id = self.market, self.market.w3, quote.listing_id
        if quote.asset == ETHER:
            return market.request_debit(
                self.wallet, listing_id, periods=quote.periods, buyer_key=buyer_key,
                purpose_hash=purpose_hash, consent_deadline=deadline, value=quote.total_wei,
            ), "ether"
        if use_permit and supports_permit(w3, quote.asset, self.wallet.address):
            permit = sign_permit(w3, quote.asset, self.wallet, market.address,
                                 quote.total_wei, chain_time(w3) + PERMIT_SECONDS)
            return market.request_debit_with_permit(
                self.wallet, listing_id, permit, periods=quote.periods, buyer_key=buyer_key,
                purpose_hash=purpose_hash, consent_deadline=deadline,
            ), "permit"
        current = allowance(w3, quote.asset, self.wallet.address, market.address)
        if current != quote.total_wei:
            if current != 0:  # USDT-style tokens refuse to change a non-zero allowance
                market.approve_payment(self.wallet, quote.asset, 0)
            market.approve_payment(self.wallet, quote.asset, quote.total_wei)
        return market.request_debit(
            self.wallet, listing_id, periods=quote.periods, buyer_key=buyer_key,
            purpose_hash=purpose_hash, consent_deadline=deadline, value=0,
        ), "approve"

    def owner_key(self, listing_id: int) -> bytes | None:
        """The X25519 key the listing's verified document publishes, if it has one."""
        entry = self.listing(listing_id)
        if entry.problem is not None:
            raise CannotSealPurpose(listing_id, entry.problem)
        if entry.document is None or entry.document.owner_key is None:
            return None
        return bytes.fromhex(entry.document.owner_key.removeprefix("0x"))

    def cancel(self, debit_id: int) -> DebitChanged:
        """Withdraw a debit the owner has not consented to yet; the payment is credited
        back to the market balance (`withdraw`)."""
        sent = self.market.cancel(self.wallet, debit_id)
        return DebitChanged(self.market.debit(debit_id), sent.tx_hash, sent.gas_used)

    def withdraw(self, asset: str | None = None) -> Payout:
        return withdraw(self.market, self.wallet, asset)

    def status(self, from_block: int | None = None) -> list[DebitView]:
        """This wallet's debits with their current state."""
        start = self.from_block if from_block is None else from_block
        return debits_of(self.market, self.wallet.address, start)

    # ------------------------------------------------------------ data

    def fetch(
        self,
        debit_id: int,
        out: Path,
        version: int | None = None,
        progress: Stages | None = None,
    ) -> FetchResult:
        """Key from t gateways, ciphertext from the store (verified against its CID),
        decrypt to `out`; nothing is written to `out` unless all of it worked. `version`
        defaults to the latest published."""
        stages = progress or silent_stages()
        if out.is_dir():
            raise IsADirectoryError(21, "is a directory", str(out))
        record = self.market.debit(debit_id)
        if record.buyer != self.wallet.address:
            raise NotYourDebit(debit_id, record.buyer, self.wallet.address)
        chosen = self._version_to_fetch(record.listing_id, version)
        published = self._published(record.listing_id, chosen)
        ctx = CapsuleContext(self.market.chain_id, self.market.address, record.listing_id,
                             chosen, published.cid)
        capsule = Capsule.from_bytes(published.capsule)
        store = self.content("fetching")
        if self.key_client_factory is None:
            raise NoKeyClient()
        secret = BuyerSecretKey.from_account(self.wallet, self.market.domain)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        fetched = self.key_client_factory().fetch(self.wallet, secret, debit_id, ctx, capsule)
        timings["key"] = time.perf_counter() - started
        cid = Cid(published.cid)
        with tempfile.TemporaryDirectory(prefix="datadebit-fetch-") as folder:
            sealed = Path(folder) / "version.dde"
            started = time.perf_counter()
            with stages("download", None) as counter:
                sealed_size = save(reporting(store.stream(cid), counter), sealed)
            timings["download"] = time.perf_counter() - started
            started = time.perf_counter()
            with stages("decrypt", sealed_size) as counter:
                size = decrypt_file(sealed, out, fetched.data_key, progress=counter)
            timings["decrypt"] = time.perf_counter() - started
        return FetchResult(debit_id, record.listing_id, chosen, cid, out, size,
                           fetched.used_nodes, dict(fetched.faults), fetched.epoch, timings)

    def _version_to_fetch(self, listing_id: int, asked: int | None) -> int:
        count = self.market.listing(listing_id).version_count
        if count == 0:
            raise VersionNotFound(f"listing {listing_id} has no published version yet")
        if asked is None:
            return count
        if asked > count:
            raise VersionNotFound(
                f"listing {listing_id} has {count} version(s); there is no version {asked}"
            )
        return asked

    def _published(self, listing_id: int, version: int) -> VersionPublished:
        """The version's event, checked against the digest the contract keeps."""
        events = self.market.events().read(
            self.from_block, kinds=[VersionPublished],
            indexed=[topic(listing_id), topic(version)],
        )
        found = [e for e in events if isinstance(e, VersionPublished)]
        if not found:
            raise VersionNotFound(
                f"no VersionPublished event for listing {listing_id} version {version} "
                f"from block {self.from_block} on (is --from-block too high?)"
            )
        event = found[-1]
        stored = self.market.version(listing_id, version).cid_digest
        if keccak(event.cid)[:_CID_DIGEST_SIZE] != stored:
            raise VersionNotFound(
                f"the VersionPublished event of listing {listing_id} version {version} does "
                "not match the CID digest the contract keeps"
            )
        return event
