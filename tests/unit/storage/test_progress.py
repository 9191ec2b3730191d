"""Progress counters: they see every byte's count exactly once, and never the bytes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.envelope import ciphertext_size, decrypt_file, encrypt_file
from storage.errors import StorageError
from storage.keys import DataKey
from storage.progress import ProgressReader, reporting


@settings(max_examples=25, deadline=None)
@given(size=st.integers(0, 3 * 4096 + 5), chunk=st.sampled_from([1, 7, 4096]))
def test_progress_reader_reports_exactly_what_was_read(size: int, chunk: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    counts: list[int] = []
    reader = ProgressReader(io.BytesIO(data[:size]), counts.append)
    read = b"".join(iter(lambda: reader.read(chunk), b""))
    assert read == data[:size]
    assert sum(counts) == size and all(isinstance(c, int) and c > 0 for c in counts)


def test_reporting_passes_pieces_through() -> None:
    counts: list[int] = []
    assert list(reporting([b"ab", b"", b"cde"], counts.append)) == [b"ab", b"", b"cde"]
    assert counts == [2, 0, 3]


def test_encrypt_and_decrypt_file_report_their_whole_input(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x" * 200_000)
    key = DataKey.generate()
    read_plain: list[int] = []
    sealed = encrypt_file(plain, tmp_path / "sealed", key, chunk_size=4096,
                          progress=read_plain.append)
    assert sum(read_plain) == 200_000
    assert sealed.size == ciphertext_size(200_000, 4096)
    read_sealed: list[int] = []
    assert decrypt_file(sealed.path, tmp_path / "out", key, progress=read_sealed.append) == 200_000
    assert sum(read_sealed) == sealed.size
    assert (tmp_path / "out").read_bytes() == plain.read_bytes()


def test_a_failing_decrypt_with_progress_still_writes_nothing(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"y" * 10_000)
    sealed = encrypt_file(plain, tmp_path / "sealed", DataKey.generate())
    with pytest.raises(StorageError):
        decrypt_file(sealed.path, tmp_path / "out", DataKey.generate(), progress=lambda n: None)
    assert not (tmp_path / "out").exists()
