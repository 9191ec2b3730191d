"""The envelope: round trips across chunk boundaries, and every way a stored envelope can go bad."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl import bindings as sodium

from storage.atomic import atomic_output
from storage.envelope import (
    COMMIT_TAG,
    DEFAULT_CHUNK_SIZE,
    FRAME_OVERHEAD,
    HEADER_SIZE,
    MAGIC,
    MAX_CHUNK_SIZE,
    EnvelopeHeader,
    ciphertext_size,
    decrypt,
    decrypt_file,
    encrypt,
    encrypt_file,
)
from storage.errors import (
    BadMagic,
    ChunkRejected,
    EnvelopeError,
    EnvelopeMalformed,
    EnvelopeTampered,
    EnvelopeTruncated,
    LastChunkRejected,
    StorageError,
    TrailingData,
    UnsupportedChunkSize,
    UnsupportedFormat,
    WrongKey,
)
from storage.keys import DataKey
from storage.unixfs import file_cid

KEY = DataKey(bytes(range(32)))
CHUNK = 16
FRAME = CHUNK + FRAME_OVERHEAD


def seal(plaintext: bytes, key: DataKey = KEY, chunk_size: int = CHUNK) -> bytes:
    out = io.BytesIO()
    encrypt(io.BytesIO(plaintext), out, key, chunk_size=chunk_size)
    return out.getvalue()


def open_(envelope: bytes, key: DataKey = KEY) -> bytes:
    out = io.BytesIO()
    decrypt(io.BytesIO(envelope), out, key)
    return out.getvalue()


def frames(envelope: bytes, chunk_size: int = CHUNK) -> list[bytes]:
    body = envelope[HEADER_SIZE:]
    size = chunk_size + FRAME_OVERHEAD
    return [body[i : i + size] for i in range(0, len(body), size)]


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


class ShortReads(io.RawIOBase):
    """A pipe-like source that hands out at most `limit` bytes per read."""

    def __init__(self, data: bytes, limit: int) -> None:
        self._data = io.BytesIO(data)
        self._limit = limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(self._limit if size < 0 else min(size, self._limit))


# -- round trips ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(plaintext=st.binary(max_size=400), chunk_size=st.integers(min_value=1, max_value=48))
def test_round_trip_across_chunk_boundaries(plaintext: bytes, chunk_size: int) -> None:
    envelope = seal(plaintext, chunk_size=chunk_size)
    assert len(envelope) == ciphertext_size(len(plaintext), chunk_size)
    assert open_(envelope) == plaintext


@settings(max_examples=100, deadline=None)
@given(
    multiple=st.integers(min_value=0, max_value=6),
    extra=st.sampled_from([-1, 0, 1]),
    chunk_size=st.integers(min_value=1, max_value=32),
)
def test_round_trip_at_exact_multiples_of_the_chunk_size(
    multiple: int, extra: int, chunk_size: int
) -> None:
    plaintext = os.urandom(max(0, multiple * chunk_size + extra))
    envelope = seal(plaintext, chunk_size=chunk_size)
    expected_frames = max(1, -(-len(plaintext) // chunk_size))
    assert len(frames(envelope, chunk_size)) == expected_frames
    assert open_(envelope) == plaintext


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=300), limit=st.integers(min_value=1, max_value=40))
def test_round_trip_from_sources_that_return_short_reads(plaintext: bytes, limit: int) -> None:
    out = io.BytesIO()
    encrypt(ShortReads(plaintext, limit), out, KEY, chunk_size=CHUNK)  # type: ignore[arg-type]
    back = io.BytesIO()
    decrypt(ShortReads(out.getvalue(), limit), back, KEY)  # type: ignore[arg-type]
    assert back.getvalue() == plaintext


def test_empty_plaintext_is_one_empty_final_message() -> None:
    envelope = seal(b"")
    assert len(envelope) == HEADER_SIZE + FRAME_OVERHEAD
    assert open_(envelope) == b""


def test_default_chunk_size_is_one_mib() -> None:
    plaintext = os.urandom(DEFAULT_CHUNK_SIZE + 5)
    out = io.BytesIO()
    encrypt(io.BytesIO(plaintext), out, KEY)
    envelope = out.getvalue()
    assert EnvelopeHeader.parse(envelope[:HEADER_SIZE]).chunk_size == DEFAULT_CHUNK_SIZE
    assert len(envelope) == HEADER_SIZE + len(plaintext) + 2 * FRAME_OVERHEAD
    assert open_(envelope) == plaintext


def test_each_encryption_is_fresh_even_under_the_same_key() -> None:
    a, b = seal(b"same plaintext"), seal(b"same plaintext")
    assert a[:9] == b[:9]  # magic, format, chunk size
    assert a[9:HEADER_SIZE] != b[9:HEADER_SIZE]  # stream header and commitment
    assert a[HEADER_SIZE:] != b[HEADER_SIZE:]


def test_header_layout() -> None:
    envelope = seal(b"x" * 40)
    magic, version, chunk_size = struct.unpack(">4sBI", envelope[:9])
    assert (magic, version, chunk_size) == (MAGIC, 1, CHUNK)
    header = EnvelopeHeader.parse(envelope[:HEADER_SIZE])
    assert header.stream_header == envelope[9:33]
    assert header.commitment == envelope[33:65]
    assert header.to_bytes() == envelope[:HEADER_SIZE]


def test_commitment_is_keyed_blake2b_over_tag_and_header() -> None:
    envelope = seal(b"abc")
    expected = hashlib.blake2b(
        COMMIT_TAG + envelope[:33], key=KEY.to_secret_bytes(), digest_size=32
    ).digest()
    assert envelope[33:65] == expected


def test_header_is_associated_data_of_the_first_message() -> None:
    envelope = seal(b"abc")
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(
        state, envelope[9:33], KEY.to_secret_bytes()
    )
    message, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(
        state, envelope[HEADER_SIZE:], envelope[:HEADER_SIZE]
    )
    assert (message, tag) == (b"abc", sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL)


def test_memory_is_bounded_by_the_chunk_size_not_the_file_size() -> None:
    size, chunk_size = 32 << 20, 64 << 10

    class Zeros(io.RawIOBase):
        left = size

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            n = min(n, self.left)
            self.left -= n
            return bytes(n)

    class Discard:
        def write(self, data: bytes) -> int:
            return len(data)

    tracemalloc.start()
    try:
        encrypt(Zeros(), Discard(), KEY, chunk_size=chunk_size)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * chunk_size, f"peak {peak} bytes for a {size}-byte stream"


# -- what goes wrong --------------------------------------------------------------------------

PLAINTEXT = bytes(range(100))  # 6 full 16-byte chunks and a short 4-byte final one
ENVELOPE = seal(PLAINTEXT)
FRAMES = frames(ENVELOPE)
LAST = len(FRAMES) - 1


def test_fixture_shape() -> None:
    assert len(FRAMES) == 7
    assert all(len(f) == FRAME for f in FRAMES[:-1]) and len(FRAMES[-1]) == 4 + FRAME_OVERHEAD


def test_wrong_key() -> None:
    with pytest.raises(WrongKey):
        open_(ENVELOPE, DataKey.generate())


def test_wrong_magic() -> None:
    with pytest.raises(BadMagic) as info:
        open_(b"XXXX" + ENVELOPE[4:])
    assert info.value.found == b"XXXX"


def test_not_an_envelope_at_all() -> None:
    with pytest.raises(BadMagic):
        open_(b"hello world, this is plainly a text file and not an envelope at all.........")


@pytest.mark.parametrize("version", [0, 2, 0x7F, 0xFF])
def test_unknown_format_byte(version: int) -> None:
    with pytest.raises(UnsupportedFormat) as info:
        open_(ENVELOPE[:4] + bytes([version]) + ENVELOPE[5:])
    assert (info.value.version, info.value.supported) == (version, 1)


@pytest.mark.parametrize("index", range(4, HEADER_SIZE))
def test_flipped_header_byte(index: int) -> None:
    """Format byte: unknown format. Every other header byte is under the key commitment."""
    expected = UnsupportedFormat if index == 4 else WrongKey
    with pytest.raises(expected):
        open_(flip(ENVELOPE, index))


@pytest.mark.parametrize("chunk", range(7))
@pytest.mark.parametrize("where", ["first", "middle", "tag"])
def test_flipped_byte_in_a_chunk(chunk: int, where: str) -> None:
    frame_start = HEADER_SIZE + chunk * FRAME
    frame_len = len(FRAMES[chunk])
    offset = {"first": 0, "middle": frame_len // 2, "tag": frame_len - 1}[where]
    with pytest.raises(EnvelopeTampered) as info:
        open_(flip(ENVELOPE, frame_start + offset))
    assert info.value.chunk_index == chunk
    assert type(info.value) is (LastChunkRejected if chunk == LAST else ChunkRejected)


def test_reordered_chunks_name_the_chunk_and_the_possible_causes() -> None:
    swapped = [*FRAMES[:2], FRAMES[3], FRAMES[2], *FRAMES[4:]]
    with pytest.raises(ChunkRejected) as info:
        open_(ENVELOPE[:HEADER_SIZE] + b"".join(swapped))
    assert info.value.chunk_index == 2
    assert "altered, reordered or spliced" in str(info.value)


def test_dropped_middle_chunk() -> None:
    with pytest.raises(ChunkRejected) as info:
        open_(ENVELOPE[:HEADER_SIZE] + b"".join(FRAMES[:3] + FRAMES[4:]))
    assert info.value.chunk_index == 3


def test_chunk_spliced_from_another_envelope_under_the_same_key() -> None:
    other = frames(seal(PLAINTEXT))
    with pytest.raises(ChunkRejected) as info:
        open_(ENVELOPE[:HEADER_SIZE] + b"".join([*FRAMES[:4], other[4], *FRAMES[5:]]))
    assert info.value.chunk_index == 4


def test_dropped_final_chunk() -> None:
    with pytest.raises(EnvelopeTruncated) as info:
        open_(ENVELOPE[:HEADER_SIZE] + b"".join(FRAMES[:-1]))
    assert type(info.value) is EnvelopeTruncated
    assert info.value.chunks_read == LAST


@pytest.mark.parametrize("cut", range(len(ENVELOPE)))
def test_truncation_at_every_byte(cut: int) -> None:
    with pytest.raises(EnvelopeTruncated):
        open_(ENVELOPE[:cut])


def test_truncated_exactly_after_a_full_chunk_of_an_aligned_envelope() -> None:
    aligned = seal(bytes(64))  # 4 full chunks, the last one FINAL
    with pytest.raises(EnvelopeTruncated) as info:
        open_(aligned[: HEADER_SIZE + 3 * FRAME])
    assert info.value.chunks_read == 3


def test_appended_garbage_after_a_full_final_chunk() -> None:
    aligned = seal(bytes(64))
    with pytest.raises(TrailingData) as info:
        open_(aligned + b"\x00")
    assert info.value.final_chunk_index == 3


def test_appended_second_envelope() -> None:
    with pytest.raises(TrailingData):
        open_(seal(bytes(64)) + ENVELOPE)


def test_appended_garbage_after_a_short_final_chunk_breaks_that_chunk() -> None:
    """Frames carry no length: the garbage becomes part of the last frame, which then fails."""
    with pytest.raises(EnvelopeTampered) as info:
        open_(ENVELOPE + b"garbage")
    assert info.value.chunk_index == LAST


@pytest.mark.parametrize("chunk_size", [0, MAX_CHUNK_SIZE + 1, 0xFFFFFFFF])
def test_committed_but_unsupported_chunk_size(chunk_size: int) -> None:
    header = EnvelopeHeader.seal(KEY, chunk_size, bytes(24)).to_bytes()
    with pytest.raises(UnsupportedChunkSize):
        open_(header + bytes(40))


def test_encrypt_refuses_unsupported_chunk_sizes() -> None:
    for chunk_size in (0, MAX_CHUNK_SIZE + 1):
        with pytest.raises(UnsupportedChunkSize):
            seal(b"x", chunk_size=chunk_size)


def handmade(messages: list[tuple[bytes, int]], chunk_size: int = CHUNK) -> bytes:
    """An envelope written with the right key but a structure `encrypt` never makes."""
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    stream_header = sodium.crypto_secretstream_xchacha20poly1305_init_push(
        state, KEY.to_secret_bytes()
    )
    header = EnvelopeHeader.seal(KEY, chunk_size, stream_header).to_bytes()
    out, ad = [header], header
    for message, tag in messages:
        out.append(sodium.crypto_secretstream_xchacha20poly1305_push(state, message, ad, tag))
        ad = None  # type: ignore[assignment]
    return b"".join(out)


MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
PUSH = sodium.crypto_secretstream_xchacha20poly1305_TAG_PUSH


def test_handmade_valid_envelope_opens() -> None:
    assert open_(handmade([(bytes(16), MESSAGE), (b"end", FINAL)])) == bytes(16) + b"end"


def test_authenticated_short_chunk_that_is_not_final() -> None:
    with pytest.raises(EnvelopeMalformed) as info:
        open_(handmade([(b"short", MESSAGE)]))
    assert info.value.chunk_index == 0


def test_authenticated_unknown_tag() -> None:
    with pytest.raises(EnvelopeMalformed):
        open_(handmade([(bytes(16), PUSH), (b"", FINAL)]))


def test_errors_are_storage_errors_and_value_errors() -> None:
    for cls in (WrongKey, ChunkRejected, EnvelopeTruncated, TrailingData, BadMagic):
        assert issubclass(cls, EnvelopeError)
        assert issubclass(cls, StorageError)
        assert issubclass(cls, ValueError)
    assert issubclass(LastChunkRejected, EnvelopeTruncated)
    assert issubclass(LastChunkRejected, EnvelopeTampered)


def test_no_error_message_carries_the_key() -> None:
    for bad in (flip(ENVELOPE, 40), flip(ENVELOPE, HEADER_SIZE + 1), ENVELOPE[:-3]):
        with pytest.raises(EnvelopeError) as info:
            open_(bad)
        assert KEY.to_secret_bytes().hex() not in str(info.value)
    assert repr(KEY) == "DataKey(<secret>)"


# -- files: all or nothing --------------------------------------------------------------------

BAD_ENVELOPES: dict[str, Callable[[], tuple[bytes, DataKey]]] = {
    "wrong key": lambda: (ENVELOPE, DataKey.generate()),
    "wrong magic": lambda: (b"DDE2" + ENVELOPE[4:], KEY),
    "unknown format": lambda: (ENVELOPE[:4] + b"\x09" + ENVELOPE[5:], KEY),
    "flipped header byte": lambda: (flip(ENVELOPE, 20), KEY),
    "flipped chunk byte": lambda: (flip(ENVELOPE, HEADER_SIZE + 3 * FRAME + 5), KEY),
    "flipped last chunk byte": lambda: (flip(ENVELOPE, len(ENVELOPE) - 2), KEY),
    "truncated mid-chunk": lambda: (ENVELOPE[: HEADER_SIZE + 2 * FRAME + 9], KEY),
    "dropped final chunk": lambda: (ENVELOPE[: HEADER_SIZE + LAST * FRAME], KEY),
    "reordered": lambda: (
        ENVELOPE[:HEADER_SIZE] + FRAMES[1] + FRAMES[0] + b"".join(FRAMES[2:]),
        KEY,
    ),
    "appended garbage": lambda: (seal(bytes(64)) + b"garbage", KEY),
    "empty file": lambda: (b"", KEY),
}


@pytest.mark.parametrize("case", BAD_ENVELOPES)
def test_failed_decrypt_leaves_no_output_file(case: str, tmp_path: Path) -> None:
    envelope, key = BAD_ENVELOPES[case]()
    src, dest = tmp_path / "in.dde", tmp_path / "out.bin"
    src.write_bytes(envelope)
    with pytest.raises(EnvelopeError):
        decrypt_file(src, dest, key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.dde"]


def test_failed_decrypt_keeps_an_existing_output_as_it_was(tmp_path: Path) -> None:
    src, dest = tmp_path / "in.dde", tmp_path / "out.bin"
    src.write_bytes(flip(ENVELOPE, HEADER_SIZE + 3))
    dest.write_bytes(b"previous")
    with pytest.raises(ChunkRejected):
        decrypt_file(src, dest, KEY)
    assert dest.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.dde", "out.bin"]


def test_file_round_trip_and_envelope_cid(tmp_path: Path) -> None:
    plain, env, back = tmp_path / "plain", tmp_path / "env", tmp_path / "back"
    plain.write_bytes(os.urandom(300_000))
    result = encrypt_file(plain, env, KEY, chunk_size=4096)
    assert result.path == env
    assert result.size == env.stat().st_size == ciphertext_size(300_000, 4096)
    assert result.cid == file_cid(env)
    assert decrypt_file(env, back, KEY) == 300_000
    assert back.read_bytes() == plain.read_bytes()
    assert oct(back.stat().st_mode & 0o777) == oct(0o600)


def test_failed_encrypt_leaves_no_output_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        encrypt_file(tmp_path / "missing", tmp_path / "env", KEY)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_encrypt_leaves_no_output_file(tmp_path: Path) -> None:
    class Exploding(io.RawIOBase):
        calls = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 3:
                raise OSError("disk went away")
            return bytes(min(n, 10))

    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    with pytest.raises(OSError, match="disk went away"), atomic_output(tmp_path / "env") as out:
        encrypt(Exploding(), out, KEY, chunk_size=10)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]
