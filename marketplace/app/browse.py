"""Reads for people who look rather than act: a listing with its verified document and
versions, the requests on an owner's listings, a buyer's debits with the versions each is
entitled to, and a purpose document's bytes checked as its owner will read them.

None of these needs a wallet: the web app renders them for any address (everything here
is public on the chain or in the store; sealed purposes stay sealed), and the page's
wallet acts on them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from eth_hash.auto import keccak

from marketplace.app.reads import UnknownListing, listing_created, requested_on, topic
from marketplace.app.units import format_duration, format_in
from marketplace.chain.assets import AssetInfo
from marketplace.chain.events import ListingCreated, VersionPublished
from marketplace.chain.market import MarketClient, chain_time
from marketplace.chain.tokens import asset_info
from marketplace.chain.types import Debit, DebitState, Listing
from marketplace.documents import (
    DocumentError,
    DocumentUnavailable,
    ListingDocument,
    NotADocumentUri,
    PurposeDocument,
    PurposeSealed,
    load_listing_document,
    load_purpose,
    purpose_cid,
    purpose_hash,
)
from marketplace.errors import MarketplaceError
from storage.cid import Cid
from storage.errors import StorageError
from storage.stores.base import ContentStore

#: The chain keeps this many leading bytes of keccak256(cid) per version.
CID_DIGEST_SIZE = 27


class VersionNotPublished(MarketplaceError, LookupError):
    """No (verifiable) VersionPublished event for this listing and version."""

    def __init__(self, listing_id: int, version: int) -> None:
        self.listing_id, self.version = listing_id, version
        super().__init__(f"listing {listing_id} has no published version {version}")


@dataclass(frozen=True, slots=True)
class VersionView:
    """A published version: its CID and capsule from the event (checked against the
    digest the contract keeps), when and in which block."""

    listing_id: int
    version: int
    cid: Cid
    capsule: bytes
    published_at: int
    block: int


@dataclass(frozen=True, slots=True)
class ListingPage:
    """A listing as it stands, its verified document (or why not) and its versions."""

    listing: Listing
    created: ListingCreated
    document: ListingDocument | None
    problem: DocumentError | None
    asset: AssetInfo
    versions: tuple[VersionView, ...]

    @property
    def price_text(self) -> str:
        return amount_text(self.asset, self.listing.price_per_period)

    @property
    def period_text(self) -> str:
        return format_duration(self.listing.period_seconds)


@dataclass(frozen=True, slots=True)
class OwnerDebit:
    """A debit on one of the owner's listings with its declared purpose: `purpose` when
    plain and verified, `sealed` when only the owner's key opens it (its bytes are at
    `purpose_cid`), `problem` when it cannot be read (consent would be to a hash only)."""

    debit: Debit
    listing: Listing
    asset: AssetInfo
    periods: int
    purpose_hash: bytes
    purpose: PurposeDocument | None
    sealed: bool
    problem: DocumentError | None
    expired: bool

    @property
    def declared(self) -> bool:
        return self.purpose_hash != bytes(32)

    @property
    def purpose_cid(self) -> Cid | None:
        return purpose_cid(self.purpose_hash) if self.declared else None

    @property
    def amount_text(self) -> str:
        return amount_text(self.asset, self.debit.amount)


@dataclass(frozen=True, slots=True)
class OwnerDebits:
    """What an owner's inbox shows: requests waiting for consent, and active debits."""

    pending: tuple[OwnerDebit, ...]
    active: tuple[OwnerDebit, ...]


@dataclass(frozen=True, slots=True)
class BuyerDebit:
    """A buyer's debit, its listing and the versions it is entitled to now."""

    debit: Debit
    listing: Listing
    asset: AssetInfo
    entitled: tuple[VersionView, ...]

    @property
    def amount_text(self) -> str:
        return amount_text(self.asset, self.debit.amount)


def amount_text(asset: AssetInfo, units: int) -> str:
    """`0.01 ETH`, `5.25 TUSD`, or base units for a token without a safe symbol."""
    return format_in(units, asset.decimals, asset.symbol)


def check_listing_id(market: MarketClient, listing_id: int) -> None:
    """`UnknownListing` unless 1 <= id <= listingCount() (ids count from 1)."""
    if not 1 <= listing_id <= market.listing_count():
        raise UnknownListing(listing_id, 0)


def listing_page(
    market: MarketClient, store: ContentStore, listing_id: int, from_block: int = 0
) -> ListingPage:
    """The listing, its document loaded and verified against its CID, its versions."""
    check_listing_id(market, listing_id)
    created = listing_created(market, listing_id, from_block)
    listing = market.listing(listing_id)
    document: ListingDocument | None = None
    problem: DocumentError | None = None
    try:
        document = load_listing_document(store, created.metadata_uri)
    except NotADocumentUri:
        pass  # a listing without a document: its page shows the on-chain terms only
    except DocumentError as e:
        problem = e
    return ListingPage(listing, created, document, problem, asset_info(market.w3, listing.asset),
                       tuple(versions_of(market, listing_id, from_block)))


def versions_of(market: MarketClient, listing_id: int, from_block: int = 0
                ) -> list[VersionView]:
    """Each published version of the listing, in order; an event whose CID does not match
    the digest the contract keeps is left out (a node lying about logs)."""
    events = market.events().read(from_block, kinds=[VersionPublished],
                                  indexed=[topic(listing_id)])
    found: dict[int, VersionView] = {}
    for event in events:
        if not isinstance(event, VersionPublished) or event.version in found:
            continue
        record = market.version(listing_id, event.version)
        if keccak(event.cid)[:CID_DIGEST_SIZE] != record.cid_digest:
            continue
        try:
            cid = Cid.parse(event.cid)
        except StorageError:
            continue  # not a CID this project makes: no page can fetch it
        found[event.version] = VersionView(listing_id, event.version, cid, event.capsule,
                                           record.published_at, event.ref.block_number)
    return [found[v] for v in sorted(found)]


def version_of(market: MarketClient, listing_id: int, version: int, from_block: int = 0
               ) -> VersionView:
    """One published version (`VersionNotPublished` when there is none)."""
    check_listing_id(market, listing_id)
    if not 1 <= version <= market.listing(listing_id).version_count:
        raise VersionNotPublished(listing_id, version)
    for view in versions_of(market, listing_id, from_block):
        if view.version == version:
            return view
    raise VersionNotPublished(listing_id, version)


def owner_debits(
    market: MarketClient, store: ContentStore, owner: str, from_block: int = 0
) -> OwnerDebits:
    """Requests waiting for consent and active debits on `owner`'s listings, with their
    purposes (plain ones read and verified here; sealed ones left for the owner's key)."""
    created = market.events().read(from_block, kinds=[ListingCreated],
                                   indexed=[None, topic(owner)])
    now = chain_time(market.w3)
    pending: list[OwnerDebit] = []
    active: list[OwnerDebit] = []
    for event in created:
        if not isinstance(event, ListingCreated):
            continue
        listing = market.listing(event.listing_id)
        asset = asset_info(market.w3, listing.asset)
        for request in requested_on(market, event.listing_id, from_block):
            debit = market.debit(request.debit_id)
            if debit.state not in (DebitState.REQUESTED, DebitState.ACTIVE):
                continue
            purpose, sealed, problem = _purpose(store, request.purpose_hash)
            row = OwnerDebit(debit, listing, asset, request.periods, request.purpose_hash,
                             purpose, sealed, problem,
                             debit.state is DebitState.ACTIVE and now >= debit.end)
            (pending if debit.state is DebitState.REQUESTED else active).append(row)
    return OwnerDebits(tuple(pending), tuple(active))


def _purpose(store: ContentStore, hash_: bytes
             ) -> tuple[PurposeDocument | None, bool, DocumentError | None]:
    if hash_ == bytes(32):
        return None, False, None
    try:
        return load_purpose(store, hash_, None), False, None
    except PurposeSealed:
        return None, True, None
    except DocumentError as e:
        return None, False, e


def buyer_debits(market: MarketClient, buyer: str, from_block: int = 0) -> list[BuyerDebit]:
    """`buyer`'s debits, newest first, each with the versions `isEntitled` grants now."""
    rows = []
    versions: dict[int, list[VersionView]] = {}
    for debit_id in reversed(market.debit_ids_requested_by(buyer, from_block)):
        debit = market.debit(debit_id)
        listing = market.listing(debit.listing_id)
        entitled: list[VersionView] = []
        if debit.state is DebitState.ACTIVE and listing.version_count:
            if debit.listing_id not in versions:
                versions[debit.listing_id] = versions_of(market, debit.listing_id, from_block)
            entitled = [v for v in versions[debit.listing_id]
                        if market.is_entitled(debit_id, v.version)]
        rows.append(BuyerDebit(debit, listing, asset_info(market.w3, listing.asset),
                               tuple(entitled)))
    return rows


class _OneBlock:
    """A store holding one block: lets `load_purpose` judge bytes not yet stored."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, cid: Cid) -> Iterator[bytes]:
        yield self.data


@dataclass(frozen=True, slots=True)
class StoredPurpose:
    cid: Cid
    purpose_hash: bytes
    sealed: bool


def store_purpose_bytes(store: ContentStore, data: bytes) -> StoredPurpose:
    """Store a purpose document made elsewhere (the browser) after checking it the way
    its owner's reader will (`load_purpose`): a plain document must follow the schema, a
    sealed one must be a well-formed wrapper (only the owner can open it). Raises the
    document's `DocumentError` otherwise; nothing is stored then."""
    hash_ = purpose_hash(data)
    sealed = False
    try:
        load_purpose(cast(ContentStore, _OneBlock(data)), hash_, None)
    except PurposeSealed:
        sealed = True
    expected = purpose_cid(hash_)
    try:
        cid = store.put(io.BytesIO(data))
    except (StorageError, OSError) as e:
        raise DocumentUnavailable(expected.text, f"the store refused it: {type(e).__name__}"
                                  ) from e
    if cid != expected:
        raise DocumentUnavailable(expected.text, f"the store named it {cid.text}")
    return StoredPurpose(cid, hash_, sealed)
