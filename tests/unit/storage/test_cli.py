"""`datadebit cid` and `datadebit envelope ...`: outputs, and one-line failures with no OUT file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from marketplace.cli.main import app as main_app
from marketplace.cli.storage_commands import register
from storage.envelope import HEADER_SIZE
from storage.unixfs import file_cid

HELLO_CID = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    return app


def run(app: typer.Typer, *args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, stdout: str, stderr: str, needle: str) -> None:
    assert code == 1
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and needle in lines[0], stderr


def test_registered_on_the_real_app() -> None:
    code, stdout, _ = run(main_app, "envelope", "--help")
    assert code == 0 and "encrypt" in stdout and "decrypt" in stdout
    code, stdout, _ = run(main_app, "cid", "--help")
    assert code == 0


def test_cid(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello world\n")
    assert run(app, "cid", path) == (0, HELLO_CID + "\n", "")


def test_cid_of_a_missing_file(app: typer.Typer, tmp_path: Path) -> None:
    assert_one_line_error(*run(app, "cid", tmp_path / "nope"), "No such file")


def test_encrypt_creates_a_private_key_file_then_decrypt_round_trips(
    app: typer.Typer, tmp_path: Path
) -> None:
    plain, env, back, key = (tmp_path / n for n in ("plain", "env", "back", "dek"))
    plain.write_bytes(b"secret rows\n" * 100_000)
    code, stdout, stderr = run(app, "envelope", "encrypt", plain, env, "--key-file", key)
    assert code == 0, stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stdout == file_cid(env).text + "\n"
    assert "created key file" in stderr
    assert key.read_text().strip() not in stdout + stderr
    assert run(app, "envelope", "decrypt", env, back, "--key-file", key)[0] == 0
    assert back.read_bytes() == plain.read_bytes()


def test_encrypt_reuses_an_existing_key_file(app: typer.Typer, tmp_path: Path) -> None:
    plain, key = tmp_path / "plain", tmp_path / "dek"
    plain.write_bytes(b"x")
    run(app, "envelope", "encrypt", plain, tmp_path / "a", "--key-file", key)
    before = key.read_text()
    code, _, stderr = run(app, "envelope", "encrypt", plain, tmp_path / "b", "--key-file", key)
    assert code == 0 and stderr == ""
    assert key.read_text() == before
    code, _, _ = run(app, "envelope", "decrypt", tmp_path / "b", tmp_path / "c", "--key-file", key)
    assert code == 0 and (tmp_path / "c").read_bytes() == b"x"


def test_encrypt_chunk_size_option(app: typer.Typer, tmp_path: Path) -> None:
    plain, env, key = tmp_path / "plain", tmp_path / "env", tmp_path / "dek"
    plain.write_bytes(bytes(100))
    args = ("envelope", "encrypt", plain, env, "--key-file", key, "--chunk-size", "10")
    assert run(app, *args)[0] == 0
    assert env.stat().st_size == HEADER_SIZE + 100 + 10 * 17


def test_encrypt_of_a_missing_input_creates_nothing(app: typer.Typer, tmp_path: Path) -> None:
    result = run(
        app,
        "envelope",
        "encrypt",
        tmp_path / "nope",
        tmp_path / "env",
        "--key-file",
        tmp_path / "dek",
    )
    assert_one_line_error(*result, "No such file")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def sealed(app: typer.Typer, tmp_path: Path) -> tuple[Path, Path]:
    plain, env, key = tmp_path / "plain", tmp_path / "env", tmp_path / "dek"
    plain.write_bytes(b"row\n" * 1000)
    assert (
        run(app, "envelope", "encrypt", plain, env, "--key-file", key, "--chunk-size", "64")[0] == 0
    )
    plain.unlink()
    return env, key


def damage(env: Path, how: str) -> None:
    data = env.read_bytes()
    if how == "flip":
        env.write_bytes(data[:200] + bytes([data[200] ^ 1]) + data[201:])
    elif how == "truncate":
        env.write_bytes(data[:-30])
    elif how == "garbage":
        env.write_bytes(data + b"!" * 81)
    elif how == "magic":
        env.write_bytes(b"XXXX" + data[4:])
    elif how == "format":
        env.write_bytes(data[:4] + b"\x07" + data[5:])


@pytest.mark.parametrize(
    ("how", "needle"),
    [
        ("flip", "failed authentication"),
        ("truncate", "truncated"),
        ("garbage", "failed authentication"),
        ("magic", "not a datadebit envelope"),
        ("format", "unsupported envelope format version 7"),
    ],
)
def test_decrypt_failures(
    app: typer.Typer, tmp_path: Path, sealed: tuple[Path, Path], how: str, needle: str
) -> None:
    env, key = sealed
    damage(env, how)
    out = tmp_path / "out"
    assert_one_line_error(*run(app, "envelope", "decrypt", env, out, "--key-file", key), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dek", "env"]


def test_decrypt_with_the_wrong_key(
    app: typer.Typer, tmp_path: Path, sealed: tuple[Path, Path]
) -> None:
    env, _ = sealed
    other = tmp_path / "other"
    other.write_text("11" * 32)
    other.chmod(0o600)
    result = run(app, "envelope", "decrypt", env, tmp_path / "out", "--key-file", other)
    assert_one_line_error(*result, "wrong key")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("problem", ["missing", "loose", "garbage"])
def test_decrypt_with_an_unusable_key_file(
    app: typer.Typer, tmp_path: Path, sealed: tuple[Path, Path], problem: str
) -> None:
    env, key = sealed
    secret = key.read_text().strip()
    if problem == "missing":
        key.unlink()
    elif problem == "loose":
        key.chmod(0o644)
    else:
        key.write_text("not hex at all")
    code, stdout, stderr = run(app, "envelope", "decrypt", env, tmp_path / "out", "--key-file", key)
    assert_one_line_error(code, stdout, stderr, "key file")
    assert secret not in stderr
    assert not (tmp_path / "out").exists()


def test_decrypt_of_a_missing_envelope(app: typer.Typer, tmp_path: Path) -> None:
    key = tmp_path / "dek"
    key.write_text("11" * 32)
    key.chmod(0o600)
    result = run(app, "envelope", "decrypt", tmp_path / "nope", tmp_path / "out", "--key-file", key)
    assert_one_line_error(*result, "No such file")
    assert not (tmp_path / "out").exists()


def test_decrypt_into_a_missing_directory(
    app: typer.Typer, tmp_path: Path, sealed: tuple[Path, Path]
) -> None:
    env, key = sealed
    result = run(app, "envelope", "decrypt", env, tmp_path / "no" / "out", "--key-file", key)
    assert_one_line_error(*result, "No such file")
