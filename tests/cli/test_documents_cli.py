"""Listing and purpose documents through the CLI as a user types it (issue 11, item 2):
`owner create-listing --describe` (or flags), `buyer request --purpose-file` (sealed to the
owner) and `owner inbox` showing the purpose text, verified; human units for --price and
--period."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.chain.events import DebitRequested, ListingCreated
from marketplace.documents import load_listing_document, purpose_cid
from storage.stores.local import LocalStore
from tests.cli.conftest import Deployment, deploy_market

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chain(anvil_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A market on anvil; no gateways are needed for documents."""
    yield deploy_market(anvil_url, tmp_path_factory.mktemp("documents"), serve=False)


def _created(d: Deployment, listing: int) -> ListingCreated:
    [event] = [e for e in d.market.events().read(0, kinds=[ListingCreated])
               if isinstance(e, ListingCreated) and e.listing_id == listing]
    return event


def _requested(d: Deployment, debit: int) -> DebitRequested:
    [event] = [e for e in d.market.events().read(0, kinds=[DebitRequested])
               if isinstance(e, DebitRequested) and e.debit_id == debit]
    return event


def test_describe_request_with_a_purpose_file_and_read_it_in_the_inbox(
    chain: Deployment, tmp_path: Path
) -> None:
    d = chain
    listing_json = tmp_path / "listing.json"
    listing_json.write_text(json.dumps({
        "schema": "datadebit/listing/v1", "title": "Air quality, Lyon",
        "description": "PM2.5 every minute", "tags": ["air"], "terms": "research only",
        "fields": [{"name": "pm25", "type": "number", "unit": "µg/m³"}],
    }))
    created = d.as_owner("owner", "create-listing", "--price", "0.001eth", "--period", "1d",
                         "--needs-consent", "--describe", listing_json)
    assert created.exit_code == 0, created.stderr
    listing = int(created.stdout)
    assert "0.001 ETH (1000000000000000 wei) per 1d" in created.stderr
    event = _created(d, listing)
    assert (event.price_per_period, event.period_seconds) == (10**15, 86_400)
    assert event.terms_hash == hashlib.sha256(b"research only").digest()
    document = load_listing_document(LocalStore(d.store), event.metadata_uri)
    assert document.title == "Air quality, Lyon" and document.owner_key is not None

    purpose_json = tmp_path / "purpose.json"
    purpose_json.write_text(json.dumps({
        "schema": "datadebit/purpose/v1", "requester": "Lyon Asthma Study",
        "purpose": "Correlate PM2.5 peaks with admissions", "retention": "90 days",
    }))
    requested = d.as_buyer("buyer", "request", "--listing", listing, "--periods", 2,
                           "--purpose-file", purpose_json, "--max-price", "0.002eth")
    assert requested.exit_code == 0, requested.stderr
    debit = int(requested.stdout)
    assert "purpose stored sealed to the listing's owner" in requested.stderr
    on_chain = _requested(d, debit).purpose_hash
    public = b"".join(LocalStore(d.store).stream(purpose_cid(on_chain)))
    assert b"Asthma" not in public and hashlib.sha256(public).digest() == on_chain

    plain = d.as_buyer("buyer", "request", "--listing", listing, "--periods", 1,
                       "--purpose", "Teaching a statistics class", "--no-seal")
    assert plain.exit_code == 0, plain.stderr
    assert "in the clear" in plain.stderr

    inbox = d.as_owner("owner", "inbox")
    assert inbox.exit_code == 0, inbox.stderr
    assert "purpose (verified): Correlate PM2.5 peaks with admissions" in inbox.stdout
    assert "requester: Lyon Asthma Study" in inbox.stdout
    assert "purpose (verified): Teaching a statistics class" in inbox.stdout
    assert f"requester: {d.buyer.address}" in inbox.stdout
    as_json = d.as_owner("owner", "inbox", "--json")
    records = {r["debit"]: r for r in json.loads(as_json.stdout)}
    assert records[debit]["purpose"]["retention"] == "90 days"
    assert records[debit]["purpose_problem"] is None

    # a purpose document swapped in the store is shown as such, and the inbox still works
    cid = purpose_cid(_requested(d, int(plain.stdout)).purpose_hash)
    block = d.store / "blocks" / cid.text[-2:] / cid.text
    block.write_bytes(block.read_bytes().replace(b"Teaching", b"Stealing"))
    swapped = d.as_owner("owner", "inbox")
    assert swapped.exit_code == 0, swapped.stderr
    assert "purpose: NOT SHOWN (cid_mismatch)" in swapped.stdout
    assert "Stealing" not in swapped.stdout
    assert "purpose (verified): Correlate PM2.5 peaks with admissions" in swapped.stdout
    assert d.as_owner("owner", "consent", debit).exit_code == 0
    after = json.loads(d.as_owner("owner", "inbox", "--json").stdout)
    assert debit not in [r["debit"] for r in after]


def test_a_document_from_flags(chain: Deployment, tmp_path: Path) -> None:
    d = chain
    terms = tmp_path / "terms.txt"
    terms.write_text("no resale\n")
    created = d.as_owner("owner", "create-listing", "--price", "1000000gwei", "--period",
                         "12h", "--title", "Bus ridership", "--description", "Hourly boardings",
                         "--tag", "Transit", "--tag", "bus", "--license", "CC-BY-4.0",
                         "--terms-file", terms)
    assert created.exit_code == 0, created.stderr
    event = _created(d, int(created.stdout))
    assert (event.price_per_period, event.period_seconds) == (10**15, 43_200)
    document = load_listing_document(LocalStore(d.store), event.metadata_uri)
    assert (document.title, document.tags, document.license, document.terms) == (
        "Bus ridership", ["transit", "bus"], "CC-BY-4.0", "no resale\n"
    )
    assert event.terms_hash == hashlib.sha256(b"no resale\n").digest()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--price", "0.5"), "error: --price '0.5' is not an amount"),
        (("--price", "1eth", "--period", "1w"), "error: --period '1w' is not a duration"),
        (("--description", "no title"), "--description describe a listing: give --title"),
        (("--title", "x", "--metadata-uri", "ipfs://y"), "--metadata-uri is set by"),
    ],
)
def test_bad_listing_input_is_one_error_line(
    chain: Deployment, args: tuple[str, ...], message: str
) -> None:
    full = list(args) if "--period" in args else [*args, "--period", "60"]
    if "--price" not in full:
        full += ["--price", "1"]
    listings = chain.market.listing_count()
    result = chain.as_owner("owner", "create-listing", *full)
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert chain.market.listing_count() == listings


def test_an_invalid_listing_document_is_refused_with_its_errors(
    chain: Deployment, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "datadebit/listing/v1", "title": "", "extra": 1}))
    listings = chain.market.listing_count()
    result = chain.as_owner("owner", "create-listing", "--price", "1", "--period", "60",
                            "--describe", bad)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: document does not follow its schema")
    assert "title" in result.stderr and "extra" in result.stderr
    assert chain.market.listing_count() == listings
