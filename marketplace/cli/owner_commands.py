"""`datadebit owner ...`: describe and list a dataset, publish encrypted versions, read
the requests waiting for consent and decide them. Parsing and rendering only: every flow
is `marketplace.app.owner.OwnerApp`'s.

stdout carries only what scripts capture (ids, CIDs, amounts, tables, JSON); progress
and state go to stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from marketplace.app.units import (
    UnitError,
    format_duration,
    parse_duration,
    parse_in,
    parse_wei,
)
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
    asset_amount,
    debit_line,
    listing_record,
    note,
    print_inbox,
    print_json,
    print_listings,
    request_record,
)
from marketplace.cli.wallet_commands import (
    KeystoreOption,
    PassphraseFileOption,
    address_or_wallet,
    market_and_wallet,
)

if TYPE_CHECKING:
    from marketplace.app.owner import OwnerApp
    from marketplace.app.progress import Stages
    from marketplace.chain.assets import AssetInfo
    from marketplace.chain.market import MarketClient
    from marketplace.documents import ListingDocument
    from storage.progress import Progress

owner_app = typer.Typer(
    help="Data owner: create listings, publish encrypted versions, manage debits.",
    no_args_is_help=True,
)

DebitArgument = Annotated[int, typer.Argument(min=1, help="Debit id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
PRICE_HELP = ("Price per period in the listing's asset: 0.01eth, 1000000gwei or wei (a plain "
              "integer); with --asset, 5usdc-style (the token's symbol and decimals) or "
              "base units (a plain integer).")
ASSET_HELP = ("An ERC-20 token's address: buyers pay in it (default: ether). Fixed for the "
              "listing's life.")
#: `0x` and 40 hex digits: what --asset takes (checked before any chain call)
_ADDRESS_LENGTH = 42
PERIOD_HELP = "Period length: 1d, 12h, 30m, 90s, or seconds (a plain integer)."


def register(app: typer.Typer) -> None:
    app.add_typer(owner_app, name="owner")


def parse_option(option: str, text: str, parse: Callable[[str], int]) -> int:
    """`parse(text)` with a UnitError reported as `error: OPTION ...` (exit 1)."""
    try:
        return parse(text)
    except UnitError as e:
        fail(f"{option} {e}")


def asset_option(text: str | None) -> str | None:
    """--asset: None (ether) or a well-formed address; the chain says if it is a token."""
    if text is None:
        return None
    body = text.removeprefix("0x").removeprefix("0X")
    if len(text) != _ADDRESS_LENGTH or len(body) != _ADDRESS_LENGTH - 2 or any(
        c not in "0123456789abcdefABCDEF" for c in body
    ):
        fail(f"--asset {text[:50]!r} is not an address: give the token contract's 0x... "
             "address (40 hex digits), or leave --asset out for ether")
    return "0x" + body


def read_asset(client: MarketClient, asset: str | None) -> AssetInfo:
    """The asset's symbol and decimals (ether's without a chain call)."""
    from marketplace.chain.tokens import asset_info  # noqa: PLC0415 - web3, only when used

    return asset_info(client.w3, asset)


def parse_amount_in(option: str, text: str, asset: AssetInfo) -> int:
    """An amount of `asset` given as `option` (its symbol and decimals, or base units)."""
    return parse_option(option, text,
                        lambda t: parse_in(t, asset.decimals, asset.symbol))


def owner_app_for(
    rpc: str | None, market: str | None, store: str | None, keystore: Path | None,
    passphrase_file: Path | None, from_block: int = 0,
) -> OwnerApp:
    from marketplace.app.owner import OwnerApp  # noqa: PLC0415 - web3, only when used

    client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
    return OwnerApp(client, open_store(store), wallet, from_block=from_block)


def listing_document(
    describe: Path | None, title: str | None, description: str | None, tags: list[str],
    license_text: str | None, terms_file: Path | None,
) -> ListingDocument | None:
    """The document from --describe FILE, or built from the flags when --title is given;
    None when neither (a bare listing, as before documents)."""
    from marketplace.documents import parse_listing_document  # noqa: PLC0415

    flags = {"description": description, "tags": tags or None, "license": license_text}
    given = [f"--{k}" for k, v in flags.items() if v is not None]
    if describe is not None:
        if title is not None or given or terms_file is not None:
            fail("--describe FILE is the whole document: give --title, --description, "
                 "--tag, --license and --terms-file inside it, not as flags")
        return parse_listing_document(describe.read_bytes())
    if title is None:
        if given:
            fail(f"{', '.join(given)} describe a listing: give --title too (or --describe FILE)")
        return None
    document: dict[str, object] = {"schema": "datadebit/listing/v1", "title": title}
    document.update({k: v for k, v in flags.items() if v is not None})
    if terms_file is not None:
        document["terms"] = terms_file.read_text(encoding="utf-8")
    return parse_listing_document(json.dumps(document).encode())


@owner_app.command("create-listing")
def create_listing(
    price: Annotated[str, typer.Option("--price", help=PRICE_HELP)],
    period: Annotated[str, typer.Option("--period", help=PERIOD_HELP)],
    auto_approve: Annotated[
        bool,
        typer.Option(
            "--auto-approve/--needs-consent",
            help="Debits start at once, or wait for `owner consent`.",
        ),
    ] = False,
    asset: Annotated[str | None, typer.Option("--asset", help=ASSET_HELP)] = None,
    describe: Annotated[
        Path | None,
        typer.Option("--describe", dir_okay=False,
                     help="Listing document (JSON, schema datadebit/listing/v1): validated, "
                          "stored, and the listing points at it (ipfs://CID)."),
    ] = None,
    title: Annotated[
        str | None, typer.Option("--title", help="Build a listing document with this title.")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="The document's description.")
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", help="A search tag (repeat for more).")
    ] = None,
    license_text: Annotated[
        str | None, typer.Option("--license", help="The document's licence.")
    ] = None,
    terms_file: Annotated[
        Path | None,
        typer.Option("--terms-file", "--terms", dir_okay=False,
                     help="Terms text file: in the document (with --title), else only its "
                          "SHA-256 goes on chain."),
    ] = None,
    metadata_uri: Annotated[
        str | None,
        typer.Option("--metadata-uri", help="A free metadata URI (only without a document)."),
    ] = None,
    rpc: RpcOption = None,
    market: MarketOption = None,
    store: StoreOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Create a listing; prints its id."""
    from marketplace.app.owner import OwnerApp, file_sha256  # noqa: PLC0415

    with cli_errors():
        token = asset_option(asset)
        # ether prices are checked before the chain is reached; a token's need its decimals
        price_units = parse_option("--price", price, parse_wei) if token is None else 0
        seconds = parse_option("--period", period, parse_duration)
        document = listing_document(describe, title, description, tags or [], license_text,
                                    terms_file if title is not None else None)
        if document is not None and metadata_uri is not None:
            fail("--metadata-uri is set by the listing document (ipfs://CID): drop one")
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        paid_in = read_asset(client, token)
        if token is not None:
            price_units = parse_amount_in("--price", price, paid_in)
        # a bare listing needs no store: only one with a document opens it
        content = open_store(store) if document is not None else None
        app = OwnerApp(client, content, wallet)
        bare_terms = file_sha256(terms_file) if terms_file is not None and document is None \
            else None
        created = app.create_listing(
            price_units, seconds, auto_approve, document,
            None if document is not None else metadata_uri or "",
            terms_hash_override=bare_terms, asset=token,
        )
    approval = "auto-approved" if auto_approve else "owner consent"
    if created.document_cid is not None:
        note(f"listing document stored as {created.metadata_uri} "
             "(with your owner key: buyers can seal their purposes to you)")
    note(f"listing {created.listing_id} created by {wallet.address}: "
         f"{asset_amount(price_units, paid_in)} per {format_duration(seconds)} ({approval}; "
         f"tx {created.tx_hash})")
    typer.echo(str(created.listing_id))


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
            pass  # unreadable input fails before the wallet is unlocked
        app = owner_app_for(rpc, market, store, keystore, passphrase_file)
        published = app.publish(listing, file, progress=_noted(file, app.store))
    note(f"listing {listing} version {published.version}: {published.cid.text} anchored "
         f"(tx {published.tx_hash})")
    typer.echo(f"{published.version} {published.cid.text}")


def _noted(file: Path, store: object) -> Stages:
    """Stages told as notes on stderr (the CLI draws no bars: its stderr is for lines)."""

    @contextmanager
    def stage(name: str, total: int | None) -> Iterator[Progress]:
        if name == "encrypt":
            note(f"encrypting {file} ...")
        elif name == "upload":
            note(f"storing {total or 0:,} bytes of ciphertext in {store!r} ...")
        yield lambda count: None

    return stage


@owner_app.command("inbox")
def inbox(
    rpc: RpcOption = None,
    market: MarketOption = None,
    store: StoreOption = None,
    from_block: FromBlockOption = 0,
    json_out: JsonOption = False,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Requests waiting for your consent, each with the buyer's purpose in their words
    (verified against the on-chain hash, opened if sealed to you)."""
    with cli_errors():
        app = owner_app_for(rpc, market, store, keystore, passphrase_file, from_block)
        pending = app.inbox()
        listed = {int(r.debit.listing_id) for r in pending}
        assets = {i: read_asset(app.market, app.market.listing(i).asset) for i in listed}
    if json_out:
        print_json([{**request_record(r), "asset": assets[r.debit.listing_id].address}
                    for r in pending])
    elif not pending:
        note(f"no requests waiting for {app.address}'s consent")
    else:
        print_inbox(pending, assets)


def _decision(
    action: str, debit: int, rpc: str | None, market: str | None, keystore: Path | None,
    passphrase_file: Path | None,
) -> None:
    """Send one owner decision on a debit, then show the debit as it now stands."""
    from marketplace.app.owner import OwnerApp  # noqa: PLC0415

    with cli_errors():
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        app = OwnerApp(client, None, wallet)
        changed = getattr(app, action)(debit)
    note(debit_line(changed.debit))


@owner_app.command("consent")
def consent(
    debit: DebitArgument,
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Approve a requested debit: its term starts now."""
    _decision("consent", debit, rpc, market, keystore, passphrase_file)


@owner_app.command("reject")
def reject(
    debit: DebitArgument,
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Refuse a requested debit: the buyer is credited the full amount."""
    _decision("reject", debit, rpc, market, keystore, passphrase_file)


@owner_app.command("revoke")
def revoke(
    debit: DebitArgument,
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Stop an active debit: accrued escrow to you, the rest back to the buyer."""
    _decision("revoke", debit, rpc, market, keystore, passphrase_file)


@owner_app.command("claim")
def claim(
    debits: Annotated[list[int], typer.Argument(min=1, help="Debit ids.")],
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Credit what has accrued on DEBITS to your market balance; prints the wei credited."""
    from marketplace.app.owner import OwnerApp  # noqa: PLC0415

    with cli_errors():
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        paid = OwnerApp(client, None, wallet).claim(debits)
        paid_in = read_asset(client, paid.asset)
    more = "" if paid_in.is_ether else f" --asset {paid_in.address}"
    note(f"claimed {asset_amount(paid.amount, paid_in)}; market balance now "
         f"{asset_amount(paid.balance, paid_in)} (`owner withdraw{more}`)")
    typer.echo(str(paid.amount))


@owner_app.command("withdraw")
def withdraw(
    asset: Annotated[
        str | None,
        typer.Option("--asset", help="Withdraw the balance in this ERC-20 token (balances "
                                     "are kept per asset; default: ether)."),
    ] = None,
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Pay your credited market balance (earnings, or a buyer's refunds) in one asset out
    to your wallet; prints the amount withdrawn (wei, or the token's base units)."""
    from marketplace.app.owner import withdraw as pay_out  # noqa: PLC0415 - name clash

    with cli_errors():
        token = asset_option(asset)
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        paid_in = read_asset(client, token)
        paid = pay_out(client, wallet, token)
    note(f"withdrew {asset_amount(paid.amount, paid_in)} to {wallet.address}")
    typer.echo(str(paid.amount))


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
    from marketplace.app.reads import listings_of  # noqa: PLC0415

    with cli_errors():
        client = open_market(rpc, market)
        who = address_or_wallet(owner, "--owner", keystore, passphrase_file)
        records = [listing_record(v, read_asset(client, v.listing.asset))
                   for v in listings_of(client, who, from_block)]
    if json_out:
        print_json(records)
    elif not records:
        note(f"{who} has no listings on this market")
    else:
        print_listings(records)
