"""`datadebit buyer ...`: open a data debit, fetch and decrypt versions, follow debits.

The buyer's X25519 key is derived from the wallet (one deterministic EIP-712 signature
in the market's domain), so the same wallet re-derives it on any machine and nothing
extra has to be kept. `fetch` reads CID and capsule from the chain (`VersionPublished`),
asks the committee's gateways for key shares (t of n suffice), fetches the ciphertext
from the store by CID and decrypts: the output file appears only if all of that worked.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from eth_hash.auto import keccak

from marketplace.chain.errors import TransactionFailed, WrongPayment
from marketplace.chain.events import DebitRequested, VersionPublished
from marketplace.chain.market import MarketClient
from marketplace.cli.config import (
    CommitteeOption,
    ConfigError,
    FromBlockOption,
    MarketOption,
    RpcOption,
    StoreOption,
    check_committee_matches,
    open_market,
    open_store,
    read_committee,
)
from marketplace.cli.errors import cli_errors, fail
from marketplace.cli.owner_commands import DebitArgument, JsonOption, topic, withdraw
from marketplace.cli.render import (
    debit_line,
    debit_record,
    note,
    print_debits,
    print_json,
)
from marketplace.cli.wallet_commands import (
    KeystoreOption,
    PassphraseFileOption,
    address_or_wallet,
    market_and_wallet,
)
from marketplace.eip712 import Eip712Domain
from marketplace.errors import MarketplaceError
from marketplace.keyclient import (
    DEFAULT_TIMEOUT,
    ChainCommittees,
    FetchedKey,
    KeyClient,
    gateway_client,
)
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import Capsule, CapsuleContext
from storage.cid import Cid
from storage.envelope import decrypt_file

buyer_app = typer.Typer(
    help="Buyer: open data debits, fetch and decrypt versions.", no_args_is_help=True
)

#: The chain keeps this many leading bytes of keccak256(cid) per version.
_CID_DIGEST_SIZE = 27


def register(app: typer.Typer) -> None:
    buyer_app.command("withdraw")(withdraw)  # the owner's command: one market balance each
    app.add_typer(buyer_app, name="buyer")


class VersionNotFound(MarketplaceError):
    """The chain has no (readable) VersionPublished event for the version asked for."""


#: What `--max-price` takes: ETH as a plain decimal (`0.05`, `0.05eth`) or whole wei
#: with the suffix (`50000000000000000wei`).
_ETH = re.compile(r"(\d+(?:\.\d+)?)(?:\s*eth)?", re.IGNORECASE)
_WEI = re.compile(r"(\d+)\s*wei", re.IGNORECASE)
_WEI_PER_ETH = 10**18


class BadAmount(MarketplaceError, ValueError):
    """An amount that is neither decimal ETH nor whole wei."""

    def __init__(self, option: str, text: str) -> None:
        self.option = option
        super().__init__(
            f"{option} {text[:40]!r} is not an amount: give ETH as a decimal "
            "(0.05, at most 18 decimals) or wei with the suffix (50000000000000000wei)"
        )


class PriceAboveLimit(MarketplaceError):
    """The listing's total is more than the buyer allowed; nothing is sent."""

    def __init__(self, listing_id: int, total: int, limit: int) -> None:
        self.listing_id, self.total, self.limit = listing_id, total, limit
        super().__init__(
            f"listing {listing_id} costs {eth_amount(total)} in total, above --max-price "
            f"{eth_amount(limit)}; nothing was paid"
        )


class PriceChanged(MarketplaceError):
    """The owner changed the price between our read and the payment: the contract takes
    only the exact total, so the payment was refused and nothing was paid."""

    def __init__(self, listing_id: int, seen: int, now: int) -> None:
        self.listing_id, self.seen, self.now = listing_id, seen, now
        super().__init__(
            f"listing {listing_id}'s price changed from {eth_amount(seen)} to "
            f"{eth_amount(now)} per period while paying; the payment was refused and "
            "nothing was paid; run the command again to see the new total"
        )


def parse_amount(option: str, text: str) -> int:
    """Wei from `0.05` / `0.05eth` (ETH, exact to the wei) or `50000000000000000wei`."""
    cleaned = text.strip()
    if wei := _WEI.fullmatch(cleaned):
        return int(wei.group(1))
    eth = _ETH.fullmatch(cleaned)
    if eth is None:
        raise BadAmount(option, text)
    whole, _, fraction = eth.group(1).partition(".")
    if len(fraction) > 18:
        raise BadAmount(option, text)
    return int(whole) * _WEI_PER_ETH + int(fraction.ljust(18, "0") or "0")


def eth_amount(wei: int) -> str:
    """`0.003 ETH (3000000000000000 wei)`: exact, no float anywhere."""
    whole, fraction = divmod(wei, _WEI_PER_ETH)
    decimals = f"{fraction:018d}".rstrip("0")
    return f"{whole}{'.' + decimals if decimals else ''} ETH ({wei} wei)"


@buyer_app.command("request")
def request(
    listing: Annotated[int, typer.Option("--listing", min=1, help="Listing id.")],
    periods: Annotated[int, typer.Option("--periods", min=1, help="Periods to pay for.")],
    purpose: Annotated[
        str | None,
        typer.Option("--purpose", help="Declared purpose; its SHA-256 goes on-chain."),
    ] = None,
    max_price: Annotated[
        str | None,
        typer.Option(
            "--max-price",
            help="Refuse to pay more than this in total: ETH as a decimal (0.05) or wei "
            "with the suffix (50000000000000000wei).",
        ),
    ] = None,
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Pay price x periods into escrow for access to a listing; prints the debit id.

    The total is shown before paying and is exactly what is paid: it comes from one
    read of the listing, and the contract takes nothing but that exact amount.
    """
    with cli_errors():
        limit = None if max_price is None else parse_amount("--max-price", max_price)
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        price = client.listing(listing).price_per_period
        total = price * periods
        note(
            f"total: {eth_amount(total)} = {periods} period(s) x {eth_amount(price)} "
            f"(listing {listing})"
        )
        if limit is not None and total > limit:
            raise PriceAboveLimit(listing, total, limit)
        domain = Eip712Domain(client.chain_id, client.address)
        # a BuyerPublicKey refuses low-order points: a key nothing can be sealed to is
        # an error here, before any transaction
        buyer_key = BuyerSecretKey.from_account(wallet, domain).public_key()
        purpose_hash = hashlib.sha256(purpose.encode()).digest() if purpose else bytes(32)
        try:
            sent = client.request_debit(
                wallet, listing, periods=periods, buyer_key=buyer_key.key,
                purpose_hash=purpose_hash, value=total,
            )
        except (WrongPayment, TransactionFailed) as e:
            now = client.listing(listing).price_per_period
            if now != price:
                raise PriceChanged(listing, price, now) from e
            raise
        note(f"paid {eth_amount(total)} for {periods} period(s) of listing {listing}")
        note(debit_line(client.debit(sent.value)))
    typer.echo(str(sent.value))


@buyer_app.command("cancel")
def cancel(
    debit: DebitArgument,
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Withdraw a debit the owner has not consented to yet; the payment is credited back."""
    with cli_errors():
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        client.cancel(wallet, debit)
        note(debit_line(client.debit(debit)))
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
    # each refusing gateway is named in the one-line error; no log lines besides it
    logging.getLogger("marketplace.keyclient").setLevel(logging.CRITICAL)
    with cli_errors():
        if out.is_dir():
            fail(f"--out {out} is a directory")
        client, wallet = market_and_wallet(rpc, market, keystore, passphrase_file)
        public = read_committee(committee)
        content = open_store(store)
        record = client.debit(debit)
        if record.buyer != wallet.address:
            fail(f"debit {debit} belongs to {record.buyer}, not to {wallet.address}")
        chosen = _version_to_fetch(client, record.listing_id, version)
        published = _published(client, record.listing_id, chosen, from_block)
        ctx = CapsuleContext(
            client.chain_id, client.address, record.listing_id, chosen, published.cid
        )
        capsule = Capsule.from_bytes(published.capsule)
        assert committee is not None  # read_committee refused None
        check_committee_matches(public, client.committee(), committee)
        urls = {node.index: node.url for node in public.nodes if node.url}
        if len(urls) < public.threshold:
            raise ConfigError(
                f"committee file {committee} has URLs for {len(urls)} gateways, "
                f"{public.threshold} are needed"
            )
        domain = Eip712Domain(client.chain_id, client.address)
        secret = BuyerSecretKey.from_account(wallet, domain)
        nodes: dict[int, httpx.Client] = {i: gateway_client(url) for i, url in urls.items()}
        try:
            # shares are verified per the epoch each gateway answers with (around a reshare)
            committees = ChainCommittees(client)
            fetched = KeyClient(
                committees.current(), domain, nodes, committees=committees, timeout=timeout
            ).fetch(wallet, secret, debit, ctx, capsule)
        finally:
            for node in nodes.values():
                node.close()
        cid = Cid(published.cid)
        size = _download_and_decrypt(content, cid, fetched, out)
    _report_faults(fetched)
    used = ", ".join(str(i) for i in fetched.used_nodes)
    note(
        f"listing {record.listing_id} version {chosen}: {size:,} bytes decrypted to {out} "
        f"(key shares from gateways {used})"
    )
    typer.echo(f"{chosen} {cid.text}")


def _version_to_fetch(client: MarketClient, listing_id: int, asked: int | None) -> int:
    count = client.listing(listing_id).version_count
    if count == 0:
        fail(f"listing {listing_id} has no published version yet")
    if asked is None:
        return count
    if asked > count:
        fail(f"listing {listing_id} has {count} version(s); there is no version {asked}")
    return asked


def _published(
    client: MarketClient, listing_id: int, version: int, from_block: int
) -> VersionPublished:
    """The version's event, checked against the digest the contract keeps."""
    events = client.events().read(
        from_block, kinds=[VersionPublished], indexed=[topic(listing_id), topic(version)]
    )
    found = [e for e in events if isinstance(e, VersionPublished)]
    if not found:
        raise VersionNotFound(
            f"no VersionPublished event for listing {listing_id} version {version} "
            f"from block {from_block} on (is --from-block too high?)"
        )
    event = found[-1]
    stored = client.version(listing_id, version).cid_digest
    if keccak(event.cid)[:_CID_DIGEST_SIZE] != stored:
        raise VersionNotFound(
            f"the VersionPublished event of listing {listing_id} version {version} does not "
            "match the CID digest the contract keeps"
        )
    return event


def _download_and_decrypt(content: Any, cid: Cid, fetched: FetchedKey, out: Path) -> int:
    """Ciphertext (verified against its CID) to a temporary file, then decrypt to `out`."""
    with tempfile.TemporaryDirectory(prefix="datadebit-fetch-") as folder:
        sealed = Path(folder) / "version.dde"
        note(f"fetching {cid.text} from {content!r} ...")
        content.get(cid, sealed)
        return decrypt_file(sealed, out, fetched.data_key)


def _report_faults(fetched: FetchedKey) -> None:
    for index, why in sorted(fetched.faults.items()):
        note(f"gateway {index} did not help: {why}")


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
    with cli_errors():
        client = open_market(rpc, market)
        if debit is not None:
            records = [debit_record(client.debit(debit))]
        else:
            who = address_or_wallet(buyer, "--buyer", keystore, passphrase_file)
            records = buyer_debits(client, who, from_block)
    if json_out:
        print_json(records[0] if debit is not None else records)
    elif not records:
        note("no debits for this buyer on this market")
    else:
        print_debits("debits (amounts in wei)", records)


def buyer_debits(client: MarketClient, buyer: str, from_block: int) -> list[dict[str, Any]]:
    """Debits requested by `buyer` (from `DebitRequested`), with their current state."""
    requested = client.events().read(
        from_block, kinds=[DebitRequested], indexed=[None, None, topic(buyer)]
    )
    return [
        debit_record(client.debit(e.debit_id))
        for e in requested
        if isinstance(e, DebitRequested)
    ]
