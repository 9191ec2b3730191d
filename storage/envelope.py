"""The envelope: one version's file, encrypted with libsodium secretstream under its data key.

Layout (DESIGN §3, plus a key commitment recorded in docs/decisions.md):

    magic "DDE1" | format (1) | chunk size (u32 BE) | stream header (24) | commitment (32)
    frame 0 | frame 1 | ... | frame n (tagged FINAL)

The commitment is keyed BLAKE2b-256 (key = DEK) over a tag and the header bytes before it. It
lets decryption tell a wrong key from tampering, and binds the ciphertext to one key (no two
keys open the same envelope). The whole 65-byte header is the associated data of frame 0.
Each frame is one secretstream message: exactly chunk size + 17 bytes except the last, which is
the only one tagged FINAL. An empty file is one empty FINAL message. Memory is bounded by the
chunk size; nothing here reads a whole file.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import nacl.exceptions
from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_ABYTES as ABYTES,
)
from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_HEADERBYTES as STREAM_HEADER_SIZE,
)
from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_init_pull,
    crypto_secretstream_xchacha20poly1305_init_push,
    crypto_secretstream_xchacha20poly1305_pull,
    crypto_secretstream_xchacha20poly1305_push,
    crypto_secretstream_xchacha20poly1305_state,
)
from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_TAG_FINAL as TAG_FINAL,
)
from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_TAG_MESSAGE as TAG_MESSAGE,
)

from storage.atomic import atomic_output
from storage.cid import Cid
from storage.errors import (
    BadMagic,
    ChunkRejected,
    EnvelopeMalformed,
    EnvelopeTruncated,
    LastChunkRejected,
    TrailingData,
    UnsupportedChunkSize,
    UnsupportedFormat,
    WrongKey,
)
from storage.keys import DataKey
from storage.progress import Progress, ProgressReader
from storage.unixfs import DagBuilder

MAGIC = b"DDE1"
FORMAT_VERSION = 1
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 64 << 20
COMMITMENT_SIZE = 32
COMMIT_TAG = b"datadebit/envelope-commit/v1"
_FIXED = struct.Struct(">4sBI")  # magic, format, chunk size
HEADER_SIZE = _FIXED.size + STREAM_HEADER_SIZE + COMMITMENT_SIZE
FRAME_OVERHEAD = ABYTES


class Writable(Protocol):
    """Where ciphertext or plaintext goes: a binary file, a socket wrapper, a hasher."""

    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    """The 65 bytes in front of the frames."""

    chunk_size: int
    stream_header: bytes
    commitment: bytes
    format_version: int = FORMAT_VERSION

    def to_bytes(self) -> bytes:
        return self._committed_part() + self.commitment

    def _committed_part(self) -> bytes:
        return _FIXED.pack(MAGIC, self.format_version, self.chunk_size) + self.stream_header

    @classmethod
    def seal(cls, key: DataKey, chunk_size: int, stream_header: bytes) -> EnvelopeHeader:
        """A header whose commitment binds it to `key`."""
        unsigned = cls(chunk_size, stream_header, b"")
        return cls(chunk_size, stream_header, _commit(key, unsigned._committed_part()))

    @classmethod
    def parse(cls, raw: bytes) -> EnvelopeHeader:
        """Check magic, format and length; the key and chunk size are `check_key`'s job."""
        if len(raw) < len(MAGIC) and MAGIC.startswith(raw):
            raise EnvelopeTruncated(0, f"header is {len(raw)} of {HEADER_SIZE} bytes")
        if raw[: len(MAGIC)] != MAGIC:
            raise BadMagic(raw[: len(MAGIC)])
        if len(raw) > len(MAGIC) and raw[len(MAGIC)] != FORMAT_VERSION:
            raise UnsupportedFormat(raw[len(MAGIC)], FORMAT_VERSION)
        if len(raw) < HEADER_SIZE:
            raise EnvelopeTruncated(0, f"header is {len(raw)} of {HEADER_SIZE} bytes")
        _, version, chunk_size = _FIXED.unpack_from(raw)
        stream_header = raw[_FIXED.size : _FIXED.size + STREAM_HEADER_SIZE]
        commitment = raw[HEADER_SIZE - COMMITMENT_SIZE : HEADER_SIZE]
        return cls(chunk_size, stream_header, commitment, version)

    def check_key(self, key: DataKey) -> None:
        """Raise `WrongKey` unless `key` is the one this header was sealed with."""
        if not hmac.compare_digest(_commit(key, self._committed_part()), self.commitment):
            raise WrongKey()
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise UnsupportedChunkSize(self.chunk_size, MAX_CHUNK_SIZE)


def _commit(key: DataKey, header: bytes) -> bytes:
    return hashlib.blake2b(
        COMMIT_TAG + header, key=key.to_secret_bytes(), digest_size=COMMITMENT_SIZE
    ).digest()


def _read_exactly(source: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end (a pipe or socket may return short reads)."""
    data = source.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size and (more := source.read(size - got)):
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def encrypt(
    source: BinaryIO, sink: Writable, key: DataKey, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> int:
    """Encrypt everything `source` holds into `sink`; returns the envelope's size in bytes."""
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise UnsupportedChunkSize(chunk_size, MAX_CHUNK_SIZE)
    state = crypto_secretstream_xchacha20poly1305_state()
    stream_header = crypto_secretstream_xchacha20poly1305_init_push(state, key.to_secret_bytes())
    header = EnvelopeHeader.seal(key, chunk_size, stream_header).to_bytes()
    sink.write(header)
    written = len(header)
    ad: bytes | None = header
    current = _read_exactly(source, chunk_size)
    while True:
        ahead = _read_exactly(source, chunk_size) if len(current) == chunk_size else b""
        tag = TAG_MESSAGE if ahead else TAG_FINAL
        frame = crypto_secretstream_xchacha20poly1305_push(state, current, ad, tag)
        sink.write(frame)
        written += len(frame)
        if tag == TAG_FINAL:
            return written
        current, ad = ahead, None


def decrypt(source: BinaryIO, sink: Writable, key: DataKey) -> int:
    """Decrypt an envelope into `sink`, one authenticated chunk at a time; returns its size.

    Every byte written has been authenticated, but a failure can come after some chunks were
    written: use `decrypt_file` for an all-or-nothing plaintext file.
    """
    raw_header = _read_exactly(source, HEADER_SIZE)
    header = EnvelopeHeader.parse(raw_header)
    header.check_key(key)
    state = crypto_secretstream_xchacha20poly1305_state()
    crypto_secretstream_xchacha20poly1305_init_pull(
        state, header.stream_header, key.to_secret_bytes()
    )
    frame_size = header.chunk_size + FRAME_OVERHEAD
    ad: bytes | None = raw_header
    index = total = 0
    while True:
        frame = _read_exactly(source, frame_size)
        if len(frame) < FRAME_OVERHEAD:
            detail = f"{len(frame)} stray bytes" if frame else ""
            raise EnvelopeTruncated(index, detail)
        try:
            message, tag = crypto_secretstream_xchacha20poly1305_pull(state, frame, ad)
        except nacl.exceptions.RuntimeError as e:
            if len(frame) < frame_size:
                raise LastChunkRejected(index) from e
            raise ChunkRejected(index) from e
        _check_frame(index, tag, len(frame) == frame_size)
        sink.write(message)
        total += len(message)
        if tag == TAG_FINAL:
            if source.read(1):
                raise TrailingData(index)
            return total
        index, ad = index + 1, None


def _check_frame(index: int, tag: int, full: bool) -> None:
    """Structure only the key holder could get wrong: short non-final or odd-tagged chunks."""
    if tag not in (TAG_MESSAGE, TAG_FINAL):
        raise EnvelopeMalformed(index, f"unexpected secretstream tag {tag}")
    if tag == TAG_MESSAGE and not full:
        raise EnvelopeMalformed(index, "a chunk shorter than the chunk size is not the last")


def ciphertext_size(plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """The envelope size for a plaintext size: header + one 17-byte overhead per frame."""
    frames = max(1, -(-plaintext_size // chunk_size))
    return HEADER_SIZE + plaintext_size + frames * FRAME_OVERHEAD


# -- files ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncryptedFile:
    """What encrypting a file produced: where the envelope is, its size and its CID."""

    path: Path
    size: int
    cid: Cid


class _CidTee:
    """Writes through to a file while the CID of everything written is computed."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.builder = DagBuilder()

    def write(self, data: bytes, /) -> int:
        self.builder.update(data)
        return self._out.write(data)


def encrypt_file(
    src: Path,
    dest: Path,
    key: DataKey,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> EncryptedFile:
    """Encrypt `src` to `dest` (all or nothing) and compute the envelope's CID in the same pass.

    `progress`, if given, is told how many plaintext bytes each read took.
    """
    with Path(src).open("rb") as source, atomic_output(Path(dest)) as out:
        tee = _CidTee(out)
        reader = source if progress is None else cast(BinaryIO, ProgressReader(source, progress))
        size = encrypt(reader, tee, key, chunk_size=chunk_size)
        cid = tee.builder.finish()
    return EncryptedFile(Path(dest), size, cid)


def decrypt_file(
    src: Path, dest: Path, key: DataKey, *, progress: Progress | None = None
) -> int:
    """Decrypt `src` to `dest`: `dest` appears only if the whole envelope authenticated.

    `progress`, if given, is told how many envelope bytes each read took.
    """
    with Path(src).open("rb") as source, atomic_output(Path(dest)) as out:
        reader = source if progress is None else cast(BinaryIO, ProgressReader(source, progress))
        return decrypt(reader, out, key)
