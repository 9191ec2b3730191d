"""Wallet sources (keystore + passphrase file / env / prompt, env private key) and
`datadebit wallet new|address`; secrets never appear in any output."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from marketplace.wallet import WalletError, from_keystore, from_private_key
from tests.cli.conftest import PASSPHRASE, invoke, make_keystore


def _outputs(result: object) -> str:
    return f"{result.stdout}{result.stderr}"  # type: ignore[attr-defined]


def test_keystore_with_passphrase_from_file_env_and_prompt(tmp_path: Path) -> None:
    account = make_keystore(tmp_path / "k.json")
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE + "\n")  # one trailing newline is not part of it

    by_file = invoke("wallet", "address", "--keystore", tmp_path / "k.json",
                     "--passphrase-file", pass_file)
    assert by_file.exit_code == 0 and by_file.stdout == f"{account.address}\n"
    by_env = invoke("wallet", "address", "--keystore", tmp_path / "k.json",
                    env={"DATADEBIT_KEYSTORE_PASSPHRASE": PASSPHRASE})
    assert by_env.stdout == f"{account.address}\n"
    by_prompt = invoke("wallet", "address", "--keystore", tmp_path / "k.json",
                       input=PASSPHRASE + "\n")
    assert by_prompt.exit_code == 0
    # (the test runner echoes the hidden input's newline to stdout; a terminal does not)
    assert by_prompt.stdout.split() == [account.address]
    assert PASSPHRASE not in _outputs(by_prompt)  # hidden input is not echoed


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    make_keystore(tmp_path / "k.json")
    result = invoke("wallet", "address", "--keystore", tmp_path / "k.json",
                    env={"DATADEBIT_KEYSTORE_PASSPHRASE": "not it"})
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: keystore {tmp_path / 'k.json'}: wrong passphrase (it does not decrypt)\n"
    )
    assert "not it" not in result.stderr


def test_private_key_from_environment() -> None:
    account = Account.create()
    key = "0x" + bytes(account.key).hex()
    result = invoke("wallet", "address", env={"DATADEBIT_PRIVATE_KEY": key})
    assert result.exit_code == 0 and result.stdout == f"{account.address}\n"
    assert key[2:] not in _outputs(result)
    bare = invoke("wallet", "address", env={"DATADEBIT_PRIVATE_KEY": key[2:]})
    assert bare.stdout == f"{account.address}\n"


def test_keystore_wins_over_private_key(tmp_path: Path) -> None:
    stored = make_keystore(tmp_path / "k.json")
    other = Account.create()
    result = invoke("wallet", "address", "--keystore", tmp_path / "k.json", env={
        "DATADEBIT_PRIVATE_KEY": "0x" + bytes(other.key).hex(),
        "DATADEBIT_KEYSTORE_PASSPHRASE": PASSPHRASE,
    })
    assert result.stdout == f"{stored.address}\n"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("0x1234", "error: $DATADEBIT_PRIVATE_KEY is not a private key (expected 32 bytes of hex)"),
        ("zz" * 32, "error: $DATADEBIT_PRIVATE_KEY is not a valid private key"),
        ("0x" + "00" * 32, "error: $DATADEBIT_PRIVATE_KEY is not a valid private key"),
        ("0x" + "ff" * 32, "error: $DATADEBIT_PRIVATE_KEY is not a valid private key"),
    ],
)
def test_malformed_private_key_is_not_echoed(key: str, message: str) -> None:
    result = invoke("wallet", "address", env={"DATADEBIT_PRIVATE_KEY": key})
    assert result.exit_code == 1
    assert result.stderr == message + "\n"
    assert key.removeprefix("0x") not in _outputs(result)


def test_no_wallet_at_all() -> None:
    result = invoke("wallet", "address")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no wallet: give --keystore FILE")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("not json", "is not JSON"),
        ('{"address": "x"}', "is not an encrypted Ethereum keystore"),
        ('{"crypto": {}, "version": 3}', "is malformed"),
    ],
)
def test_bad_keystore_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "k.json"
    if content is not None:
        path.write_text(content)
    result = invoke("wallet", "address", "--keystore", path,
                    env={"DATADEBIT_KEYSTORE_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: keystore {path}") and message in result.stderr


def test_wallet_new_writes_a_private_keystore_and_prints_only_the_address(tmp_path: Path) -> None:
    out = tmp_path / "new.json"
    result = invoke("wallet", "new", "--out", out, "--kdf", "interactive",
                    env={"DATADEBIT_KEYSTORE_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 0, result.stderr
    address = result.stdout.strip()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    account = from_keystore(out, PASSPHRASE)
    assert account.address == address
    assert bytes(account.key).hex() not in _outputs(result)
    assert json.loads(out.read_text())["crypto"]["kdf"] == "scrypt"

    again = invoke("wallet", "new", "--out", out, "--kdf", "interactive",
                   env={"DATADEBIT_KEYSTORE_PASSPHRASE": PASSPHRASE})
    assert again.exit_code == 1
    assert again.stderr == f"error: refusing to overwrite {out}\n"
    assert from_keystore(out, PASSPHRASE).address == address  # untouched


def test_wallet_new_prompts_twice(tmp_path: Path) -> None:
    out = tmp_path / "new.json"
    result = invoke("wallet", "new", "--out", out, "--kdf", "interactive",
                    input="pass one\npass one\n")
    assert result.exit_code == 0, result.stderr
    assert from_keystore(out, "pass one").address == result.stdout.strip()
    mismatch = invoke("wallet", "new", "--out", tmp_path / "b.json", "--kdf", "interactive",
                      input="pass one\npass two\npass two\npass two\n")
    assert mismatch.exit_code == 0
    assert from_keystore(tmp_path / "b.json", "pass two").address == mismatch.stdout.strip()


def test_from_private_key_names_the_source_only() -> None:
    with pytest.raises(WalletError, match=r"^somewhere is not a private key"):
        from_private_key("abc", "somewhere")
