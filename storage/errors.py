"""The root of every error the storage package raises on purpose, and one class per failure.

Each class carries the fields a caller needs to react (a chunk index, a CID, a URL) and builds
its own one-line message, so CLIs and the gateway can print `str(error)` as is. None of them
ever carries key material or plaintext. Builtin clones (`ValueError`, `LookupError`, ...) let
generic callers catch them the usual way.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of all storage errors; catch this to handle any of them."""


# -- envelope ---------------------------------------------------------------------------------


class EnvelopeError(StorageError, ValueError):
    """The envelope cannot be decrypted; the subclass says why."""


class BadMagic(EnvelopeError):
    """The input does not start with the envelope magic: not an envelope at all."""

    def __init__(self, found: bytes) -> None:
        self.found = found
        super().__init__(f"not a datadebit envelope (magic {found.hex() or 'missing'})")


class UnsupportedFormat(EnvelopeError):
    """An envelope of a format version this code does not know (newer, or corrupted)."""

    def __init__(self, version: int, supported: int) -> None:
        self.version = version
        self.supported = supported
        super().__init__(
            f"unsupported envelope format version {version} (this version reads {supported})"
        )


class UnsupportedChunkSize(EnvelopeError):
    """The header names a chunk size outside the bounds we accept (memory is bounded by it)."""

    def __init__(self, chunk_size: int, maximum: int) -> None:
        self.chunk_size = chunk_size
        self.maximum = maximum
        super().__init__(f"envelope chunk size {chunk_size} is outside 1..{maximum}")


class WrongKey(EnvelopeError):
    """The key does not match the header's key commitment.

    The commitment covers the header bytes too, so an altered header is reported here as
    well: the two cannot be told apart without the right key.
    """

    def __init__(self) -> None:
        super().__init__(
            "wrong key: it does not match the envelope's key commitment "
            "(or the envelope header was altered)"
        )


class EnvelopeTruncated(EnvelopeError):
    """The envelope ends before its FINAL chunk: a cut-off download or copy."""

    def __init__(self, chunks_read: int, detail: str = "") -> None:
        self.chunks_read = chunks_read
        tail = f" ({detail})" if detail else ""
        super().__init__(
            f"envelope truncated: it ends after {chunks_read} chunk(s) without the final one{tail}"
        )


class EnvelopeTampered(EnvelopeError):
    """A chunk failed authentication: the ciphertext is not what the key holder wrote."""

    def __init__(self, chunk_index: int, message: str | None = None) -> None:
        self.chunk_index = chunk_index
        super().__init__(message or f"envelope chunk {chunk_index} failed authentication")


class ChunkRejected(EnvelopeTampered):
    """Chunk `chunk_index` did not authenticate at its position in the stream.

    secretstream chains every chunk to the previous ones, so an altered chunk, a chunk moved
    from elsewhere in this envelope and a chunk spliced in from another one all fail the same
    way: the position is known, the cause is not.
    """

    def __init__(self, chunk_index: int) -> None:
        super().__init__(
            chunk_index,
            f"envelope chunk {chunk_index} failed authentication: "
            "it was altered, reordered or spliced",
        )


class LastChunkRejected(EnvelopeTruncated, EnvelopeTampered):
    """The short last chunk failed authentication: cut off mid-chunk, or altered.

    Frames carry no length, so a chunk cut short and a final chunk with a changed byte look
    alike. This error is both a truncation and a tamper error; catch either.
    """

    def __init__(self, chunk_index: int) -> None:
        self.chunks_read = chunk_index
        self.chunk_index = chunk_index
        EnvelopeError.__init__(
            self,
            f"envelope chunk {chunk_index}, the last one, failed authentication: "
            "the envelope was truncated mid-chunk, or that chunk was altered",
        )


class TrailingData(EnvelopeError):
    """Bytes follow the FINAL chunk: appended garbage or two envelopes glued together."""

    def __init__(self, final_chunk_index: int) -> None:
        self.final_chunk_index = final_chunk_index
        super().__init__(f"envelope has data after its final chunk (chunk {final_chunk_index})")


class EnvelopeMalformed(EnvelopeError):
    """Authenticated but impossible structure (only a holder of the key could write it)."""

    def __init__(self, chunk_index: int, reason: str) -> None:
        self.chunk_index = chunk_index
        self.reason = reason
        super().__init__(f"envelope chunk {chunk_index} is malformed: {reason}")


# -- content addressing -----------------------------------------------------------------------


class InvalidCid(StorageError, ValueError):
    """Text or bytes that are not a CID this project makes (CIDv1, sha2-256, raw or dag-pb)."""

    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid CID {value!r}: {reason}")


class BlockCorrupted(StorageError):
    """A block's bytes do not hash to the CID it is stored or linked under."""

    def __init__(self, cid: str) -> None:
        self.cid = cid
        super().__init__(f"block {cid} does not match its CID: the stored bytes are corrupted")


class MalformedDag(StorageError, ValueError):
    """A block verified but is not a UnixFS file node we can read."""

    def __init__(self, cid: str, reason: str) -> None:
        self.cid = cid
        self.reason = reason
        super().__init__(f"block {cid} is not a readable UnixFS file node: {reason}")


class ContentMismatch(StorageError):
    """The content a store returned recomputes to a different CID than the one asked for."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"content returned for {expected} recomputes to {actual}: refusing it")


# -- stores -----------------------------------------------------------------------------------


class ContentNotFound(StorageError, LookupError):
    """The store does not have the CID (or could not find it within its lookup timeout)."""

    def __init__(self, cid: str, where: str, detail: str = "") -> None:
        self.cid = cid
        self.where = where
        self.detail = detail
        tail = f" ({detail})" if detail else ""
        super().__init__(f"{cid} not found in {where}{tail}")


class StoreUnavailable(StorageError, ConnectionError):
    """The store cannot be reached: daemon down, refused, or timing out after retries."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"IPFS store at {url} is unavailable: {reason}")


class StoreResponseError(StorageError):
    """The store answered with an error or a response we cannot use."""

    def __init__(self, url: str, operation: str, detail: str) -> None:
        self.url = url
        self.operation = operation
        self.detail = detail
        super().__init__(f"IPFS store at {url} failed {operation}: {detail}")


class CidMismatch(StorageError):
    """The store computed a different CID for what we put than we did: refuse that store.

    Usually a daemon with other import settings (chunker, CID version, leaves, layout).
    """

    def __init__(self, ours: str, theirs: str, url: str) -> None:
        self.ours = ours
        self.theirs = theirs
        self.url = url
        super().__init__(
            f"IPFS store at {url} returned CID {theirs} but the content is {ours}: "
            "refusing a store that imports differently"
        )


# -- key files --------------------------------------------------------------------------------


class KeyFileError(StorageError, ValueError):
    """A data-key file that cannot be used; the message names the file, never its content."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"key file {path}: {reason}")
