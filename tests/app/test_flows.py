"""Owner, buyer and auditor flows of the application layer on a LocalNetwork: what the
CLI, the demo and the web app call (issue 11, item 1)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from marketplace.app.audit import run_audit
from marketplace.app.buyer import (
    CannotSealPurpose,
    NotYourDebit,
    PriceAboveLimit,
    Quote,
    VersionNotFound,
)
from marketplace.app.owner import NoContentStore, NotYourListing, OwnerApp, OwnerKeyMismatch
from marketplace.audit.release_log import HttpReleaseLog
from marketplace.chain.events import ListingCreated
from marketplace.chain.types import DebitState
from marketplace.documents import (
    ListingDocument,
    PurposeDocument,
    load_listing_document,
    parse_document_uri,
)
from marketplace.localnet import LocalNetwork
from storage.cid import Cid
from tests.app.conftest import buyer_app

PRICE = 10**15
DAY = 86_400


def describe(title: str = "Air quality, Lyon", **extra: object) -> ListingDocument:
    return ListingDocument.model_validate({
        "title": title, "description": "PM2.5 and NO2 every minute from 40 stations",
        "tags": ["Air", "pollution"], "terms": "research use only", **extra,
    })


def block_path(net: LocalNetwork, cid: Cid) -> Path:
    """Where the LocalStore keeps a one-block document (to swap it, like an attacker)."""
    return net.store.root / "blocks" / cid.text[-2:] / cid.text


def test_a_described_listing_points_at_its_verified_document(
    net: LocalNetwork, owner: OwnerApp
) -> None:
    created = owner.create_listing(PRICE, DAY, True, describe())
    assert created.document_cid is not None
    assert created.metadata_uri == "ipfs://" + created.document_cid.text
    assert created.terms_hash == hashlib.sha256(b"research use only").digest()
    stored = load_listing_document(net.store, created.metadata_uri)
    assert stored.owner_key == owner.owner_key_hex() and stored.tags == ["air", "pollution"]
    [event] = [e for e in net.market.events().read(0, kinds=[ListingCreated])
               if isinstance(e, ListingCreated) and e.listing_id == created.listing_id]
    assert (event.metadata_uri, event.terms_hash) == (created.metadata_uri, created.terms_hash)
    assert parse_document_uri(event.metadata_uri) == created.document_cid


def test_a_document_naming_another_owner_key_is_refused(owner: OwnerApp) -> None:
    with pytest.raises(OwnerKeyMismatch):
        owner.create_listing(PRICE, DAY, True, describe(ownerKey="0x" + "11" * 32))


def test_publish_request_fetch_claim_withdraw(
    net: LocalNetwork, owner: OwnerApp, tmp_path: Path
) -> None:
    listing = owner.create_listing(PRICE, DAY, True, describe()).listing_id
    plain = tmp_path / "v1.csv"
    plain.write_bytes(os.urandom(200_000))
    stages: list[tuple[str, int | None]] = []

    def record(name: str, total: int | None) -> object:
        stages.append((name, total))
        from marketplace.app.progress import silent_stages  # noqa: PLC0415

        return silent_stages()(name, total)

    published = owner.publish(listing, plain, progress=record)  # type: ignore[arg-type]
    assert (published.version, published.plaintext_size) == (1, 200_000)
    assert [s[0] for s in stages] == ["encrypt", "upload"]
    assert net.store.has(published.cid)

    buyer = buyer_app(net)
    quotes: list[Quote] = []
    requested = buyer.request(listing, 3, None, max_price_wei=3 * PRICE, on_quote=quotes.append)
    assert quotes == [Quote(listing, 3, PRICE, 3 * PRICE)]
    assert requested.debit.state is DebitState.ACTIVE and requested.purpose_cid is None
    net.sync()
    out = tmp_path / "out.csv"
    fetched = buyer.fetch(requested.debit.debit_id, out)
    assert out.read_bytes() == plain.read_bytes()
    assert (fetched.version, fetched.cid, fetched.size) == (1, published.cid, 200_000)
    assert len(fetched.used_nodes) >= 2
    assert [v.debit.debit_id for v in buyer.status()] == [requested.debit.debit_id]

    with pytest.raises(VersionNotFound):
        buyer.fetch(requested.debit.debit_id, tmp_path / "v2", version=2)
    with pytest.raises(NotYourDebit):
        buyer_app(net).fetch(requested.debit.debit_id, tmp_path / "theirs")
    assert not (tmp_path / "theirs").exists()

    net.dev.advance(DAY)
    claimed = owner.claim([requested.debit.debit_id])
    assert claimed.amount >= PRICE and claimed.balance == claimed.amount
    paid = owner.withdraw()
    assert (paid.amount, paid.balance) == (claimed.amount, 0)
    [view] = owner.listings()[-1:]
    assert view.listing.listing_id == listing and view.debits[0].claimable is not None


def test_someone_elses_listing_is_not_published_to(
    net: LocalNetwork, owner: OwnerApp, tmp_path: Path
) -> None:
    listing = owner.create_listing(PRICE, DAY, True, None).listing_id
    other = OwnerApp(net.market, net.store, net.account())
    plain = tmp_path / "x"
    plain.write_bytes(b"x")
    with pytest.raises(NotYourListing):
        other.publish(listing, plain)
    with pytest.raises(NoContentStore):
        OwnerApp(net.market, None, other.wallet).publish(listing, plain)


def test_a_price_above_the_limit_pays_nothing(net: LocalNetwork, owner: OwnerApp) -> None:
    listing = owner.create_listing(PRICE, DAY, True, None).listing_id
    buyer = buyer_app(net)
    debits = net.market.debit_count()
    with pytest.raises(PriceAboveLimit) as refused:
        buyer.request(listing, 3, None, max_price_wei=3 * PRICE - 1)
    assert (refused.value.total, refused.value.limit) == (3 * PRICE, 3 * PRICE - 1)
    assert net.market.debit_count() == debits


def test_consent_reject_cancel(net: LocalNetwork, owner: OwnerApp) -> None:
    listing = owner.create_listing(PRICE, DAY, False, None).listing_id
    buyer = buyer_app(net)
    first, second, third = (buyer.request(listing, 1, None).debit.debit_id for _ in range(3))
    assert owner.consent(first).debit.state is DebitState.ACTIVE
    assert owner.reject(second).debit.state is DebitState.REJECTED
    assert buyer.cancel(third).debit.state is DebitState.CANCELLED
    assert owner.revoke(first).debit.state is DebitState.REVOKED
    assert buyer.withdraw().amount > 0


def test_browse_shows_documents_and_what_is_wrong_with_them(
    net: LocalNetwork, owner: OwnerApp
) -> None:
    good = owner.create_listing(PRICE, DAY, True, describe("Browsable")).listing_id
    bare = owner.create_listing(PRICE, DAY, True, None, "https://example.org/x").listing_id
    swapped = owner.create_listing(PRICE, DAY, True, describe("To be swapped"))
    assert swapped.document_cid is not None
    block_path(net, swapped.document_cid).write_bytes(b'{"title": "something else"}')
    entries = {e.listing.listing_id: e for e in buyer_app(net).browse()}
    assert entries[good].document is not None and entries[good].document.title == "Browsable"
    assert (entries[bare].document, entries[bare].problem) == (None, None)
    problem = entries[swapped.listing_id].problem
    assert problem is not None and problem.reason == "cid_mismatch"
    # no verified owner key: the buyer's purpose is neither sealed nor published in clear
    purpose = PurposeDocument(requester="A lab", purpose="asthma study")
    debits = net.market.debit_count()
    with pytest.raises(CannotSealPurpose):
        buyer_app(net).request(swapped.listing_id, 1, purpose)
    assert net.market.debit_count() == debits
    unsealed = buyer_app(net).request(swapped.listing_id, 1, purpose, seal_purpose=False)
    assert not unsealed.sealed


def test_audit_of_the_flows_is_clean(net: LocalNetwork) -> None:
    net.sync()
    logs = {i: HttpReleaseLog(i, client) for i, client in net.clients.items()}
    report = run_audit(net.market, net.store, logs)
    assert report.clean, report.to_json()
