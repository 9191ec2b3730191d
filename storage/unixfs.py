"""UnixFS files exactly as `ipfs add --cid-version=1` builds them, computed while streaming.

Layout (Kubo's and js-ipfs's defaults with CIDv1): fixed 262144-byte chunks stored as `raw`
leaves; a balanced DAG whose `dag-pb` nodes hold at most 174 links, built bottom-up in
consecutive groups of 174; each node is a UnixFS `File` with `filesize` and one `blocksizes`
entry per link; a one-chunk file (also the empty file) is its raw leaf alone. Memory stays at
one chunk plus 174 links per tree level, whatever the file size.

The protobuf encoding of these two small messages is written out here: no library encodes
dag-pb + UnixFS in the canonical order (links before data, empty link names) the CIDs need.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from storage.cid import Cid, Codec
from storage.errors import BlockCorrupted, InvalidCid, MalformedDag

CHUNK_SIZE = 262_144
MAX_LINKS = 174
READ_SIZE = 1 << 20
MAX_DEPTH = 32  # 174**32 chunks is far beyond any file; deeper means a hostile DAG

_UNIXFS_RAW = 0
_UNIXFS_FILE = 2
_WIRE_VARINT = 0
_WIRE_LEN = 2

BlockSink = Callable[[Cid, bytes], None]


@dataclass(frozen=True, slots=True)
class Link:
    """A child as its parent records it."""

    cid: Cid
    tsize: int  # bytes of every block below, the dag-pb `Tsize`
    filesize: int  # file bytes below, the UnixFS `blocksizes` entry


@dataclass(frozen=True, slots=True)
class FileNode:
    """A decoded UnixFS file node: inline data first, then the children in order."""

    data: bytes
    links: tuple[Cid, ...]
    blocksizes: tuple[int, ...]


# -- protobuf, the two messages we need -------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int_field(field: int, value: int) -> bytes:
    return _varint(field << 3 | _WIRE_VARINT) + _varint(value)


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | _WIRE_LEN) + _varint(len(payload)) + payload


def encode_file_node(links: Sequence[Link]) -> bytes:
    """A dag-pb node (links, then Data) whose Data is a UnixFS File with its block sizes."""
    unixfs = _int_field(1, _UNIXFS_FILE) + _int_field(3, sum(link.filesize for link in links))
    unixfs += b"".join(_int_field(4, link.filesize) for link in links)
    encoded_links = (
        _bytes_field(1, link.cid.binary) + _bytes_field(2, b"") + _int_field(3, link.tsize)
        for link in links
    )
    return b"".join(_bytes_field(2, link) for link in encoded_links) + _bytes_field(1, unixfs)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message with varint and length fields only."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        if key & 7 == _WIRE_VARINT:
            value, pos = _read_varint(buf, pos)
            yield key >> 3, value
        elif key & 7 == _WIRE_LEN:
            size, pos = _read_varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("length field runs past the end")
            yield key >> 3, buf[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unexpected wire type {key & 7}")


def _decode_link(payload: bytes) -> Cid:
    hashes = [value for field, value in _fields(payload) if field == 1]
    if len(hashes) != 1 or not isinstance(hashes[0], bytes):
        raise ValueError("a link needs exactly one Hash")
    return Cid(hashes[0])


def _decode_unixfs(payload: bytes) -> tuple[int, bytes, tuple[int, ...]]:
    kind, data, sizes = -1, b"", []
    for field, value in _fields(payload):
        if field == 1 and isinstance(value, int):
            kind = value
        elif field == 2 and isinstance(value, bytes):
            data = value
        elif field == 4 and isinstance(value, int):
            sizes.append(value)
        elif field == 4 and isinstance(value, bytes):  # packed encoding
            pos = 0
            while pos < len(value):
                size, pos = _read_varint(value, pos)
                sizes.append(size)
    return kind, data, tuple(sizes)


def decode_file_node(cid: Cid, block: bytes) -> FileNode:
    """Parse a verified dag-pb block as a UnixFS file node, or say why it is not one."""
    try:
        links, unixfs = [], None
        for field, value in _fields(block):
            if field == 2 and isinstance(value, bytes):
                links.append(_decode_link(value))
            elif field == 1 and isinstance(value, bytes):
                unixfs = value
            else:
                raise ValueError(f"unexpected dag-pb field {field}")
        if unixfs is None:
            raise ValueError("no UnixFS data")
        kind, data, sizes = _decode_unixfs(unixfs)
    except (ValueError, InvalidCid) as e:
        raise MalformedDag(cid.text, str(e)) from e
    if kind not in (_UNIXFS_FILE, _UNIXFS_RAW):
        raise MalformedDag(cid.text, f"UnixFS type {kind} is not a file")
    if len(sizes) != len(links):
        raise MalformedDag(cid.text, f"{len(links)} links but {len(sizes)} block sizes")
    return FileNode(data, tuple(links), sizes)


# -- building ---------------------------------------------------------------------------------


class DagBuilder:
    """Feed a file's bytes in any pieces; `finish()` gives its CID.

    `on_block(cid, bytes)` sees every block, children before parents and the root last, so a
    store that writes them in that order never holds a root without its children.
    """

    def __init__(
        self,
        on_block: BlockSink | None = None,
        *,
        chunk_size: int = CHUNK_SIZE,
        max_links: int = MAX_LINKS,
    ) -> None:
        if chunk_size < 1 or max_links < 2:
            raise ValueError("chunk_size must be >= 1 and max_links >= 2")
        self._on_block = on_block
        self._chunk_size = chunk_size
        self._max_links = max_links
        self._pending = bytearray()
        self._levels: list[list[Link]] = [[]]
        self._leaves = 0
        self._size = 0
        self._root: Cid | None = None

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._size

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._root is not None:
            raise RuntimeError("update() after finish()")
        view = memoryview(data).cast("B")
        self._size += len(view)
        if self._pending:
            take = self._chunk_size - len(self._pending)
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < self._chunk_size:
                return
            self._leaf(bytes(self._pending))
            self._pending.clear()
        while len(view) >= self._chunk_size:
            self._leaf(view[: self._chunk_size])
            view = view[self._chunk_size :]
        self._pending += view

    def finish(self) -> Cid:
        """Close the last chunk and every open node; idempotent."""
        if self._root is None:
            if self._pending or self._leaves == 0:
                self._leaf(bytes(self._pending))
                self._pending.clear()
            self._root = self._close_levels()
        return self._root

    def _leaf(self, chunk: bytes | memoryview) -> None:
        cid = Cid.from_digest(Codec.RAW, hashlib.sha256(chunk).digest())
        if self._on_block is not None:
            self._on_block(cid, chunk if isinstance(chunk, bytes) else bytes(chunk))
        self._leaves += 1
        self._push(0, Link(cid, len(chunk), len(chunk)))

    def _push(self, level: int, link: Link) -> None:
        if level == len(self._levels):
            self._levels.append([])
        self._levels[level].append(link)
        if len(self._levels[level]) == self._max_links:
            parent = self._parent(self._levels[level])
            self._levels[level] = []
            self._push(level + 1, parent)

    def _parent(self, links: Sequence[Link]) -> Link:
        block = encode_file_node(links)
        cid = Cid.from_digest(Codec.DAG_PB, hashlib.sha256(block).digest())
        if self._on_block is not None:
            self._on_block(cid, block)
        tsize = len(block) + sum(link.tsize for link in links)
        return Link(cid, tsize, sum(link.filesize for link in links))

    def _close_levels(self) -> Cid:
        """Reduce what is left level by level, as the importer's last batches do."""
        level = 0
        while True:
            links = self._levels[level]
            if level == len(self._levels) - 1 and len(links) == 1:
                return links[0].cid
            if links:
                self._levels[level] = []
                self._push(level + 1, self._parent(links))
            level += 1


def compute_cid(source: BinaryIO | Iterable[bytes], *, on_block: BlockSink | None = None) -> Cid:
    """The CID of everything `source` yields (a binary file object or byte chunks)."""
    builder = DagBuilder(on_block)
    for piece in _pieces(source):
        builder.update(piece)
    return builder.finish()


def file_cid(path: Path) -> Cid:
    """The CID `ipfs add --cid-version=1 PATH` prints, computed locally."""
    with Path(path).open("rb") as source:
        return compute_cid(source)


def _pieces(source: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    read = getattr(source, "read", None)
    if callable(read):
        while piece := read(READ_SIZE):
            yield piece
    else:
        yield from source


# -- reading ----------------------------------------------------------------------------------


def read_file(root: Cid, load: Callable[[Cid], bytes]) -> Iterator[bytes]:
    """Yield a file's bytes in order, checking each block against its CID before using it."""
    yield from _read(root, load, 0)


def _read(cid: Cid, load: Callable[[Cid], bytes], depth: int) -> Iterator[bytes]:
    if depth > MAX_DEPTH:
        raise MalformedDag(cid.text, f"deeper than {MAX_DEPTH} levels")
    block = load(cid)
    if not cid.matches(block):
        raise BlockCorrupted(cid.text)
    if cid.codec is Codec.RAW:
        yield block
        return
    node = decode_file_node(cid, block)
    if node.data:
        yield node.data
    for child in node.links:
        yield from _read(child, load, depth + 1)
