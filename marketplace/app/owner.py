"""The data owner's operations: describe and list a dataset, publish encrypted versions,
read the requests waiting for consent (with their purpose, verified), decide them, and
collect what accrued.

Publishing happens on the owner's machine: a fresh data key per version, the file
encrypted locally, the ciphertext put in the store (whose CID must equal ours), the key
wrapped for the committee key read from the chain, and CID + capsule anchored with
`publishVersion`. The data key is never written anywhere.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from eth_account.signers.local import LocalAccount

from marketplace.app.progress import Stages, silent_stages
from marketplace.app.reads import ListingView, listings_of, requested_on
from marketplace.chain.market import MarketClient
from marketplace.chain.types import ETHER, Debit, DebitState, Sent, Wei
from marketplace.documents import (
    DocumentError,
    ListingDocument,
    OwnerSecretKey,
    PurposeDocument,
    document_uri,
    load_purpose,
    put_document,
    terms_hash,
)
from marketplace.errors import MarketplaceError
from marketplace.keyrelease.capsule import CapsuleContext, make_capsule
from marketplace.keyrelease.group import Point
from storage.cid import Cid
from storage.envelope import encrypt_file
from storage.keys import DataKey
from storage.progress import ProgressReader
from storage.stores.base import ContentStore


class PublishFailed(MarketplaceError):
    """A version could not be published as computed (store or chain disagreed)."""


class NotYourListing(MarketplaceError, PermissionError):
    """The wallet is not the listing's owner: nothing is encrypted, stored or sent."""

    def __init__(self, listing_id: int, owner: str, wallet: str) -> None:
        self.listing_id, self.owner, self.wallet = listing_id, owner, wallet
        super().__init__(f"listing {listing_id} belongs to {owner}, not to {wallet}")


class NoContentStore(MarketplaceError):
    """An operation that stores or reads documents or ciphertext, on an app made without
    a content store."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(f"{operation} needs a content store, and none was given")


class OwnerKeyMismatch(MarketplaceError, ValueError):
    """The listing document names an ownerKey this wallet does not hold: purposes sealed
    to it could never be read here."""

    def __init__(self, given: str, derived: str) -> None:
        self.given, self.derived = given, derived
        super().__init__(
            f"the document's ownerKey {given} is not this wallet's owner key {derived}; "
            "leave ownerKey out and it is filled in"
        )


class MixedAssets(MarketplaceError, ValueError):
    """A claim over debits paid in different assets: claim each asset's debits apart."""

    def __init__(self, assets: list[str]) -> None:
        self.assets = assets
        super().__init__(
            f"these debits are paid in {len(assets)} different assets ({', '.join(assets)}): "
            "claim the debits of each asset separately; nothing was sent"
        )


@dataclass(frozen=True, slots=True)
class CreatedListing:
    listing_id: int
    metadata_uri: str
    terms_hash: bytes
    #: the stored listing document's CID (None: the listing has no document)
    document_cid: Cid | None
    document: ListingDocument | None
    tx_hash: str
    gas_used: int
    #: what buyers pay in: `ETHER` or the ERC-20's address
    asset: str = ETHER


@dataclass(frozen=True, slots=True)
class PublishedVersion:
    listing_id: int
    version: int
    cid: Cid
    plaintext_size: int
    ciphertext_size: int
    tx_hash: str
    gas_used: int
    #: seconds per step ("encrypt", "upload", "anchor"), for whoever shows them
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A debit waiting for the owner's consent, with the purpose the buyer declared.

    `purpose` is the verified document (None when none was declared or it could not be
    read); `problem` says why it could not be (a swapped, missing or sealed-to-someone-else
    document): consent is then given to a hash only, and the owner should know it."""

    debit: Debit
    periods: int
    purpose_hash: bytes
    purpose: PurposeDocument | None
    problem: DocumentError | None

    @property
    def declared(self) -> bool:
        return self.purpose_hash != bytes(32)


@dataclass(frozen=True, slots=True)
class DebitChanged:
    """An owner's (or buyer's) decision on a debit, and the debit as it now stands."""

    debit: Debit
    tx_hash: str
    gas_used: int


@dataclass(frozen=True, slots=True)
class Payout:
    """An amount claimed or withdrawn, and the market balance left afterwards, in
    `asset`'s smallest units (wei for ether)."""

    amount: Wei
    balance: Wei
    tx_hash: str
    gas_used: int
    asset: str = ETHER


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.digest()


class OwnerApp:
    """One owner wallet on one market and store. `from_block`: where event reads start
    (the market's deployment block). `store` may be None for the decisions and payouts,
    which touch only the chain."""

    def __init__(
        self,
        market: MarketClient,
        store: ContentStore | None,
        wallet: LocalAccount,
        *,
        from_block: int = 0,
    ) -> None:
        self.market = market
        self.store = store
        self.wallet = wallet
        self.from_block = from_block
        self._secret: OwnerSecretKey | None = None

    def content(self, operation: str) -> ContentStore:
        if self.store is None:
            raise NoContentStore(operation)
        return self.store

    @property
    def address(self) -> str:
        return str(self.wallet.address)

    def owner_secret(self) -> OwnerSecretKey:
        """The wallet's X25519 key for sealed purposes (one deterministic signature)."""
        if self._secret is None:
            self._secret = OwnerSecretKey.from_account(self.wallet, self.market.domain)
        return self._secret

    def owner_key_hex(self) -> str:
        return "0x" + self.owner_secret().public_key().hex()

    # ------------------------------------------------------------ listings

    def create_listing(
        self,
        price_wei: int,
        period_seconds: int,
        auto_approve: bool,
        document: ListingDocument | None,
        metadata_uri: str | None = None,
        *,
        terms_hash_override: bytes | None = None,
        asset: str | None = None,
    ) -> CreatedListing:
        """List a dataset. With a document: it gets this wallet's ownerKey (so buyers can
        seal their purposes to it), is stored, and the listing points at it
        (`ipfs://<cid>`, termsHash = its terms' hash). Without one, `metadata_uri` and
        `terms_hash_override` (a terms file's SHA-256) go on chain as given. `asset`: the
        ERC-20 buyers pay in (None: ether); `price_wei` is then in its base units."""
        cid: Cid | None = None
        if document is not None:
            if metadata_uri is not None or terms_hash_override is not None:
                raise ValueError("a listing document sets the metadata URI and terms hash")
            document = self._with_owner_key(document)
            cid = put_document(self.content("a listing document"), document)
            uri, terms = document_uri(cid), terms_hash(document)
        else:
            uri, terms = metadata_uri or "", terms_hash_override or bytes(32)
        sent = self.market.create_listing(
            self.wallet, price_per_period=price_wei, period_seconds=period_seconds,
            auto_approve=auto_approve, terms_hash=terms, metadata_uri=uri,
            asset=asset or ETHER,
        )
        return CreatedListing(int(sent.value), uri, terms, cid, document, sent.tx_hash,
                              sent.gas_used, asset or ETHER)

    def _with_owner_key(self, document: ListingDocument) -> ListingDocument:
        mine = self.owner_key_hex()
        if document.owner_key is None:
            return document.model_copy(update={"owner_key": mine})
        if document.owner_key.lower() != mine:
            raise OwnerKeyMismatch(document.owner_key, mine)
        return document

    def listings(self, owner: str | None = None) -> list[ListingView]:
        """The owner's listings (default: this wallet's), with their debits."""
        return listings_of(self.market, owner or self.address, self.from_block)

    # ------------------------------------------------------------ versions

    def publish(
        self, listing_id: int, path: Path, progress: Stages | None = None
    ) -> PublishedVersion:
        """Encrypt `path` locally, store the ciphertext, anchor CID + capsule."""
        stages = progress or silent_stages()
        store = self.content("publishing")
        size = path.stat().st_size
        with path.open("rb"):
            pass  # an unreadable input fails before anything is spent
        current = self.market.listing(listing_id)
        if current.owner != self.wallet.address:
            raise NotYourListing(listing_id, current.owner, self.wallet.address)
        committee_key = Point.from_bytes(self.market.committee().committee_key, "committee key")
        version = current.version_count + 1
        data_key = DataKey.generate()
        timings: dict[str, float] = {}
        with tempfile.TemporaryDirectory(prefix="datadebit-publish-") as folder:
            started = time.perf_counter()
            with stages("encrypt", size) as counter:
                encrypted = encrypt_file(path, Path(folder) / "version.dde", data_key,
                                         progress=counter)
            timings["encrypt"] = time.perf_counter() - started
            started = time.perf_counter()
            with stages("upload", encrypted.size) as counter, encrypted.path.open("rb") as f:
                stored = store.put(cast(BinaryIO, ProgressReader(f, counter)))
            timings["upload"] = time.perf_counter() - started
        if stored != encrypted.cid:
            raise PublishFailed(
                f"the store named the ciphertext {stored.text}, we computed "
                f"{encrypted.cid.text}: refusing to anchor"
            )
        ctx = CapsuleContext(self.market.chain_id, self.market.address, listing_id, version,
                             stored.binary)
        capsule = make_capsule(data_key, ctx, committee_key).to_bytes()
        started = time.perf_counter()
        sent = self.market.publish_version(self.wallet, listing_id, stored.binary, capsule)
        timings["anchor"] = time.perf_counter() - started
        if sent.value != version:
            raise PublishFailed(
                f"the chain numbered this version {sent.value}, the capsule was made for "
                f"{version} (another publish raced it): publish it again"
            )
        return PublishedVersion(listing_id, version, stored, size, encrypted.size,
                                sent.tx_hash, sent.gas_used, timings)

    # ------------------------------------------------------------ requests

    def inbox(self, from_block: int | None = None) -> list[PendingRequest]:
        """Each debit waiting for consent on this wallet's listings, with its purpose
        document loaded, verified against the on-chain hash and opened if sealed; a
        document that cannot be read is reported in `problem`, never raised."""
        start = self.from_block if from_block is None else from_block
        pending = []
        for view in listings_of(self.market, self.address, start):
            for event in requested_on(self.market, view.listing.listing_id, start):
                debit = self.market.debit(event.debit_id)
                if debit.state is not DebitState.REQUESTED:
                    continue
                purpose, problem = self.read_purpose(event.purpose_hash)
                pending.append(PendingRequest(debit, event.periods, event.purpose_hash,
                                              purpose, problem))
        return pending

    def read_purpose(
        self, purpose_hash: bytes
    ) -> tuple[PurposeDocument | None, DocumentError | None]:
        """The purpose document with this on-chain hash, or why it cannot be read."""
        if purpose_hash == bytes(32):
            return None, None
        try:
            return load_purpose(self.content("reading purposes"), purpose_hash,
                               self.owner_secret()), None
        except DocumentError as e:
            return None, e

    def consent(self, debit_id: int) -> DebitChanged:
        """Approve a requested debit: its term starts now."""
        return self._changed(debit_id, self.market.consent(self.wallet, debit_id))

    def reject(self, debit_id: int) -> DebitChanged:
        """Refuse a requested debit: the buyer is credited the full amount."""
        return self._changed(debit_id, self.market.reject(self.wallet, debit_id))

    def revoke(self, debit_id: int) -> DebitChanged:
        """Stop an active debit: accrued escrow to the owner, the rest back to the buyer."""
        return self._changed(debit_id, self.market.revoke(self.wallet, debit_id))

    def _changed(self, debit_id: int, sent: Sent[None]) -> DebitChanged:
        return DebitChanged(self.market.debit(debit_id), sent.tx_hash, sent.gas_used)

    # ------------------------------------------------------------ money

    def claim(self, debit_ids: list[int]) -> Payout:
        """Credit what has accrued on `debit_ids` to the market balance. The debits must
        be paid in one asset: the chain reports one total, which summed across assets
        would mean nothing."""
        assets = {self.market.listing(self.market.debit(d).listing_id).asset
                  for d in debit_ids}
        if len(assets) > 1:
            raise MixedAssets(sorted(assets))
        asset = assets.pop() if assets else ETHER
        sent = self.market.claim(self.wallet, debit_ids)
        return Payout(sent.value, self.market.balance_of(self.wallet.address, asset),
                      sent.tx_hash, sent.gas_used, asset)

    def withdraw(self, asset: str | None = None) -> Payout:
        """Pay the credited market balance in `asset` (None: ether) out to the wallet."""
        return withdraw(self.market, self.wallet, asset)


def withdraw(market: MarketClient, wallet: LocalAccount, asset: str | None = None) -> Payout:
    """Pay `wallet`'s credited market balance (earnings or refunds) in `asset` (None:
    ether; balances are kept per asset) out to it."""
    sent = market.withdraw(wallet, asset or ETHER)
    return Payout(sent.value, market.balance_of(wallet.address, asset or ETHER), sent.tx_hash,
                  sent.gas_used, asset or ETHER)
