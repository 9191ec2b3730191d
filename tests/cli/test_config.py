"""Configuration precedence (flag > env > file > default), the config file, store choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.cli.config import ConfigError, open_store
from storage.stores.ipfs import IpfsStore
from storage.stores.local import LocalStore
from tests.cli.conftest import PASSPHRASE, invoke, make_keystore

MARKET = "0x" + "11" * 20


def _dead_rpc(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def test_rpc_flag_beats_env_beats_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'rpc = "{_dead_rpc(3)}"\nmarket = "{MARKET}"\n')
    env = {"DATADEBIT_RPC": _dead_rpc(2), "DATADEBIT_MARKET": MARKET}

    from_file = invoke("--config", config, "buyer", "status", "--buyer", MARKET)
    assert from_file.stderr == (
        "error: chain node http://127.0.0.1:3 is unavailable: ConnectionError\n"
    )
    from_env = invoke("--config", config, "buyer", "status", "--buyer", MARKET, env=env)
    assert "http://127.0.0.1:2 " in from_env.stderr
    from_flag = invoke(
        "--config", config, "buyer", "status", "--buyer", MARKET, "--rpc", _dead_rpc(1), env=env
    )
    assert "http://127.0.0.1:1 " in from_flag.stderr
    assert from_flag.exit_code == 1


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'rpc = "{_dead_rpc(4)}"\nmarket = "{MARKET}"\n')
    result = invoke("buyer", "status", "--buyer", MARKET, env={"DATADEBIT_CONFIG": str(config)})
    assert result.exit_code == 1 and "http://127.0.0.1:4 " in result.stderr


def test_keystore_flag_beats_env_beats_file_with_relative_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    in_file = make_keystore(tmp_path / "sub" / "file.json")
    in_env = make_keystore(tmp_path / "env.json")
    on_flag = make_keystore(tmp_path / "flag.json")
    config = tmp_path / "sub" / "c.toml"
    config.write_text('keystore = "file.json"\n')  # relative to the config file's folder
    env = {"DATADEBIT_KEYSTORE_PASSPHRASE": PASSPHRASE}

    assert invoke("--config", config, "wallet", "address", env=env).stdout.strip() == (
        in_file.address
    )
    env_keystore = {**env, "DATADEBIT_KEYSTORE": str(tmp_path / "env.json")}
    assert invoke("--config", config, "wallet", "address", env=env_keystore).stdout.strip() == (
        in_env.address
    )
    flagged = invoke(
        "--config", config, "wallet", "address", "--keystore", tmp_path / "flag.json",
        env=env_keystore,
    )
    assert flagged.stdout.strip() == on_flag.address


def test_unknown_config_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('rcp = "http://127.0.0.1:8545"\n')
    result = invoke("--config", config, "wallet", "address")
    assert result.exit_code == 1
    assert result.stderr == f"error: config file {config}: no command has an option rcp\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("rpc = ", "is not valid TOML"),
        ("[owner]\nrpc = 'x'\n", "`owner` must be a plain value, not a table"),
    ],
)
def test_malformed_config_file(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(content)
    result = invoke("--config", config, "wallet", "address")
    assert result.exit_code == 1 and message in result.stderr
    assert result.stderr.startswith("error: config file ")


def test_missing_config_file(tmp_path: Path) -> None:
    result = invoke("--config", tmp_path / "nope.toml", "wallet", "address")
    assert result.exit_code == 1
    assert result.stderr == f"error: config file {tmp_path / 'nope.toml'} does not exist\n"


def test_missing_settings_name_all_three_sources() -> None:
    result = invoke("buyer", "status", "--buyer", MARKET)
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no --market given: use --market, $DATADEBIT_MARKET or `market = ...` in the "
        "config\n"
    )
    no_rpc = invoke("buyer", "status", "--buyer", MARKET, "--market", MARKET)
    assert "no --rpc given" in no_rpc.stderr


def test_malformed_market_address() -> None:
    result = invoke("buyer", "status", "--market", "0x1234", "--rpc", _dead_rpc(1))
    assert result.exit_code == 1
    assert result.stderr == "error: --market '0x1234' is not an Ethereum address\n"


def test_rpc_with_credentials_is_redacted_when_down() -> None:
    result = invoke(
        "buyer", "status", "--buyer", MARKET, "--market", MARKET,
        "--rpc", "http://user:secret@127.0.0.1:1/v3/apikey123",
    )
    assert result.exit_code == 1
    assert "http://127.0.0.1:1" in result.stderr
    assert "secret" not in result.stderr and "apikey123" not in result.stderr


def test_store_is_a_directory_or_an_http_url(tmp_path: Path) -> None:
    local = open_store(str(tmp_path / "blocks"))
    assert isinstance(local, LocalStore) and local.root == tmp_path / "blocks"
    ipfs = open_store("http://127.0.0.1:5001")
    assert isinstance(ipfs, IpfsStore) and ipfs.url == "http://127.0.0.1:5001"
    ipfs.close()
    with pytest.raises(ConfigError, match="unsupported URL scheme ftp://"):
        open_store("ftp://example.org/store")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        open_store(str(a_file))
    with pytest.raises(ConfigError, match="is not a directory"):
        open_store(str(tmp_path / "typo"), existing=True)  # a reader must not create it
    assert not (tmp_path / "typo").exists()
    with pytest.raises(ConfigError, match="no --store given"):
        open_store(None)


def test_store_in_config_file_is_relative_to_it_unless_a_url(tmp_path: Path) -> None:
    from marketplace.cli.config import load_config_file  # noqa: PLC0415

    config = tmp_path / "c.toml"
    config.write_text('store = "blocks"\ncommittee = "/abs/committee.json"\n')
    settings = load_config_file(config)
    assert settings["store"] == str(tmp_path.resolve() / "blocks")
    assert settings["committee"] == "/abs/committee.json"
    config.write_text('store = "http://127.0.0.1:5001"\n')
    assert load_config_file(config)["store"] == "http://127.0.0.1:5001"
