"""`datadebit buyer ...`: open a data debit (with a purpose the owner can read), fetch
and decrypt versions, follow debits. Parsing and rendering only: every flow is
`marketplace.app.buyer.BuyerApp`'s.

The buyer's X25519 key is derived from the wallet (one deterministic EIP-712 signature
in the market's domain), so the same wallet re-derives it on any machine and nothing
extra has to be kept. `fetch` reads CID and capsule from the chain (`VersionPublished`),
asks the committee's gateways for key shares (t of n suffice), fetches the ciphertext
from the store by CID and decrypts: the output file appears only if all of that worked.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from marketplace.app.units import parse_duration
from marketplace.cli.config import (
    CommitteeOption,
    ConfigError,
    FromBlockOption,
    MarketOption,
    RpcOption,
    StoreOption,
    check_committee_matches,
    open_light_market,
    open_store,
    read_committee,
)
from marketplace.cli.errors import cli_errors, fail
from marketplace.cli.owner_commands import (
    DebitArgument,
    JsonOption,
    parse_amount_in,
    parse_option,
    read_asset,
    withdraw,
)
from marketplace.cli.render import (
    asset_amount,
    asset_fields,
    debit_line,
    note,
    print_debits,
    print_json,
    view_record,
    when,
)
from marketplace.cli.wallet_commands import (
    KeystoreOption,
    PassphraseFileOption,
    address_or_wallet,
    market_and_wallet,
)

if TYPE_CHECKING:
    import httpx

    from marketplace.app.buyer import FetchResult, Quote, RequestedDebit
    from marketplace.chain.assets import AssetInfo
    from marketplace.documents import PurposeDocument
    from marketplace.keyclient import KeyClient

#: marketplace.keyclient.DEFAULT_TIMEOUT (not imported: it pulls in httpx and the chain)
DEFAULT_TIMEOUT = 10.0

buyer_app = typer.Typer(
    help="Buyer: open data debits, fetch and decrypt versions.", no_args_is_help=True
)

def register(app: typer.Typer) -> None:
    buyer_app.command("withdraw")(withdraw)  # the owner's command: one market balance each
    app.add_typer(buyer_app, name="buyer")


@buyer_app.command("request")
def request(
    listing: Annotated[int, typer.Option("--listing", min=1, help="Listing id.")],
    periods: Annotated[int, typer.Option("--periods", min=1, help="Periods to pay for.")],
    purpose: Annotated[
        str | None,
        typer.Option("--purpose", help="Why you ask, in words: stored as a purpose document "
                                       "(its SHA-256 goes on chain) for the owner to read."),
    ] = None,
    purpose_file: Annotated[
        Path | None,
        typer.Option("--purpose-file", dir_okay=False,
                     help="A purpose document (JSON, schema datadebit/purpose/v1)."),
    ] = None,
    requester: Annotated[
        str | None, typer.Option("--requester", help="Who asks (default: your address).")
    ] = None,
    retention: Annotated[
        str | None, typer.Option("--retention", help="How long you keep the data.")
    ] = None,
    contact: Annotated[
        str | None, typer.Option("--contact", help="How the owner can reach you.")
    ] = None,
    no_seal: Annotated[
        bool,
        typer.Option("--no-seal", help="Publish the purpose in the clear even when the "
                                       "listing's owner publishes a key to seal it to."),
    ] = False,
    max_price: Annotated[
        str | None,
        typer.Option(
            "--max-price",
            help="Refuse to pay more than this in total, in the listing's asset: 0.05eth, "
            "50gwei, or wei with the suffix or as a plain integer (50000000000000000wei); "
            "for a token listing 20usdc-style (its symbol and decimals) or base units.",
        ),
    ] = None,
    consent_within: Annotated[
        str | None,
        typer.Option(
            "--consent-within",
            help="The owner must consent within this long (7d, 12h, 30m), counted from the "
            "chain's time; after it, consent is refused and `buyer cancel` refunds you. "
            "Default: no deadline.",
        ),
    ] = None,
    rpc: RpcOption = None,
    market: MarketOption = None,
    store: StoreOption = None,
    from_block: FromBlockOption = 0,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Pay price x periods into escrow for access to a listing; prints the debit id.

    The total is shown before paying and is exactly what is paid: it comes from one
    read of the listing, and the contract takes nothing but that exact amount (a token
    listing is paid with a permit of exactly it when the token supports EIP-2612, one
    transaction, else by approving exactly it). A purpose is sealed to the listing's owner
    when its document publishes an owner key.
    """
    from marketplace.app.buyer import (  # noqa: PLC0415 - web3, only when used
        BuyerApp,
        InsufficientTokens,
        PriceAboveLimit,
        PriceChanged,
    )
    from marketplace.documents import parse_purpose_document  # noqa: PLC0415

    with cli_errors():
        within = None if consent_within is None \
            else parse_option("--consent-within", consent_within, parse_duration)
        if purpose is not None and purpose_file is not None:
            fail("give --purpose TEXT or --purpose-file FILE, not both")
        details = {"requester": requester, "retention": retention, "contact": contact}
        if purpose is None and purpose_file is None and any(details.values()):
            fail("--requester, --retention and --contact describe a purpose: give --purpose "
                 "too")
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        paid_in = read_asset(client, client.listing(listing).asset)
        limit = None if max_price is None \
            else parse_amount_in("--max-price", max_price, paid_in)
        document: PurposeDocument | None = None
        if purpose_file is not None:
            if any(details.values()):
                fail("--purpose-file is the whole document: put requester, retention and "
                     "contact inside it")
            document = parse_purpose_document(purpose_file.read_bytes())
        elif purpose is not None:
            document = _purpose_document(purpose, requester or wallet.address, retention,
                                         contact)
        content = open_store(store) if document is not None else None
        app = BuyerApp(client, content, wallet, from_block=from_block)
        try:
            requested = app.request(listing, periods, document, limit, not no_seal,
                                    on_quote=lambda q: _show_quote(q, paid_in),
                                    consent_within=within)
        except PriceAboveLimit as e:
            fail(f"listing {e.listing_id} costs {asset_amount(e.total, paid_in)} in total, "
                 f"above --max-price {asset_amount(e.limit, paid_in)}; nothing was paid")
        except PriceChanged as e:
            fail(f"listing {e.listing_id}'s price changed from {asset_amount(e.seen, paid_in)} "
                 f"to {asset_amount(e.now, paid_in)} per period while paying; the payment was "
                 "refused and nothing was paid; run the command again to see the new total")
        except InsufficientTokens as e:
            fail(f"listing {e.listing_id} costs {asset_amount(e.total, paid_in)} in total and "
                 f"{wallet.address} holds {asset_amount(e.balance, paid_in)}; nothing was sent")
        _show_requested(requested, paid_in)
    typer.echo(str(requested.debit.debit_id))


def _purpose_document(
    purpose: str, requester: str, retention: str | None, contact: str | None
) -> PurposeDocument:
    """A purpose document from the flags, validated like one read from a file."""
    from marketplace.documents import parse_purpose_document  # noqa: PLC0415

    fields = {"schema": "datadebit/purpose/v1", "requester": requester, "purpose": purpose,
              "retention": retention, "contact": contact}
    data = json.dumps({k: v for k, v in fields.items() if v is not None}).encode()
    return parse_purpose_document(data)


def _show_quote(quote: Quote, asset: AssetInfo) -> None:
    note(f"total: {asset_amount(quote.total_wei, asset)} = {quote.periods} period(s) x "
         f"{asset_amount(quote.price_wei, asset)} (listing {quote.listing_id})")


_PAID_WITH = {"ether": "", "permit": " with a permit (one transaction)",
              "approve": " after approving exactly that amount"}


def _show_requested(requested: RequestedDebit, asset: AssetInfo) -> None:
    quote = requested.quote
    note(f"paid {asset_amount(quote.total_wei, asset)} for {quote.periods} period(s) of "
         f"listing {quote.listing_id}{_PAID_WITH.get(requested.payment, '')}")
    if requested.consent_deadline:
        note(f"the owner must consent by {when(requested.consent_deadline)}; after that "
             f"`datadebit buyer cancel {requested.debit.debit_id}` refunds you")
    if requested.purpose_cid is not None:
        how = "sealed to the listing's owner" if requested.sealed else "in the clear"
        note(f"purpose stored {how} as {requested.purpose_cid.text} "
             f"(purposeHash 0x{requested.purpose_hash.hex()})")
    note(debit_line(requested.debit))


@buyer_app.command("cancel")
def cancel(
    debit: DebitArgument,
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Withdraw a debit the owner has not consented to yet; the payment is credited back."""
    from marketplace.app.buyer import BuyerApp  # noqa: PLC0415

    with cli_errors():
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        cancelled = BuyerApp(client, None, wallet).cancel(debit)
        note(debit_line(cancelled.debit))
        note(f"credited back: `datadebit wallet balance --market {client.address}`; "
             "withdraw with `datadebit buyer withdraw`")


@buyer_app.command("fetch")
def fetch(
    debit: Annotated[int, typer.Option("--debit", min=1, help="Your debit id.")],
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="Where to write the data.")],
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, help="Version (default: the latest published)."),
    ] = None,
    rpc: RpcOption = None,
    market: MarketOption = None,
    store: StoreOption = None,
    committee: CommitteeOption = None,
    from_block: FromBlockOption = 0,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, help="Seconds the whole key fetch may take."),
    ] = DEFAULT_TIMEOUT,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Get the key from t gateways, the ciphertext from the store, decrypt to --out.

    Prints `<version> <cid>`; nothing is written to --out unless everything succeeded.
    """
    from marketplace.app.buyer import BuyerApp  # noqa: PLC0415
    from marketplace.keyclient import ChainCommittees, KeyClient, gateway_client  # noqa: PLC0415

    # each refusing gateway is named in the one-line error; no log lines besides it
    logging.getLogger("marketplace.keyclient").setLevel(logging.CRITICAL)
    opened: list[httpx.Client] = []
    with cli_errors():
        if out.is_dir():
            fail(f"--out {out} is a directory")
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        public = read_committee(committee)
        assert committee is not None  # read_committee refused None

        def key_client() -> KeyClient:
            """Gateways from committee.json, checked to be the market's committee."""
            check_committee_matches(public, client.committee(), committee)
            urls = {node.index: node.url for node in public.nodes if node.url}
            if len(urls) < public.threshold:
                raise ConfigError(
                    f"committee file {committee} has URLs for {len(urls)} gateways, "
                    f"{public.threshold} are needed"
                )
            nodes: dict[int, httpx.Client] = {i: gateway_client(url) for i, url in urls.items()}
            opened.extend(nodes.values())
            # shares are verified per the epoch each gateway answers with (around a reshare)
            committees = ChainCommittees(client)
            return KeyClient(committees.current(), client.domain, nodes,
                             committees=committees, timeout=timeout)

        app = BuyerApp(client, open_store(store), wallet, key_client, from_block=from_block)
        try:
            result = app.fetch(debit, out, version)
        finally:
            for node in opened:
                node.close()
    _show_fetched(result)


def _show_fetched(result: FetchResult) -> None:
    for index, why in sorted(result.faults.items()):
        note(f"gateway {index} did not help: {why}")
    used = ", ".join(str(i) for i in result.used_nodes)
    note(f"listing {result.listing_id} version {result.version}: {result.size:,} bytes "
         f"decrypted to {result.out} (key shares from gateways {used})")
    typer.echo(f"{result.version} {result.cid.text}")


@buyer_app.command("status")
def status(
    debit: Annotated[int | None, typer.Argument(min=1, help="One debit (default: all yours).")]
    = None,
    rpc: RpcOption = None,
    market: MarketOption = None,
    buyer: Annotated[
        str | None, typer.Option("--buyer", help="Buyer address (default: the wallet's).")
    ] = None,
    from_block: FromBlockOption = 0,
    json_out: JsonOption = False,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Your debits (or one debit): state, start/end, amount, settled."""
    from marketplace.app.reads import DebitView, debits_of  # noqa: PLC0415

    with cli_errors():  # read without web3 (start-up budget); a --keystore loads eth_account
        client = open_light_market(rpc, market)
        if debit is not None:
            views = [DebitView(client.debit(debit))]
        else:
            who = address_or_wallet(buyer, "--buyer", keystore, passphrase_file)
            views = debits_of(client, who, from_block)
        # each amount in its listing's asset (symbol and decimals read once per listing)
        assets = {listing: client.asset_info(client.listing_asset(listing))
                  for listing in {v.debit.listing_id for v in views}}
        records = [{**view_record(v), **asset_fields(assets[v.debit.listing_id])}
                   for v in views]
    if json_out:
        print_json(records[0] if debit is not None else records)
    elif not records:
        note("no debits for this buyer on this market")
    else:
        print_debits("debits", records)
