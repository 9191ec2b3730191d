"""The signing wallet of the owner, buyer and deploy commands, and `datadebit wallet ...`.

Where the wallet comes from, first match wins:
1. `--keystore FILE` / `$DATADEBIT_KEYSTORE` / `keystore` in the config file: an
   eth-account encrypted keystore, unlocked with the passphrase from `--passphrase-file`,
   else `$DATADEBIT_KEYSTORE_PASSPHRASE`, else a hidden prompt;
2. `$DATADEBIT_PRIVATE_KEY`: a hex private key (for scripts and dev chains).
Keys and passphrases are never printed, not even in errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from eth_typing import ChecksumAddress

from marketplace.cli.config import (
    MarketOption,
    RpcOption,
    open_chain,
    open_market,
    parse_address,
)
from marketplace.cli.errors import cli_errors, fail
from marketplace.kdf import KdfStrength
from marketplace.wallet import WalletError, from_keystore, from_private_key, write_keystore

if TYPE_CHECKING:  # web3 and eth_account: imported by the commands that use them, so
    # a command that only reads (buyer status) does not pay ~0.7 s for them
    from eth_account.signers.local import LocalAccount

    from marketplace.chain.market import MarketClient

PRIVATE_KEY_ENV = "DATADEBIT_PRIVATE_KEY"
KEYSTORE_ENV = "DATADEBIT_KEYSTORE"
KEYSTORE_PASSPHRASE_ENV = "DATADEBIT_KEYSTORE_PASSPHRASE"  # noqa: S105 - a variable name
ETHER = 10**18

KeystoreOption = Annotated[
    Path | None,
    typer.Option(
        "--keystore",
        envvar=KEYSTORE_ENV,
        help=f"Encrypted wallet keystore (JSON); else ${PRIVATE_KEY_ENV} is used.",
        dir_okay=False,
    ),
]
PassphraseFileOption = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help=f"File with the keystore's passphrase (else ${KEYSTORE_PASSPHRASE_ENV}, "
        "else a prompt).",
        dir_okay=False,
    ),
]

wallet_app = typer.Typer(help="Create and inspect wallets.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(wallet_app, name="wallet")


def keystore_passphrase(passphrase_file: Path | None, *, confirm: bool = False) -> str:
    """From the file (one trailing newline dropped), the environment, or a hidden prompt."""
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise WalletError(f"cannot read passphrase file {passphrase_file}") from e
        passphrase = text.removesuffix("\n").removesuffix("\r")
    else:
        passphrase = os.environ.get(KEYSTORE_PASSPHRASE_ENV) or typer.prompt(
            "Keystore passphrase", hide_input=True, confirmation_prompt=confirm, err=True
        )
    if not passphrase:
        raise WalletError("the keystore passphrase must not be empty")
    return passphrase


def load_wallet(keystore: Path | None, passphrase_file: Path | None) -> LocalAccount:
    """The signing wallet from the keystore, else from $DATADEBIT_PRIVATE_KEY."""
    if keystore is not None:
        return from_keystore(keystore, keystore_passphrase(passphrase_file))
    key = os.environ.get(PRIVATE_KEY_ENV)
    if key:
        return from_private_key(key, f"${PRIVATE_KEY_ENV}")
    raise WalletError(
        f"no wallet: give --keystore FILE (or ${KEYSTORE_ENV}, or `keystore` in the config), "
        f"or set ${PRIVATE_KEY_ENV}"
    )


@wallet_app.command("new")
def new(
    out: Annotated[Path, typer.Option("--out", help="Keystore file to create (mode 0600).")],
    passphrase_file: PassphraseFileOption = None,
    kdf: Annotated[
        KdfStrength,
        typer.Option("--kdf", help="scrypt strength; `interactive` only for tests and demos."),
    ] = KdfStrength.MODERATE,
) -> None:
    """Create a new random wallet in an encrypted keystore; prints its address only."""
    from eth_account import Account  # noqa: PLC0415

    with cli_errors():
        passphrase = keystore_passphrase(passphrase_file, confirm=True)
        account: LocalAccount = Account.create()
        write_keystore(account, out, passphrase, scrypt_n=kdf.scrypt_n)
    typer.echo(account.address)


@wallet_app.command("address")
def address(
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Print the loaded wallet's address."""
    with cli_errors():
        account = load_wallet(keystore, passphrase_file)
    typer.echo(account.address)


@wallet_app.command("balance")
def balance(
    rpc: RpcOption = None,
    market: MarketOption = None,
    of: Annotated[
        str | None, typer.Option("--of", help="Address to look up (default: the wallet's).")
    ] = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Print the chain balance in wei, and with --market the credited market balance."""
    with cli_errors():
        who = address_or_wallet(of, "--of", keystore, passphrase_file)
        if market is not None:
            client = open_market(rpc, market)
            typer.echo(f"{client.w3.eth.get_balance(who)} {client.balance_of(who)}")
            typer.echo("(wallet wei, credited in the market wei)", err=True)
        else:
            typer.echo(str(open_chain(rpc).eth.get_balance(who)))


@wallet_app.command("fund")
def fund(
    to: Annotated[str, typer.Argument(help="Address to fund.")],
    ether: Annotated[int, typer.Option("--ether", min=1, help="Whole ether to send.")] = 10,
    rpc: RpcOption = None,
) -> None:
    """Dev chains only (anvil): send ether from the node's first unlocked account."""
    from marketplace.chain.provider import DevChain  # noqa: PLC0415

    with cli_errors():
        address = parse_address(to, "address")
        w3 = open_chain(rpc)
        if not w3.eth.accounts:
            fail("the chain node has no unlocked accounts (not a dev chain)")
        DevChain(w3).fund(address, ether * ETHER)
    typer.echo(f"sent {ether} ether to {address}", err=True)


def market_and_wallet(
    rpc: str | None, market: str | None, keystore: Path | None, passphrase_file: Path | None
) -> tuple[MarketClient, LocalAccount]:
    """The market (checked first, so a wrong endpoint fails before any passphrase prompt)
    and the signing wallet."""
    client = open_market(rpc, market)
    return client, load_wallet(keystore, passphrase_file)


def address_or_wallet(
    address: str | None, what: str, keystore: Path | None, passphrase_file: Path | None
) -> ChecksumAddress:
    """An address given as option `what`, else the loaded wallet's (of a
    $DATADEBIT_PRIVATE_KEY: computed without loading eth_account)."""
    if address:
        return parse_address(address, what)
    key = os.environ.get(PRIVATE_KEY_ENV)
    if keystore is None and key:
        from marketplace.chain.light import private_key_address  # noqa: PLC0415

        return private_key_address(key, f"${PRIVATE_KEY_ENV}")
    return load_wallet(keystore, passphrase_file).address
