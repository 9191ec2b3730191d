"""The lazy root command: `--help` and `cid` import no chain or server library, and the
static table (`COMMANDS`, `CONFIG_KEYS`) says what the command modules really register.

Not timed (scripts/bench_cli.py measures start-up): the tests check which modules a fresh
interpreter has loaded after running the command, which is what the time depends on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from marketplace.cli import main as cli_main
from marketplace.cli.main import COMMANDS, CONFIG_KEYS, LazyRootGroup, app
from storage.unixfs import file_cid
from tests.cli.conftest import Deployment, deploy_market, invoke

#: Libraries the fast paths must not load (each costs 0.1-0.7 s to import).
HEAVY = ("web3", "eth_account", "eth_tester", "eth_keyfile", "fastapi", "uvicorn", "py_ecc")

_PROBE = """
import json, sys
from marketplace.cli.main import main
args, watched = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["datadebit", *args]
try:
    main()
except SystemExit as e:
    code = e.code
else:
    code = 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in watched)
print("\\n" + json.dumps({"code": code, "heavy": heavy}))
"""


def run_fresh(*args: str) -> tuple[str, dict[str, object]]:
    """Run the CLI's main in a new interpreter; (its output, its exit code and the heavy
    modules it had loaded)."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True, text=True, check=True, timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    output, _, last = done.stdout.rstrip("\n").rpartition("\n")
    return output, json.loads(last)


def test_help_imports_no_chain_or_server_library() -> None:
    """Failed before the lazy root: `--help` imported every command module, hence web3,
    eth_account and eth_keyfile/py_ecc (about 1 s)."""
    output, seen = run_fresh("--help")
    assert seen == {"code": 0, "heavy": []}
    for entry in COMMANDS:
        assert entry.name in output


def test_cid_imports_no_chain_or_server_library(tmp_path: Path) -> None:
    """Failed before the lazy root (config.py and every command module were imported)."""
    path = tmp_path / "small.csv"
    path.write_bytes(b"t,pm25\n2026-01-01T00:00:00Z,12.5\n")
    output, seen = run_fresh("cid", str(path))
    assert seen == {"code": 0, "heavy": []}
    assert output.strip() == file_cid(path).text


def test_market_search_imports_no_chain_library() -> None:
    """`market search` talks HTTP to a catalog (here none answers): no web3 on its path."""
    _, seen = run_fresh("market", "search", "air", "--catalog", "http://127.0.0.1:9")
    assert seen == {"code": 1, "heavy": []}


def test_a_chain_command_still_loads_its_module() -> None:
    """The probe can see heavy imports: `buyer cancel` opens the market through web3."""
    _, seen = run_fresh("buyer", "cancel", "1", "--rpc", "http://127.0.0.1:9",
                        "--market", "0x" + "11" * 20)
    assert seen["code"] == 1
    assert "web3" in seen["heavy"]  # type: ignore[operator]


@pytest.fixture(scope="module")
def one_debit(anvil_url: str, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """A market on anvil with one listing and one debit of the deployment's buyer."""
    deployment = deploy_market(anvil_url, tmp_path_factory.mktemp("startup"), serve=False)
    market = deployment.market
    listing = market.create_listing(deployment.owner, price_per_period=10, period_seconds=60,
                                    auto_approve=True).value
    market.request_debit(deployment.buyer, listing, periods=1, buyer_key=bytes(31) + b"\x01")
    return deployment


def test_buyer_status_reads_the_chain_without_web3(one_debit: Deployment) -> None:
    """Failed before the web3-free read path: `buyer status` imported web3, eth_account and
    eth_keyfile/py_ecc (0.7-0.9 s, over its 0.6 s budget). eth_abi is allowed."""
    market = one_debit.market
    output, seen = run_fresh("buyer", "status", "--rpc", one_debit.rpc, "--market",
                             market.address, "--buyer", one_debit.buyer.address, "--json")
    assert seen == {"code": 0, "heavy": []}
    records = json.loads(output)
    assert [r["debit"] for r in records] == market.debit_ids_requested_by(one_debit.buyer.address)
    assert records[0]["buyer"] == one_debit.buyer.address


def test_buyer_status_of_a_private_key_needs_no_eth_account(
    one_debit: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$DATADEBIT_PRIVATE_KEY's address is computed without eth_account (same address)."""
    monkeypatch.setenv("DATADEBIT_PRIVATE_KEY", one_debit.buyer.key.hex())
    output, seen = run_fresh("buyer", "status", "--rpc", one_debit.rpc, "--market",
                             one_debit.market.address, "--json")
    assert seen == {"code": 0, "heavy": []}
    assert {r["buyer"] for r in json.loads(output)} == {one_debit.buyer.address}


def test_table_matches_what_the_modules_register() -> None:
    """Every table entry is registered by its module with the help the table shows, and
    every command a listed module registers is in the table."""
    names = [entry.name for entry in COMMANDS]
    assert len(names) == len(set(names))
    for entry in COMMANDS:
        command = entry.load()
        first_paragraph = (command.help or "").split("\n\n")[0].strip()
        assert " ".join(first_paragraph.split()) == entry.help, entry.name
        registered = set(cli_main._registered(entry.module))
        assert registered <= set(names), f"{entry.module} registers {registered - set(names)}"


def test_config_keys_are_the_long_options_of_the_whole_tree() -> None:
    """CONFIG_KEYS lets a command accept a config key that only other commands use without
    importing them; it must equal the tree's option names (else edit main.CONFIG_KEYS)."""
    group = typer.main.get_command(app)
    assert isinstance(group, LazyRootGroup)
    ctx = group.make_context("datadebit", ["cid", "x"], resilient_parsing=True)
    keys = group.all_option_keys(ctx)
    assert not keys - CONFIG_KEYS, f"add to CONFIG_KEYS: {sorted(keys - CONFIG_KEYS)}"
    assert not CONFIG_KEYS - keys, f"remove from CONFIG_KEYS: {sorted(CONFIG_KEYS - keys)}"


def test_lazy_help_is_the_eager_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing from the table reads exactly as the one from the loaded commands."""
    lazy = invoke("--help")

    def real(self: LazyRootGroup, ctx: object, name: str) -> object:
        return self.lazy.get(name)

    monkeypatch.setattr(LazyRootGroup, "get_command", real)
    eager = invoke("--help")
    assert lazy.exit_code == eager.exit_code == 0
    assert lazy.stdout == eager.stdout


def test_config_key_of_another_command_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cid` has no --rpc or --keystore, a shared config file has: accepted as before,
    through CONFIG_KEYS or (when that is stale) the full tree."""
    config = tmp_path / "datadebit.toml"
    config.write_text('rpc = "http://127.0.0.1:1"\nkeystore = "owner.json"\n')
    path = tmp_path / "f"
    path.write_bytes(b"x")
    result = invoke("--config", config, "cid", path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == file_cid(path).text
    monkeypatch.setattr(cli_main, "CONFIG_KEYS", frozenset())
    result = invoke("--config", config, "cid", path)
    assert result.exit_code == 0, result.stderr


def test_config_typo_is_refused_for_any_command(tmp_path: Path) -> None:
    config = tmp_path / "datadebit.toml"
    config.write_text('rcp = "http://127.0.0.1:1"\n')
    path = tmp_path / "f"
    path.write_bytes(b"x")
    result = invoke("--config", config, "cid", path)
    assert result.exit_code == 1
    assert result.stderr == f"error: config file {config}: no command has an option rcp\n"


def test_unknown_command_is_refused_with_a_suggestion() -> None:
    result = invoke("ownr")
    assert result.exit_code == 2
    assert "No such command 'ownr'" in result.stderr
    assert "'owner'" in result.stderr
