"""Entry point of the `datadebit` command: a lazy root group.

Importing every command module costs about a second (web3, eth_account, FastAPI, ...),
which `datadebit --help` or `datadebit cid FILE` should not pay (issue 11: <= 0.3 s).
So the root names its commands in a static table, `COMMANDS`, with their one-line help,
and imports a command's module only when that command runs (or shows its own help).

Adding a command or group: give its module a `register(app: typer.Typer)` that adds it
(as every command module does) and add one `Entry` below. tests/cli/test_startup.py checks
the table against what the modules register (names, help, config keys).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import typer
from typer import _click
from typer.core import TyperCommand, TyperGroup

from marketplace.cli.config import ConfigOption, default_map, load_config_file, option_keys
from marketplace.cli.errors import cli_errors


@dataclass(frozen=True)
class Entry:
    """A root command or group: its name and one-line help (shown by `datadebit --help`
    without importing anything), and the module whose `register(app)` adds it."""

    name: str
    help: str
    module: str

    def load(self) -> _click.Command:
        """The real command (imports its module on first use)."""
        commands = _registered(self.module)
        if self.name not in commands:
            raise CommandTableError(f"{self.module}.register does not add `{self.name}`")
        return commands[self.name]


class CommandTableError(RuntimeError):
    """A `COMMANDS` entry that its module does not register (a programming error)."""


#: The root's commands, in `--help` order (commands, then groups).
COMMANDS: tuple[Entry, ...] = (
    Entry("deploy", "Deploy a DataMarket for a committee; prints its address.",
          "marketplace.cli.gateway_commands"),
    Entry("deploy-aggregator", "Deploy an AggregateMarket served by a DataMarket's "
          "committee; prints its address.", "marketplace.cli.aggregate_commands"),
    Entry("cid", "Print the CID that `ipfs add --cid-version=1 PATH` gives, computed locally.",
          "marketplace.cli.storage_commands"),
    Entry("audit", "Check a deployment end to end: balances, debit transitions, every CID, "
          "every release.", "marketplace.cli.audit_commands"),
    Entry("demo", "Run the whole flow on the embedded defaults (chain, store, 2-of-3 "
          "committee).", "marketplace.cli.main"),
    Entry("committee", "Key-release committee set-up.", "marketplace.cli.committee_commands"),
    Entry("gateway", "Run a key-release gateway node.", "marketplace.cli.gateway_commands"),
    Entry("envelope", "Encrypt and decrypt a version's file (DESIGN §3 envelope).",
          "marketplace.cli.storage_commands"),
    Entry("wallet", "Create and inspect wallets.", "marketplace.cli.wallet_commands"),
    Entry("owner", "Data owner: create listings, publish encrypted versions, manage debits.",
          "marketplace.cli.owner_commands"),
    Entry("buyer", "Buyer: open data debits, fetch and decrypt versions.",
          "marketplace.cli.buyer_commands"),
    Entry("market", "Buyer: search the catalog and read a listing.",
          "marketplace.cli.market_commands"),
    Entry("cohort", "Cohorts of owners for aggregate queries: create, join, leave, show.",
          "marketplace.cli.aggregate_commands"),
    Entry("catalog", "Run the catalog: a searchable index of the market's listings.",
          "marketplace.cli.market_commands"),
    Entry("web", "Run the web app: catalog, requests, consent inbox, downloads.",
          "marketplace.cli.web_commands"),
)

#: Every long option name (without `--`) of the whole command tree: the keys a --config
#: file may hold. A key the invoked command does not use is accepted if it is here, so
#: running one command does not import all the others to check the file for typos; a key
#: missing here is still looked up in the full tree (slowly). test_startup.py keeps this
#: equal to the tree.
CONFIG_KEYS: frozenset[str] = frozenset({
    "aggregator", "allow-zero-confirmations", "anchor-interval", "approve-rosters", "asset",
    "auto-approve", "bins", "buyer", "catalog", "chunk-size", "cohort", "committee", "config",
    "confirmations", "consent-within", "contact", "cors-origin", "data", "deadline", "debit",
    "delta", "describe", "description", "epsilon", "epsilon-cap", "ether", "field",
    "from-block", "governor", "head-ttl", "hi",
    "host", "install-completion", "json", "kdf", "key-file", "keystore", "license",
    "limit", "listing", "lo", "market", "max-block-range", "max-lag", "max-pending-age",
    "max-price", "max-tail", "metadata-uri", "min-contributors", "n", "no-seal", "node-key",
    "node-passphrase-file", "of", "once",
    "out", "owner", "passphrase-file", "period", "periods", "phase", "policy", "poll-interval",
    "port", "price", "purpose", "purpose-file", "requester", "reshare-delay", "retention",
    "roster", "round-seconds", "rpc", "scale", "schema", "show-completion", "stat", "state",
    "store", "t", "tag", "terms", "terms-file",
    "timeout", "title", "trusted-dealer", "url", "urls", "version",
})


@functools.cache
def _registered(module_name: str) -> dict[str, _click.Command]:
    """The commands a module's `register(app)` adds (imported and built once a process)."""
    module = importlib.import_module(module_name)
    holder = typer.Typer()
    module.register(holder)
    return dict(typer.main.get_group(holder).commands)


class _LazyCommands(MutableMapping[str, _click.Command]):
    """The root's `commands`: names from the table, commands loaded on first lookup."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.entries = {entry.name: entry for entry in entries}
        self.loaded: dict[str, _click.Command] = {}

    def __getitem__(self, name: str) -> _click.Command:
        if name not in self.loaded:
            self.loaded[name] = self.entries[name].load()  # KeyError: no such command
        return self.loaded[name]

    def __setitem__(self, name: str, command: _click.Command) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self.entries.pop(name, None)
        del self.loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self.entries, *self.loaded]))

    def __len__(self) -> int:
        return len(set(self.entries) | set(self.loaded))


class LazyRootGroup(TyperGroup):
    """typer's group with `COMMANDS` as its sub-commands, each module imported only when
    needed; its own `--help` lists them from the table alone."""

    def __init__(self, **attrs: Any) -> None:
        given = attrs.pop("commands", None) or {}
        super().__init__(**attrs)
        self.lazy = _LazyCommands(COMMANDS)
        self.lazy.update(given if isinstance(given, dict) else {c.name: c for c in given})
        self.commands = self.lazy
        self._listing = False

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return list(self.lazy)

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        entry = self.lazy.entries.get(cmd_name)
        if self._listing and entry is not None and cmd_name not in self.lazy.loaded:
            return TyperCommand(cmd_name, help=entry.help)  # for the listing only
        return self.lazy.get(cmd_name)

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def all_option_keys(self, ctx: _click.Context) -> set[str]:
        """Every long option name in the whole tree (imports every command module)."""
        keys = option_keys(self)
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None:
                keys |= option_keys(command)
        return keys


app = typer.Typer(
    name="datadebit",
    cls=LazyRootGroup,
    help="datadebit: a blockchain-anchored data marketplace with encrypted off-chain storage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(ctx: typer.Context, config: ConfigOption = None) -> None:
    """datadebit: a blockchain-anchored data marketplace with encrypted off-chain storage.

    Options come from flags, then $DATADEBIT_* variables, then the --config file.
    """
    if config is not None and ctx.invoked_subcommand is not None:
        with cli_errors():
            ctx.default_map = config_defaults(ctx, ctx.invoked_subcommand, config)


def config_defaults(ctx: typer.Context, name: str, source: Any) -> dict[str, Any]:
    """The `default_map` for running `name` with the config file `source`: built from
    that command's tree only, so no other command module is imported."""
    group = ctx.command
    assert isinstance(group, LazyRootGroup)
    command = group.get_command(ctx, name)
    settings = load_config_file(source)

    def known_elsewhere(keys: set[str]) -> set[str]:
        if keys <= CONFIG_KEYS:
            return keys
        return keys & group.all_option_keys(ctx)

    return {name: default_map(command, settings, source, known_elsewhere=known_elsewhere)}


def register(holder: typer.Typer) -> None:
    """This module's own command (`Entry` "demo")."""
    holder.command("demo")(demo)


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
