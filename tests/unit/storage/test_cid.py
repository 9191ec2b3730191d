"""CIDs: the type, the daemon's known answers, and the streaming builder against a reference."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scripts.cid_vectors import CASES, pattern_pieces
from storage.cid import Cid, Codec
from storage.errors import BlockCorrupted, InvalidCid, MalformedDag
from storage.unixfs import (
    CHUNK_SIZE,
    MAX_LINKS,
    DagBuilder,
    Link,
    compute_cid,
    decode_file_node,
    encode_file_node,
    file_cid,
    read_file,
)

VECTORS_FILE = Path(__file__).resolve().parents[2] / "vectors" / "cid_vectors.json"
VECTORS = json.loads(VECTORS_FILE.read_text())
BY_NAME = {v["name"]: v for v in VECTORS["vectors"]}
HELLO = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
BIG = 1 << 30  # vectors above this are the multi-GiB three-level trees


# -- the Cid type -----------------------------------------------------------------------------


def test_hello_world() -> None:
    cid = compute_cid([b"hello world\n"])
    assert cid.text == HELLO == str(cid)
    assert cid.codec is Codec.RAW
    assert cid.digest == hashlib.sha256(b"hello world\n").digest()
    assert cid.binary == bytes.fromhex("01551220") + cid.digest
    assert repr(cid) == f"Cid({HELLO})"


def test_parse_round_trips_text_and_binary() -> None:
    cid = Cid.parse(HELLO)
    assert Cid.parse(cid.binary) == cid
    assert Cid.parse(f"  {HELLO}\n") == cid
    assert Cid.parse(HELLO.upper()) == cid  # base32upper multibase
    assert hash(cid) == hash(Cid(cid.binary))


def test_dag_pb_prefix() -> None:
    cid = Cid.from_digest(Codec.DAG_PB, bytes(32))
    assert cid.binary[:4] == bytes.fromhex("01701220")
    assert cid.text.startswith("bafybei")
    assert Cid.parse(cid.text) == cid


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "not a CID"),
        ("hello", "not a CID"),
        (HELLO[:-3], "not a CID"),
        ("QmXoypizjW3WknFiJnKLwHCnL72vedxjQkDDP1mXWo6uco", "only CIDv1"),
        # CIDv1 raw with a blake2b-256 multihash
        ("bafk2bzacecxfjgxgbcbr6tyj2ivukjv7pvrkcbhh3jaffo3ymvgigqzbgrz3q", "only sha2-256"),
        # CIDv1 dag-cbor
        ("bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae", "only raw and dag-pb"),
    ],
)
def test_parse_refuses_what_we_never_make(value: str, reason: str) -> None:
    with pytest.raises(InvalidCid, match=reason):
        Cid.parse(value)


def test_constructor_checks_the_binary_form() -> None:
    with pytest.raises(InvalidCid):
        Cid(b"\x01\x55\x12\x20" + bytes(31))
    with pytest.raises(InvalidCid):
        Cid(b"\x01\x71\x12\x20" + bytes(32))  # dag-cbor
    with pytest.raises(InvalidCid):
        Cid.from_digest(Codec.RAW, bytes(20))
    assert issubclass(InvalidCid, ValueError)


# -- vectors from the real daemon -------------------------------------------------------------


def test_vectors_cover_the_required_cases() -> None:
    sizes = {v["size"] for v in VECTORS["vectors"]}
    chunk = CHUNK_SIZE
    for size in (0, 12, chunk, chunk + 1, 174 * chunk + 1, 174 * 174 * chunk + 1):
        assert size in sizes
    assert BY_NAME["hello-world"]["cid"] == HELLO
    assert VECTORS["daemon"].startswith("js-ipfs")
    assert set(CASES) <= set(BY_NAME)


def _content(vector: dict[str, object]) -> list[bytes] | object:
    if vector["content"] == "literal":
        return [str(vector["text"]).encode()]
    return pattern_pieces(int(str(vector["size"])))


@pytest.mark.parametrize("name", [v["name"] for v in VECTORS["vectors"] if v["size"] <= BIG])
def test_daemon_vector(name: str) -> None:
    vector = BY_NAME[name]
    assert compute_cid(_content(vector)).text == vector["cid"]  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [v["name"] for v in VECTORS["vectors"] if v["size"] > BIG])
def test_daemon_vector_three_levels_streamed(name: str) -> None:
    """~7.9 GB generated on the fly: only the chunk in hand and 3 x 174 links are held."""
    vector = BY_NAME[name]
    builder = DagBuilder()
    for piece in pattern_pieces(vector["size"], piece=4 << 20):
        builder.update(piece)
    assert builder.size == vector["size"]
    assert builder.finish().text == vector["cid"]


def test_file_cid(tmp_path: Path) -> None:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello world\n")
    assert file_cid(path).text == HELLO


# -- the builder against a non-streaming reference --------------------------------------------


def reference_cid(data: bytes, chunk_size: int, max_links: int) -> Cid:
    """js-ipfs's importer, transcribed: chunk everything, then reduce in batches per level."""
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
    level = [Link(Cid.of_block(Codec.RAW, c), len(c), len(c)) for c in chunks]
    if len(level) == 1:
        return level[0].cid
    while True:
        parents = []
        for i in range(0, len(level), max_links):
            batch = level[i : i + max_links]
            block = encode_file_node(batch)
            parents.append(
                Link(
                    Cid.of_block(Codec.DAG_PB, block),
                    len(block) + sum(link.tsize for link in batch),
                    sum(link.filesize for link in batch),
                )
            )
        if len(parents) == 1:
            return parents[0].cid
        level = parents


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=200),
    chunk_size=st.integers(min_value=1, max_value=6),
    max_links=st.integers(min_value=2, max_value=5),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_streaming_builder_matches_reference(
    size: int, chunk_size: int, max_links: int, cuts: list[int]
) -> None:
    data = bytes((i * 7 + 3) % 251 for i in range(size))
    builder = DagBuilder(chunk_size=chunk_size, max_links=max_links)
    bounds = sorted({0, size, *(c for c in cuts if c <= size)})
    for start, end in itertools.pairwise(bounds):
        builder.update(data[start:end])
    assert builder.finish() == reference_cid(data, chunk_size, max_links)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=CHUNK_SIZE * 3 + 10), piece=st.integers(1, CHUNK_SIZE + 7))
def test_cid_does_not_depend_on_how_the_input_is_cut(data: bytes, piece: int) -> None:
    pieces = [data[i : i + piece] for i in range(0, len(data), piece)]
    assert compute_cid(pieces) == compute_cid(io.BytesIO(data))


def test_finish_is_idempotent_and_final() -> None:
    builder = DagBuilder()
    builder.update(b"abc")
    assert builder.finish() == builder.finish()
    with pytest.raises(RuntimeError):
        builder.update(b"more")


def test_blocks_come_children_first_root_last() -> None:
    blocks: list[tuple[Cid, bytes]] = []
    root = compute_cid(
        [bytes(range(256)) * 40],
        on_block=lambda cid, block: blocks.append((cid, block)),
    )
    # 10240 bytes in 262144-byte chunks is one raw block; use small parameters instead.
    assert blocks == [(root, bytes(range(256)) * 40)]
    blocks.clear()
    builder = DagBuilder(lambda c, b: blocks.append((c, b)), chunk_size=4, max_links=3)
    builder.update(bytes(range(40)))
    root = builder.finish()
    assert blocks[-1][0] == root
    seen: set[Cid] = set()
    for cid, block in blocks:
        assert cid.matches(block)
        if cid.codec is Codec.DAG_PB:
            assert set(decode_file_node(cid, block).links) <= seen
        seen.add(cid)


# -- node encoding and reading ----------------------------------------------------------------


def test_file_node_encoding_round_trip() -> None:
    leaves = [Link(Cid.of_block(Codec.RAW, bytes([i])), 300 + i, 300 + i) for i in range(3)]
    block = encode_file_node(leaves)
    node = decode_file_node(Cid.of_block(Codec.DAG_PB, block), block)
    assert node.links == tuple(link.cid for link in leaves)
    assert node.blocksizes == (300, 301, 302)
    assert node.data == b""


def test_max_links_is_174() -> None:
    assert MAX_LINKS == 174 and CHUNK_SIZE == 262_144


def _blocks(data: bytes, chunk_size: int = 4, max_links: int = 3) -> tuple[Cid, dict[Cid, bytes]]:
    store: dict[Cid, bytes] = {}
    builder = DagBuilder(store.__setitem__, chunk_size=chunk_size, max_links=max_links)
    builder.update(data)
    return builder.finish(), store


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=120))
def test_read_file_returns_the_content(data: bytes) -> None:
    root, store = _blocks(data)
    assert b"".join(read_file(root, store.__getitem__)) == data


def test_read_file_refuses_a_corrupted_block() -> None:
    root, store = _blocks(bytes(range(50)))
    leaf = next(cid for cid in store if cid.codec is Codec.RAW)
    store[leaf] = b"evil"
    with pytest.raises(BlockCorrupted) as info:
        b"".join(read_file(root, store.__getitem__))
    assert info.value.cid == leaf.text


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        (b"\x0a\x02\x08\x01", "not a file"),  # UnixFS Directory
        (b"\xff", "varint"),
        (b"\x12\x26\x0a\x24" + Cid.parse(HELLO).binary, "no UnixFS data"),
        (b"\x12\x05\x0a\x03abc", "invalid CID"),
        (b"\x0a\x04\x08\x02\x20\x05", "0 links but 1 block sizes"),
        (b"\x1a\x00", "unexpected dag-pb field 3"),
    ],
)
def test_malformed_nodes_are_refused(block: bytes, reason: str) -> None:
    cid = Cid.of_block(Codec.DAG_PB, block)
    with pytest.raises(MalformedDag, match=reason):
        b"".join(read_file(cid, {cid: block}.__getitem__))
