"""How every owner/buyer/wallet command fails: one `error: ...` line on stderr, exit 1.

Contract reverts are explained in words (the custom error's own description) with the
decoded error after it, so "NotListingOwner" reads as "only the listing's owner may do
this". Nothing here ever formats a key, passphrase or plaintext: the messages come from
our own exception classes, which are written not to carry them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import NoReturn

import typer

from marketplace.chain.errors import ContractRevert
from marketplace.errors import MarketplaceError
from storage.errors import StorageError


def fail(message: str) -> NoReturn:
    """Print `error: message` on stderr and exit with status 1."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(1)


def explain(error: BaseException) -> str:
    """The one-line message for an expected failure."""
    if isinstance(error, ContractRevert):
        return _explain_revert(error)
    if isinstance(error, (MarketplaceError, StorageError)):
        return str(error)
    if isinstance(error, OSError):
        where = f" {error.filename}" if error.filename else ""
        return f"{error.strerror or type(error).__name__}:{where}"
    return str(error)


def _explain_revert(error: ContractRevert) -> str:
    doc = (type(error).__doc__ or "").strip().splitlines()
    words = doc[0].rstrip(".") if doc and type(error) is not ContractRevert else ""
    if words:
        words = words[0].lower() + words[1:]
    state = error.fields.get("state")
    if error.name == "InvalidDebitState" and isinstance(state, int):
        from marketplace.chain.types import DebitState  # noqa: PLC0415 - eth_typing: not for cid
        with suppress(ValueError):
            words += f" (it is {DebitState(state).name.lower()})"
    return f"{words}: {error}" if words else str(error)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn marketplace, storage and file-system errors into `error: ...` and exit 1."""
    try:
        yield
    except (MarketplaceError, StorageError, OSError) as e:
        fail(explain(e))
