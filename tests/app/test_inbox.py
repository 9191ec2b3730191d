"""The owner's inbox (issue 11, item 2): a pending request shows the purpose the buyer
wrote, verified against the on-chain purposeHash and opened when sealed to the owner; a
purpose document swapped or missing in the store is shown as such, never trusted and
never a crash."""

from __future__ import annotations

import hashlib

from marketplace.app.owner import OwnerApp, PendingRequest
from marketplace.documents import (
    ListingDocument,
    OwnerSecretKey,
    PurposeDocument,
    purpose_cid,
)
from marketplace.localnet import LocalNetwork
from tests.app.conftest import buyer_app

PRICE = 10**15
DAY = 86_400


def purpose(text: str) -> PurposeDocument:
    return PurposeDocument.model_validate({
        "requester": "Lyon Asthma Study", "purpose": text, "intendedUse": "aggregate stats",
        "retention": "90 days", "contact": "pi@example.org",
    })


def test_plain_sealed_swapped_and_undeclared_purposes(
    net: LocalNetwork, owner: OwnerApp
) -> None:
    document = ListingDocument(title="Clinic visits")
    listing = owner.create_listing(2 * PRICE, DAY, False, document).listing_id
    plain = buyer_app(net).request(listing, 1, purpose("plain words"), seal_purpose=False)
    sealed = buyer_app(net).request(listing, 1, purpose("sealed words: only you read this"))
    swapped = buyer_app(net).request(listing, 1, purpose("the original words"),
                                     seal_purpose=False)
    undeclared = buyer_app(net).request(listing, 1, None)
    assert (plain.sealed, sealed.sealed) == (False, True)

    # what is public in the store: the plain one's text, not the sealed one's
    assert plain.purpose_cid is not None and sealed.purpose_cid is not None
    public = b"".join(net.store.stream(sealed.purpose_cid))
    assert b"sealed words" not in public and b"Lyon" not in public
    assert hashlib.sha256(public).digest() == sealed.purpose_hash
    # an attacker replaces the stored bytes of the third purpose with other words
    assert swapped.purpose_cid == purpose_cid(swapped.purpose_hash)
    block = net.store.root / "blocks" / swapped.purpose_cid.text[-2:] / swapped.purpose_cid.text
    block.write_bytes(block.read_bytes().replace(b"the original words", b"something nicer!!"))

    inbox = {r.debit.debit_id: r for r in owner.inbox()}
    assert set(inbox) == {d.debit.debit_id for d in (plain, sealed, swapped, undeclared)}
    shown = inbox[plain.debit.debit_id]
    assert shown.purpose == purpose("plain words") and shown.problem is None
    opened = inbox[sealed.debit.debit_id]
    assert opened.purpose == purpose("sealed words: only you read this")
    assert opened.problem is None
    refused: PendingRequest = inbox[swapped.debit.debit_id]
    assert refused.purpose is None and refused.problem is not None
    assert refused.problem.reason == "cid_mismatch"
    none: PendingRequest = inbox[undeclared.debit.debit_id]
    assert (none.declared, none.purpose, none.problem) == (False, None, None)

    # decided requests leave the inbox
    owner.consent(plain.debit.debit_id)
    owner.reject(swapped.debit.debit_id)
    assert {r.debit.debit_id for r in owner.inbox()} == {
        sealed.debit.debit_id, undeclared.debit.debit_id
    }


def test_a_missing_or_foreign_sealed_purpose_is_reported(
    net: LocalNetwork, owner: OwnerApp
) -> None:
    listing = owner.create_listing(PRICE, DAY, False, ListingDocument(title="x")).listing_id
    sealed = buyer_app(net).request(listing, 1, purpose("for the owner only"))
    assert sealed.purpose_cid is not None
    # another wallet (not the listing's owner) cannot open it
    stranger = OwnerSecretKey.from_account(net.account(), net.market.domain)
    other = OwnerApp(net.market, net.store, owner.wallet)
    other._secret = stranger  # an owner whose derived key is someone else's
    [foreign] = [r for r in other.inbox() if r.debit.debit_id == sealed.debit.debit_id]
    assert foreign.problem is not None and foreign.problem.reason == "sealed"
    # the document disappears from the store
    block = net.store.root / "blocks" / sealed.purpose_cid.text[-2:] / sealed.purpose_cid.text
    block.unlink()
    [missing] = [r for r in owner.inbox() if r.debit.debit_id == sealed.debit.debit_id]
    assert missing.problem is not None and missing.problem.reason == "unavailable"
