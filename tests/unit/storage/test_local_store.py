"""LocalStore: the shared store suite, plus what only a block directory can show."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from storage.errors import BlockCorrupted, ContentNotFound
from storage.stores.local import LocalStore
from storage.unixfs import CHUNK_SIZE, decode_file_node
from tests.unit.storage.store_suite import StoreSuite


class TestLocalStore(StoreSuite):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        return LocalStore(tmp_path / "store", fsync=False)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def block_files(store: LocalStore) -> list[Path]:
    return sorted(p for p in (store.root / "blocks").rglob("*") if p.is_file())


def test_holds_the_blocks_a_daemon_would(store: LocalStore) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 1)
    cid = store.put(io.BytesIO(data))
    files = block_files(store)
    assert len(files) == 5  # four raw leaves and one dag-pb root
    assert {p.name for p in files} >= {cid.text}
    root = decode_file_node(cid, (store.root / "blocks" / cid.text[-2:] / cid.text).read_bytes())
    assert root.blocksizes == (CHUNK_SIZE, CHUNK_SIZE, CHUNK_SIZE, 1)
    assert store.is_pinned(cid)


def test_a_corrupted_block_is_refused_and_get_leaves_no_file(
    store: LocalStore, tmp_path: Path
) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 5)
    cid = store.put(io.BytesIO(data))
    leaf = next(p for p in block_files(store) if p.name != cid.text)
    raw = bytearray(leaf.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    leaf.write_bytes(bytes(raw))
    with pytest.raises(BlockCorrupted) as info:
        b"".join(store.stream(cid))
    assert info.value.cid == leaf.name
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BlockCorrupted):
        store.get(cid, out / "data.bin")
    assert list(out.iterdir()) == []


def test_putting_again_repairs_a_damaged_block(store: LocalStore) -> None:
    data = os.urandom(2 * CHUNK_SIZE)
    cid = store.put(io.BytesIO(data))
    leaf = next(p for p in block_files(store) if p.name != cid.text)
    leaf.write_bytes(b"rot")
    assert store.put(io.BytesIO(data)) == cid
    assert b"".join(store.stream(cid)) == data


def test_a_swapped_block_is_refused(store: LocalStore) -> None:
    """A block file moved under another CID's name fails that CID's check."""
    cid_a = store.put(io.BytesIO(b"a" * 10))
    cid_b = store.put(io.BytesIO(b"b" * 10))
    path_a = store.root / "blocks" / cid_a.text[-2:] / cid_a.text
    path_b = store.root / "blocks" / cid_b.text[-2:] / cid_b.text
    path_a.write_bytes(path_b.read_bytes())
    with pytest.raises(BlockCorrupted):
        b"".join(store.stream(cid_a))


def test_a_missing_child_block(store: LocalStore, tmp_path: Path) -> None:
    cid = store.put(io.BytesIO(os.urandom(2 * CHUNK_SIZE)))
    leaf = next(p for p in block_files(store) if p.name != cid.text)
    leaf.unlink()
    with pytest.raises(ContentNotFound) as info:
        store.get(cid, tmp_path / "x")
    assert info.value.cid == leaf.name
    assert not (tmp_path / "x").exists()


def test_blocks_are_written_atomically_without_leftovers(store: LocalStore) -> None:
    store.put(io.BytesIO(os.urandom(CHUNK_SIZE + 1)))
    assert not [p for p in (store.root / "blocks").rglob("*.partial")]


def test_a_failed_put_leaves_no_root(store: LocalStore) -> None:
    class Failing(io.RawIOBase):
        sent = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            if self.sent >= 2 * CHUNK_SIZE:
                raise OSError("source vanished")
            self.sent += CHUNK_SIZE
            return bytes(CHUNK_SIZE)

    with pytest.raises(OSError, match="source vanished"):
        store.put(Failing())  # type: ignore[arg-type]
    assert not (store.root / "pins").exists()
    assert all(p.name.startswith("bafk") for p in block_files(store))  # leaves only
