"""Wallets for owners, buyers and deployers: an eth-account keystore or a raw private key.

The keystore is the standard encrypted JSON (Web3 Secret Storage, scrypt) that geth,
MetaMask exports and foundry's `cast wallet` read, so a wallet made here works elsewhere
and the other way round. Errors name the file or the source, never the key, the
passphrase or the keystore's content.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marketplace.errors import MarketplaceError

if TYPE_CHECKING:  # eth_account costs ~0.5 s to import: only the functions using it do
    from eth_account.signers.local import LocalAccount

#: scrypt N for new keystores: eth-account's own default (about a second per unlock).
KEYSTORE_SCRYPT_N = 2**18


class WalletError(MarketplaceError):
    """A wallet that cannot be loaded or written; the message never holds secrets."""


class WrongKeystorePassphrase(WalletError):
    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"keystore {path}: wrong passphrase (it does not decrypt)")


def from_private_key(key: str, source: str) -> LocalAccount:
    """The account of a hex private key (with or without 0x); `source` names where it
    came from for the error message, e.g. `$DATADEBIT_PRIVATE_KEY`."""
    from eth_account import Account  # noqa: PLC0415

    text = key.strip()
    body = text.removeprefix("0x").removeprefix("0X")
    if len(body) != 64:
        raise WalletError(f"{source} is not a private key (expected 32 bytes of hex)")
    try:
        account: LocalAccount = Account.from_key(bytes.fromhex(body))
    except ValueError as e:  # not hex, zero, or >= the curve order
        raise WalletError(f"{source} is not a valid private key") from e
    return account


def read_keystore(path: Path) -> dict[str, Any]:
    """The keystore's JSON, checked to look like one (before asking for a passphrase)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise WalletError(f"keystore {path} does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise WalletError(f"cannot read keystore {path}: {type(e).__name__}") from e
    except ValueError as e:
        raise WalletError(f"keystore {path} is not JSON") from e
    if not isinstance(data, dict) or ("crypto" not in data and "Crypto" not in data):
        raise WalletError(f"keystore {path} is not an encrypted Ethereum keystore")
    return data


def from_keystore(path: Path, passphrase: str) -> LocalAccount:
    """Decrypt the keystore at `path` with `passphrase`."""
    from eth_account import Account  # noqa: PLC0415

    data = read_keystore(path)
    try:
        key = Account.decrypt(data, passphrase)
    except ValueError as e:
        if "MAC mismatch" in str(e):
            raise WrongKeystorePassphrase(Path(path)) from e
        raise WalletError(f"keystore {path} is malformed ({type(e).__name__})") from e
    except (KeyError, TypeError) as e:
        raise WalletError(f"keystore {path} is malformed (missing or bad fields)") from e
    account: LocalAccount = Account.from_key(key)
    return account


def write_keystore(
    account: LocalAccount, path: Path, passphrase: str, *, scrypt_n: int = KEYSTORE_SCRYPT_N
) -> None:
    """Encrypt `account` under `passphrase` into a new file at `path`, mode 0600.

    An existing file is never overwritten: it may be the only copy of someone's key.
    """
    from eth_account import Account  # noqa: PLC0415

    if not passphrase:
        raise WalletError("the keystore passphrase must not be empty")
    data = Account.encrypt(account.key, passphrase, kdf="scrypt", iterations=scrypt_n)
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise WalletError(f"refusing to overwrite {path}") from e
    except OSError as e:
        raise WalletError(f"cannot create {path}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
            out.write("\n")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
