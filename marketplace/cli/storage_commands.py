"""`datadebit cid` and `datadebit envelope encrypt|decrypt`: the storage layer by hand.

Every failure ends in one `error: ...` line on stderr and exit status 1, and never leaves an
output file behind (outputs are written to a temporary file and renamed on success).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from storage.envelope import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, decrypt_file, encrypt_file
from storage.errors import StorageError
from storage.keyfile import load_or_create_key_file, read_key_file
from storage.unixfs import file_cid

KeyFileOption = Annotated[
    Path,
    typer.Option(
        "--key-file",
        help="File holding the version's data key (hex, mode 0600).",
        dir_okay=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add `cid` and the `envelope` command group to the root app."""
    app.command("cid")(cid)
    envelope_app = typer.Typer(
        help="Encrypt and decrypt a version's file (DESIGN §3 envelope).", no_args_is_help=True
    )
    envelope_app.command("encrypt")(encrypt)
    envelope_app.command("decrypt")(decrypt)
    app.add_typer(envelope_app, name="envelope")


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn storage and file-system errors into one stderr line and exit status 1."""
    try:
        yield
    except (StorageError, OSError) as e:
        typer.echo(f"error: {' '.join(str(e).split())}", err=True)
        raise typer.Exit(1) from e


def _check_readable(path: Path) -> None:
    with path.open("rb"):
        pass


def cid(
    path: Annotated[Path, typer.Argument(help="The file.", dir_okay=False)],
) -> None:
    """Print the CID that `ipfs add --cid-version=1 PATH` gives, computed locally."""
    with _one_line_errors():
        typer.echo(file_cid(path).text)


def encrypt(
    input_path: Annotated[Path, typer.Argument(metavar="IN", help="Plaintext file.")],
    output_path: Annotated[Path, typer.Argument(metavar="OUT", help="Envelope to write.")],
    key_file: KeyFileOption,
    chunk_size: Annotated[
        int,
        typer.Option(help="Plaintext bytes per authenticated chunk.", min=1, max=MAX_CHUNK_SIZE),
    ] = DEFAULT_CHUNK_SIZE,
) -> None:
    """Encrypt IN into the envelope OUT and print OUT's CID.

    The key file is created with a fresh random key (mode 0600) when it does not exist.
    """
    with _one_line_errors():
        _check_readable(input_path)
        key, created = load_or_create_key_file(key_file)
        if created:
            typer.echo(f"created key file {key_file} (mode 0600)", err=True)
        result = encrypt_file(input_path, output_path, key, chunk_size=chunk_size)
    typer.echo(result.cid.text)


def decrypt(
    input_path: Annotated[Path, typer.Argument(metavar="IN", help="Envelope.")],
    output_path: Annotated[Path, typer.Argument(metavar="OUT", help="Plaintext to write.")],
    key_file: KeyFileOption,
) -> None:
    """Decrypt the envelope IN into OUT; OUT appears only if every chunk authenticated."""
    with _one_line_errors():
        key = read_key_file(key_file)
        decrypt_file(input_path, output_path, key)
