"""`gateway serve` will not act on unconfirmed blocks of a real chain unless told to."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from marketplace.cli import gateway_commands
from tests.cli.conftest import invoke


def _chain(chain_id: int) -> SimpleNamespace:
    return SimpleNamespace(eth=SimpleNamespace(chain_id=chain_id))


@pytest.mark.parametrize("chain_id", [1, 10, 8453, 11155111])
def test_zero_confirmations_on_a_real_chain_is_refused(
    chain_id: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_commands, "connect", lambda _url: _chain(chain_id))
    monkeypatch.setattr(gateway_commands, "read_passphrase", lambda *_a, **_k: "pw")
    result = invoke(
        "gateway", "serve", "--node-key", tmp_path / "node.json", "--rpc", "http://x",
        "--market", "0x" + "11" * 20,
    )
    assert result.exit_code == 1
    assert f"chain {chain_id} is not a development chain" in result.output
    assert "--confirmations" in result.output


def test_zero_confirmations_passes_the_check_on_a_dev_chain_or_when_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the check, the missing key file is the next error: the check let it through."""
    monkeypatch.setattr(gateway_commands, "read_passphrase", lambda *_a, **_k: "pw")
    for chain_id, extra in ((31337, []), (1, ["--allow-zero-confirmations"])):
        monkeypatch.setattr(gateway_commands, "connect", lambda _url, c=chain_id: _chain(c))
        result = invoke(
            "gateway", "serve", "--node-key", tmp_path / "missing.json", "--rpc", "http://x",
            "--market", "0x" + "11" * 20, *extra,
        )
        assert result.exit_code == 1
        assert "not a development chain" not in result.output
        assert "missing.json: cannot be read" in result.output
