"""Entry point of the `datadebit` command: composes the sub-command groups."""

from __future__ import annotations

import typer

from marketplace.cli.audit_commands import register as register_audit
from marketplace.cli.buyer_commands import register as register_buyer
from marketplace.cli.committee_commands import register as register_committee
from marketplace.cli.config import ConfigOption, default_map, load_config_file
from marketplace.cli.errors import cli_errors
from marketplace.cli.gateway_commands import register as register_gateway
from marketplace.cli.owner_commands import register as register_owner
from marketplace.cli.storage_commands import register as register_storage
from marketplace.cli.wallet_commands import register as register_wallet

app = typer.Typer(
    name="datadebit",
    help="datadebit: a blockchain-anchored data marketplace with encrypted off-chain storage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
register_committee(app)
register_gateway(app)
register_storage(app)
register_audit(app)
register_wallet(app)
register_owner(app)
register_buyer(app)


@app.callback()
def root(ctx: typer.Context, config: ConfigOption = None) -> None:
    """datadebit: a blockchain-anchored data marketplace with encrypted off-chain storage.

    Options come from flags, then $DATADEBIT_* variables, then the --config file.
    """
    if config is not None:
        with cli_errors():
            ctx.default_map = default_map(ctx.command, load_config_file(config), config)


@app.command("demo")
def demo() -> None:
    """Run the whole flow on the embedded defaults (chain, store, 2-of-3 committee)."""
    import warnings  # noqa: PLC0415

    # fastapi.testclient (the in-process gateways' transport) warns about its own httpx use.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from marketplace.demo import run_demo  # noqa: PLC0415 - heavy, only for this command

    raise typer.Exit(run_demo())


def main() -> None:
    """Console-script entry point."""
    app()
