"""What importing the application layer and the owner/buyer CLI modules costs: the CLI
imports a flow's modules only when that command runs (start-up budget, DESIGN §8), and
`marketplace.app.units` (what every price/period option parses with) imports no chain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def loaded_after(statement: str, names: list[str]) -> list[str]:
    probe = f"import sys\n{statement}\nprint(' '.join(n for n in {names!r} if n in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout.split()


def test_units_and_the_package_import_no_chain_or_documents() -> None:
    heavy = ["web3", "eth_account", "pydantic", "marketplace.documents", "nacl"]
    assert loaded_after("import marketplace.app, marketplace.app.units", heavy) == []


def test_the_cli_modules_defer_the_flows_until_a_command_runs() -> None:
    flows = ["marketplace.app.owner", "marketplace.app.buyer", "marketplace.documents",
             "marketplace.keyclient", "httpx"]
    statement = "import marketplace.cli.owner_commands, marketplace.cli.buyer_commands"
    assert loaded_after(statement, flows) == []


def test_the_fetch_timeout_default_is_the_key_clients() -> None:
    from marketplace.cli import buyer_commands  # noqa: PLC0415
    from marketplace.keyclient import DEFAULT_TIMEOUT  # noqa: PLC0415

    assert buyer_commands.DEFAULT_TIMEOUT == DEFAULT_TIMEOUT
