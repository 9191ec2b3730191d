"""`datadebit owner ...`: list a dataset, publish encrypted versions, manage its debits.

Publishing happens on the owner's machine: a fresh data key per version, the file
encrypted locally, the ciphertext put in the store (whose CID must equal ours), the key
wrapped for the committee key read from the chain, and CID + capsule anchored with
`publishVersion`. The data key is never written anywhere.

stdout carries only what scripts capture (ids, CIDs, amounts, tables, JSON); progress
and state go to stderr.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from eth_account.signers.local import LocalAccount

from marketplace.chain.events import DebitRequested, ListingCreated
from marketplace.chain.market import MarketClient
from marketplace.cli.config import (
    FromBlockOption,
    MarketOption,
    RpcOption,
    StoreOption,
    open_market,
    open_store,
)
from marketplace.cli.errors import cli_errors, fail
from marketplace.cli.render import (
    debit_line,
    debit_record,
    listing_record,
    note,
    print_json,
    print_listings,
)
from marketplace.cli.wallet_commands import (
    KeystoreOption,
    PassphraseFileOption,
    address_or_wallet,
    market_and_wallet,
)
from marketplace.errors import MarketplaceError
from marketplace.keyrelease.capsule import CapsuleContext, make_capsule
from marketplace.keyrelease.group import Point
from storage.envelope import encrypt_file
from storage.keys import DataKey

owner_app = typer.Typer(
    help="Data owner: create listings, publish encrypted versions, manage debits.",
    no_args_is_help=True,
)

DebitArgument = Annotated[int, typer.Argument(min=1, help="Debit id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def register(app: typer.Typer) -> None:
    app.add_typer(owner_app, name="owner")


class PublishFailed(MarketplaceError):
    """A version could not be published as computed (store or chain disagreed)."""


def topic(value: int | str) -> bytes:
    """A 32-byte indexed-topic value for an id or an address."""
    if isinstance(value, str):
        return bytes(12) + bytes.fromhex(value.removeprefix("0x"))
    return value.to_bytes(32, "big")


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.digest()


@owner_app.command("create-listing")
def create_listing(
    price: Annotated[int, typer.Option("--price", min=0, help="Price per period, in wei.")],
    period: Annotated[int, typer.Option("--period", min=1, help="Period length in seconds.")],
    auto_approve: Annotated[
        bool,
        typer.Option(
            "--auto-approve/--needs-consent",
            help="Debits start at once, or wait for `owner consent`.",
        ),
    ] = False,
    terms: Annotated[
        Path | None,
        typer.Option("--terms", dir_okay=False, help="Terms file; its SHA-256 goes on-chain."),
    ] = None,
    metadata_uri: Annotated[
        str, typer.Option("--metadata-uri", help="Where the listing is described.")
    ] = "",
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Create a listing; prints its id."""
    with cli_errors():
        terms_hash = file_sha256(terms) if terms is not None else bytes(32)
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        sent = client.create_listing(
            wallet,
            price_per_period=price,
            period_seconds=period,
            auto_approve=auto_approve,
            terms_hash=terms_hash,
            metadata_uri=metadata_uri,
        )
    approval = "auto-approved" if auto_approve else "owner consent"
    note(f"listing {sent.value} created by {wallet.address} ({approval}; tx {sent.tx_hash})")
    typer.echo(str(sent.value))


@owner_app.command("publish")
def publish(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="The version's plaintext file.")],
    listing: Annotated[int, typer.Option("--listing", min=1, help="Listing id.")],
    rpc: RpcOption = None,
    market: MarketOption = None,
    store: StoreOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Encrypt FILE locally, store the ciphertext, anchor CID + capsule; prints
    `<version> <cid>`."""
    with cli_errors():
        with file.open("rb"):
            pass  # unreadable input fails before anything is spent
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        content = open_store(store)
        current = client.listing(listing)
        if current.owner != wallet.address:
            fail(f"listing {listing} belongs to {current.owner}, not to {wallet.address}")
        committee_key = Point.from_bytes(client.committee().committee_key, "committee key")
        version = current.version_count + 1
        data_key = DataKey.generate()
        with tempfile.TemporaryDirectory(prefix="datadebit-publish-") as folder:
            note(f"encrypting {file} ...")
            encrypted = encrypt_file(file, Path(folder) / "version.dde", data_key)
            note(f"storing {encrypted.size:,} bytes of ciphertext in {content!r} ...")
            with encrypted.path.open("rb") as f:
                stored = content.put(f)
        if stored != encrypted.cid:
            raise PublishFailed(
                f"the store named the ciphertext {stored.text}, we computed "
                f"{encrypted.cid.text}: refusing to anchor"
            )
        ctx = CapsuleContext(client.chain_id, client.address, listing, version, stored.binary)
        capsule = make_capsule(data_key, ctx, committee_key).to_bytes()
        sent = client.publish_version(wallet, listing, stored.binary, capsule)
        if sent.value != version:
            raise PublishFailed(
                f"the chain numbered this version {sent.value}, the capsule was made for "
                f"{version} (another publish raced it): publish it again"
            )
    note(f"listing {listing} version {version}: {stored.text} anchored (tx {sent.tx_hash})")
    typer.echo(f"{version} {stored.text}")


def _debit_action(
    action: Callable[[MarketClient, LocalAccount, int], object],
    debit: int,
    rpc: str | None,
    market: str | None,
    keystore: Path | None,
    passphrase_file: Path | None,
) -> None:
    """Send one owner transaction on a debit, then show the debit as it now stands."""
    client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
    action(client, wallet, debit)
    note(debit_line(client.debit(debit)))


@owner_app.command("consent")
def consent(
    debit: DebitArgument,
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Approve a requested debit: its term starts now."""
    with cli_errors():
        _debit_action(MarketClient.consent, debit, rpc, market, keystore, passphrase_file)


@owner_app.command("reject")
def reject(
    debit: DebitArgument,
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Refuse a requested debit: the buyer is credited the full amount."""
    with cli_errors():
        _debit_action(MarketClient.reject, debit, rpc, market, keystore, passphrase_file)


@owner_app.command("revoke")
def revoke(
    debit: DebitArgument,
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Stop an active debit: accrued escrow to you, the rest back to the buyer."""
    with cli_errors():
        _debit_action(MarketClient.revoke, debit, rpc, market, keystore, passphrase_file)


@owner_app.command("claim")
def claim(
    debits: Annotated[list[int], typer.Argument(min=1, help="Debit ids.")],
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Credit what has accrued on DEBITS to your market balance; prints the wei credited."""
    with cli_errors():
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        sent = client.claim(wallet, debits)
        balance = client.balance_of(wallet.address)
    note(f"claimed {sent.value} wei; market balance now {balance} wei (`owner withdraw`)")
    typer.echo(str(sent.value))


@owner_app.command("withdraw")
def withdraw(
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Pay your credited market balance (earnings, or a buyer's refunds) out to your wallet;
    prints the wei withdrawn."""
    with cli_errors():
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        sent = client.withdraw(wallet)
    note(f"withdrew {sent.value} wei to {wallet.address}")
    typer.echo(str(sent.value))


@owner_app.command("list")
def list_listings(
    rpc: RpcOption = None,
    market: MarketOption = None,
    owner: Annotated[
        str | None, typer.Option("--owner", help="Owner address (default: the wallet's).")
    ] = None,
    from_block: FromBlockOption = 0,
    json_out: JsonOption = False,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """The owner's listings, their versions and the debits on them, with their state."""
    with cli_errors():
        client = open_market(rpc, market)
        who = address_or_wallet(owner, "--owner", keystore, passphrase_file)
        records = owner_listings(client, who, from_block)
    if json_out:
        print_json(records)
    elif not records:
        note(f"{who} has no listings on this market")
    else:
        print_listings(records)


def owner_listings(client: MarketClient, owner: str, from_block: int) -> list[dict[str, Any]]:
    """Listings created by `owner` (from `ListingCreated`), each with its debits."""
    reader = client.events()
    created = reader.read(from_block, kinds=[ListingCreated], indexed=[None, topic(owner)])
    records = []
    for event in created:
        assert isinstance(event, ListingCreated)
        requested = reader.read(
            from_block, kinds=[DebitRequested], indexed=[None, topic(event.listing_id)]
        )
        debits = [
            debit_record(client.debit(d.debit_id), claimable=client.claimable(d.debit_id))
            for d in requested
            if isinstance(d, DebitRequested)
        ]
        records.append(listing_record(client.listing(event.listing_id), debits))
    return records

