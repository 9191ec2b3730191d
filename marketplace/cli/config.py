"""Shared configuration of the commands that talk to a deployment.

Every option comes from a flag, an environment variable or a TOML config file, in that
order of precedence, then the option's default. The file (`--config FILE` on the root
command, or `$DATADEBIT_CONFIG`) is flat: its keys are long option names without the
dashes in front, e.g.

    rpc = "http://127.0.0.1:8545"
    market = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    store = "store/"                 # a directory (LocalStore) or an http(s) Kubo API URL
    committee = "committee.json"
    keystore = "owner.json"

A key applies to every command that has that option; relative paths in the file are
relative to the file's directory, so a config file can travel with its deployment.
Click does the precedence: the root callback turns the file into `ctx.default_map`,
which click consults after the command line and the environment.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from marketplace.errors import MarketplaceError

if TYPE_CHECKING:  # the chain and store modules are imported by the functions using them
    from eth_typing import ChecksumAddress
    from web3 import Web3

    from marketplace.chain.light import LightMarket
    from marketplace.chain.market import MarketClient
    from marketplace.chain.types import Committee
    from marketplace.committee import PublicCommittee
    from storage.stores.base import ContentStore

CONFIG_ENV = "DATADEBIT_CONFIG"
RPC_ENV = "DATADEBIT_RPC"
MARKET_ENV = "DATADEBIT_MARKET"
STORE_ENV = "DATADEBIT_STORE"
COMMITTEE_ENV = "DATADEBIT_COMMITTEE"
FROM_BLOCK_ENV = "DATADEBIT_FROM_BLOCK"

#: Keys whose values name files or directories (resolved against the file's folder).
_PATH_KEYS = frozenset({"store", "committee", "keystore", "passphrase-file", "node-key", "state"})


class ConfigError(MarketplaceError):
    """A config file that cannot be read, or a setting that is missing or malformed."""


# ---------------------------------------------------------------- options

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar=CONFIG_ENV,
        help="TOML file of option defaults (keys = long option names, e.g. rpc, market).",
        dir_okay=False,
    ),
]
RpcOption = Annotated[
    str | None, typer.Option("--rpc", envvar=RPC_ENV, help="JSON-RPC URL of the chain.")
]
MarketOption = Annotated[
    str | None, typer.Option("--market", envvar=MARKET_ENV, help="Address of the DataMarket.")
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar=STORE_ENV,
        help="Ciphertext store: a directory (LocalStore) or an http(s) Kubo RPC API URL.",
    ),
]
CommitteeOption = Annotated[
    Path | None,
    typer.Option(
        "--committee",
        envvar=COMMITTEE_ENV,
        help="The public committee.json (gateway URLs).",
        dir_okay=False,
    ),
]
FromBlockOption = Annotated[
    int,
    typer.Option(
        "--from-block",
        envvar=FROM_BLOCK_ENV,
        min=0,
        help="First block to read events from (the market's deployment block).",
    ),
]


# ---------------------------------------------------------------- the config file


def load_config_file(path: Path) -> dict[str, Any]:
    """The file's settings, with relative paths made relative to the file's folder."""
    try:
        with Path(path).open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path} does not exist") from e
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    folder = Path(path).resolve().parent
    settings: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict | list):
            raise ConfigError(f"config file {path}: `{key}` must be a plain value, not a table")
        is_path = isinstance(value, str) and key in _PATH_KEYS and not _is_url(value)
        settings[key] = str(folder / value) if is_path else value
    return settings


def default_map(
    command: object,
    settings: dict[str, Any],
    source: Path,
    *,
    known_elsewhere: Callable[[set[str]], set[str]] | None = None,
) -> dict[str, Any]:
    """Click's nested `default_map` for `command` and all its sub-commands, from flat
    settings; a key no command knows is refused (a typo would otherwise be ignored).
    `known_elsewhere(keys)`: which of the keys `command` does not use other commands know
    (the lazy root builds the map of the invoked command only).

    Duck-typed over `params`/`opts`/`commands`: typer ships its own copy of click.
    """
    used: set[str] = set()

    def build(cmd: object) -> dict[str, Any]:
        mapping: dict[str, Any] = {}
        for param in getattr(cmd, "params", ()):
            if getattr(param, "param_type_name", None) != "option" or param.name is None:
                continue
            for opt in param.opts:
                key = opt.removeprefix("--")
                if opt.startswith("--") and key in settings:
                    value = settings[key]
                    # a repeatable option from a plain value (the file holds no lists)
                    multiple = getattr(param, "multiple", False) and isinstance(value, str)
                    mapping[param.name] = [value] if multiple else value
                    used.add(key)
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            mapping[name] = build(sub)
        return mapping

    mapping = build(command)
    unknown = set(settings) - used
    if unknown and known_elsewhere is not None:
        unknown -= known_elsewhere(unknown)
    if unknown:
        raise ConfigError(
            f"config file {source}: no command has an option {', '.join(sorted(unknown))}"
        )
    return mapping


def option_keys(command: object) -> set[str]:
    """The long option names (without `--`) of `command` and all its sub-commands."""
    keys = {
        opt.removeprefix("--")
        for param in getattr(command, "params", ())
        if getattr(param, "param_type_name", None) == "option"
        for opt in param.opts
        if opt.startswith("--")
    }
    for sub in (getattr(command, "commands", None) or {}).values():
        keys |= option_keys(sub)
    return keys


def _is_url(value: str) -> bool:
    return "://" in value


# ---------------------------------------------------------------- resolving settings


def require(value: str | None, flag: str, env: str) -> str:
    """A setting that must be there, with the three ways to give it in the error."""
    if value is None or not value.strip():
        key = flag.removeprefix("--")
        raise ConfigError(f"no {flag} given: use {flag}, ${env} or `{key} = ...` in the config")
    return value.strip()


def parse_address(value: str, what: str) -> ChecksumAddress:
    """`value` as a checksummed address, or a ConfigError naming the option."""
    from eth_utils.address import is_address, to_checksum_address  # noqa: PLC0415

    if not is_address(value):
        raise ConfigError(f"{what} {value!r} is not an Ethereum address")
    return to_checksum_address(value)


def open_chain(rpc: str | None) -> Web3:
    """A connection to the chain at `rpc`; raises `ChainUnavailable` if it does not answer."""
    from marketplace.chain.provider import connect  # noqa: PLC0415 - web3: not for --help

    return connect(require(rpc, "--rpc", RPC_ENV))


def open_market(rpc: str | None, market: str | None) -> MarketClient:
    """The market at `market` on the chain at `rpc`, checked to have code there."""
    from marketplace.chain.market import MarketClient, translated_errors  # noqa: PLC0415
    from marketplace.chain.provider import endpoint_name  # noqa: PLC0415
    from marketplace.chain.reverts import RevertDecoder  # noqa: PLC0415

    address = parse_address(require(market, "--market", MARKET_ENV), "--market")
    w3 = open_chain(rpc)
    client = MarketClient(w3, address)
    with translated_errors(RevertDecoder(client.artifact.abi), endpoint_name(w3)):
        code = w3.eth.get_code(client.address)
    if not code:
        raise ConfigError(
            f"no contract at {client.address} on chain {client.chain_id} "
            f"({endpoint_name(w3)}): wrong --market?"
        )
    return client


def open_light_market(rpc: str | None, market: str | None) -> LightMarket:
    """`open_market` for commands that only read (`buyer status`): the same checks and
    errors, over bare JSON-RPC without importing web3 (~0.7 s of start-up)."""
    from marketplace.chain.light import LightMarket  # noqa: PLC0415

    address = parse_address(require(market, "--market", MARKET_ENV), "--market")
    client = LightMarket(require(rpc, "--rpc", RPC_ENV), address)
    if not client.has_code():
        raise ConfigError(
            f"no contract at {client.address} on chain {client.chain_id()} "
            f"({client.endpoint}): wrong --market?"
        )
    return client


def open_store(spec: str | None, *, existing: bool = False) -> ContentStore:
    """`LocalStore(dir)` for a path, `IpfsStore(url)` for an http(s) Kubo RPC API URL.

    `existing`: the directory must already exist (for readers that must not create an
    empty store on a typo, like the auditor)."""
    from storage.stores.ipfs import IpfsStore  # noqa: PLC0415 - httpx: not for --help
    from storage.stores.local import LocalStore  # noqa: PLC0415

    value = require(spec, "--store", STORE_ENV)
    if _is_url(value):
        scheme = value.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise ConfigError(
                f"--store: unsupported URL scheme {scheme}:// (use a directory or an "
                "http(s) Kubo RPC API URL)"
            )
        return IpfsStore(value)
    path = Path(value).expanduser()
    if (existing or path.exists()) and not path.is_dir():
        raise ConfigError(f"--store {path} is not a directory")
    return LocalStore(path)


def read_committee(path: Path | None) -> PublicCommittee:
    """The public committee file named by --committee."""
    from marketplace.committee import read_public_committee  # noqa: PLC0415 - eth_account

    if path is None:
        raise ConfigError(
            f"no --committee given: use --committee, ${COMMITTEE_ENV} or `committee = ...` "
            "in the config"
        )
    return read_public_committee(path)


def check_committee_matches(public: PublicCommittee, deployed: Committee, path: Path) -> None:
    """Refuse a committee file that is not the market's committee (keys and nodes)."""
    same = (
        public.committee_key.to_bytes() == deployed.committee_key
        and public.threshold == deployed.threshold
        and tuple(n.address for n in public.nodes) == deployed.nodes
        and tuple(n.share_key.to_bytes() for n in public.nodes) == deployed.share_keys
    )
    if not same:
        raise ConfigError(f"committee file {path} is not the committee of this market")

