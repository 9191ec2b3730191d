"""One test suite for every `ContentStore`: subclass it and provide a `store` fixture.

`TestLocalStore` (tests/unit/storage) runs it on the embedded store, `TestIpfsStore`
(tests/integration/storage) on a real IPFS daemon. The class name does not start with `Test`,
so pytest collects it only through its subclasses.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from scripts.cid_vectors import pattern_pieces
from storage.cid import Cid, Codec
from storage.errors import ContentNotFound
from storage.stores.base import ContentStore
from storage.unixfs import CHUNK_SIZE, compute_cid

SIZES = {
    "empty": 0,
    "hello": 12,
    "one-chunk": CHUNK_SIZE,
    "one-chunk-plus-1": CHUNK_SIZE + 1,
    "174-chunks-plus-1": 174 * CHUNK_SIZE + 1,
}


def content(size: int) -> bytes:
    if size == 12:
        return b"hello world\n"
    return b"".join(bytes(p) for p in pattern_pieces(size))


def unknown_cid() -> Cid:
    return Cid.of_block(Codec.RAW, os.urandom(32))


class PipeSource(io.RawIOBase):
    """Read-only, not seekable, short reads: like a socket or a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 70_001) if size > 0 else 70_001)


class StoreSuite:
    @pytest.fixture
    def store(self) -> ContentStore:
        raise NotImplementedError("subclasses provide the store under test")

    def test_is_a_content_store(self, store: ContentStore) -> None:
        assert isinstance(store, ContentStore)

    @pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
    def test_put_then_stream_round_trip(self, store: ContentStore, size: int) -> None:
        data = content(size)
        cid = store.put(io.BytesIO(data))
        assert cid == compute_cid([data])
        assert b"".join(store.stream(cid)) == data

    def test_put_hello_world_gives_the_known_cid(self, store: ContentStore) -> None:
        cid = store.put(io.BytesIO(b"hello world\n"))
        assert cid.text == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"

    def test_put_streams_from_a_pipe(self, store: ContentStore) -> None:
        data = content(3 * CHUNK_SIZE + 17)
        cid = store.put(PipeSource(data))  # type: ignore[arg-type]
        assert cid == compute_cid([data])
        assert b"".join(store.stream(cid)) == data

    def test_put_twice_is_the_same_cid(self, store: ContentStore) -> None:
        data = os.urandom(5000)
        assert store.put(io.BytesIO(data)) == store.put(io.BytesIO(data))

    def test_get_writes_the_file(self, store: ContentStore, tmp_path: Path) -> None:
        data = content(CHUNK_SIZE * 2 + 3)
        cid = store.put(io.BytesIO(data))
        dest = tmp_path / "out.bin"
        assert store.get(cid, dest) == len(data)
        assert dest.read_bytes() == data

    def test_has(self, store: ContentStore) -> None:
        cid = store.put(io.BytesIO(os.urandom(100)))
        assert store.has(cid)
        assert not store.has(unknown_cid())

    def test_pin_what_was_put(self, store: ContentStore) -> None:
        cid = store.put(io.BytesIO(os.urandom(CHUNK_SIZE + 10)))
        store.pin(cid)  # idempotent; put pinned it already
        store.pin(cid)

    def test_pin_unknown(self, store: ContentStore) -> None:
        cid = unknown_cid()
        with pytest.raises(ContentNotFound) as info:
            store.pin(cid)
        assert info.value.cid == cid.text

    def test_stream_unknown(self, store: ContentStore) -> None:
        cid = unknown_cid()
        with pytest.raises(ContentNotFound) as info:
            store.stream(cid)  # raised at once, not at the first read
        assert cid.text in str(info.value)

    def test_get_unknown_leaves_no_file(self, store: ContentStore, tmp_path: Path) -> None:
        with pytest.raises(ContentNotFound):
            store.get(unknown_cid(), tmp_path / "out.bin")
        assert list(tmp_path.iterdir()) == []
