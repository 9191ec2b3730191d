"""Data-key files: created private, read strictly, never echoed in errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from storage.errors import KeyFileError
from storage.keyfile import create_key_file, load_or_create_key_file, read_key_file
from storage.keys import DataKey


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_then_read(tmp_path: Path) -> None:
    path = tmp_path / "dek"
    key = create_key_file(path)
    assert mode(path) == 0o600
    assert path.read_text() == key.to_secret_bytes().hex() + "\n"
    assert read_key_file(path) == key


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "dek"
    path.write_text("keep me")
    with pytest.raises(KeyFileError, match="already exists"):
        create_key_file(path)
    assert path.read_text() == "keep me"


def test_load_or_create(tmp_path: Path) -> None:
    path = tmp_path / "dek"
    key, created = load_or_create_key_file(path)
    assert created
    again, created_again = load_or_create_key_file(path)
    assert (again, created_again) == (key, False)


def test_openssl_rand_hex_format_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "dek"
    path.write_text("AB" * 32 + "\n")
    path.chmod(0o600)
    assert read_key_file(path) == DataKey(b"\xab" * 32)


@pytest.mark.parametrize(
    ("text", "reason"),
    [("zz" * 32, "hex"), ("ab" * 31, "31 bytes"), ("", "0 bytes"), ("ab" * 33, "33 bytes")],
)
def test_bad_content(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "dek"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=reason) as info:
        read_key_file(path)
    assert text not in str(info.value) or not text


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o644])
def test_files_others_can_read_are_refused(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "dek"
    key = create_key_file(path)
    path.chmod(loose)
    with pytest.raises(KeyFileError, match="chmod 600") as info:
        read_key_file(path)
    assert key.to_secret_bytes().hex() not in str(info.value)


def test_missing(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        read_key_file(tmp_path / "nope")


def test_create_in_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot be created"):
        create_key_file(tmp_path / "no" / "dek")
