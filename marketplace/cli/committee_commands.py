"""`datadebit committee ...`: set up a key-release committee (DESIGN §4, dealer v1)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from marketplace.committee import KdfStrength, create_committee, write_committee
from marketplace.errors import MarketplaceError

PASSPHRASE_ENV = "DATADEBIT_NODE_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)


def register(app: typer.Typer) -> None:
    """Add the `committee` command group to the root app."""
    committee_app = typer.Typer(help="Key-release committee set-up.", no_args_is_help=True)
    committee_app.command("init")(init)
    app.add_typer(committee_app, name="committee")


def init(
    n: Annotated[int, typer.Option("--n", min=1, max=255, help="Number of nodes.")],
    t: Annotated[int, typer.Option("--t", min=1, max=255, help="Threshold: shares needed.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the files (created).")],
    urls: Annotated[
        str | None,
        typer.Option("--urls", help="Comma-separated gateway URLs, one per node, in order."),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            help=f"File holding the passphrase (else ${PASSPHRASE_ENV}, else a prompt).",
        ),
    ] = None,
    kdf: Annotated[
        KdfStrength,
        typer.Option("--kdf", help="Passphrase KDF strength; `interactive` for tests/demos."),
    ] = KdfStrength.MODERATE,
) -> None:
    """Deal a t-of-n committee: node-<i>.json key files (encrypted) and committee.json.

    The dealer's secret is never written; give each node its own file and the same
    committee.json to the deploy step.
    """
    if t > n:
        raise typer.BadParameter(f"the threshold {t} exceeds the {n} nodes", param_hint="--t")
    url_list = _parse_urls(urls, n)
    passphrase = read_passphrase(passphrase_file)
    try:
        public, key_files = create_committee(n, t, passphrase, strength=kdf, urls=url_list)
        paths = write_committee(out, public, key_files)
    except (MarketplaceError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(f"{t}-of-{n} committee written to {out}")
    typer.echo(f"  public committee file: {paths[0]}")
    typer.echo(f"  committee key: 0x{public.committee_key.to_bytes().hex()}")
    for node, path in zip(public.nodes, paths[1:], strict=True):
        typer.echo(f"  node {node.index}: {node.address}  {path}")


def _parse_urls(urls: str | None, n: int) -> list[str] | None:
    if urls is None:
        return None
    parts = [u.strip() for u in urls.split(",")]
    if len(parts) != n or not all(p.startswith(("http://", "https://")) for p in parts):
        raise typer.BadParameter(f"give exactly {n} http(s) URLs", param_hint="--urls")
    return parts


def read_passphrase(passphrase_file: Path | None, *, confirm: bool = True) -> str:
    """From the file (one trailing newline dropped), the environment, or a prompt
    (typed twice when `confirm`, as when new key files are sealed with it)."""
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8")
        except OSError as e:
            raise typer.BadParameter(
                f"cannot read {passphrase_file}", param_hint="--passphrase-file"
            ) from e
        passphrase = text.removesuffix("\n").removesuffix("\r")
    else:
        passphrase = os.environ.get(PASSPHRASE_ENV) or typer.prompt(
            "Passphrase for the node key files", hide_input=True, confirmation_prompt=confirm
        )
    if not passphrase:
        raise typer.BadParameter("the passphrase must not be empty")
    return passphrase
