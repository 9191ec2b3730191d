"""Content identifiers: the CIDv1 values this project computes, anchors and looks up.

Only what `ipfs add --cid-version=1` produces is a `Cid` here: version 1, sha2-256 and either
the `raw` codec (a single-chunk file or a leaf) or `dag-pb` (a UnixFS file node). The
multiformats library does the encoding (multicodec, multihash, multibase); the constant
4-byte prefix of each codec is taken from it once, so building the thousands of leaf CIDs of a
large file costs a concatenation, not a library call each.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

import multiformats

from storage.errors import InvalidCid

DIGEST_SIZE = 32
_HASH = "sha2-256"


class Codec(IntEnum):
    """The two multicodecs a UnixFS file with raw leaves is made of."""

    RAW = 0x55
    DAG_PB = 0x70

    @property
    def multicodec_name(self) -> str:
        return "raw" if self is Codec.RAW else "dag-pb"


def _prefix(codec: Codec) -> bytes:
    """version || codec || multihash code || digest length, as the library encodes them."""
    sample = multiformats.CID("base32", 1, codec.multicodec_name, (_HASH, bytes(DIGEST_SIZE)))
    return bytes(sample)[:-DIGEST_SIZE]


_PREFIX = {codec: _prefix(codec) for codec in Codec}
_CODEC_BY_PREFIX = {prefix: codec for codec, prefix in _PREFIX.items()}
_PREFIX_SIZE = len(_PREFIX[Codec.RAW])


@dataclass(frozen=True, slots=True)
class Cid:
    """A CIDv1 (sha2-256, raw or dag-pb). `binary` goes on-chain, `text` (base32) to people."""

    binary: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.binary, bytes):
            raise InvalidCid(repr(self.binary), "a CID is built from bytes")
        if (
            len(self.binary) != _PREFIX_SIZE + DIGEST_SIZE
            or self.binary[:_PREFIX_SIZE] not in _CODEC_BY_PREFIX
        ):
            raise InvalidCid(self.binary.hex(), "not a CIDv1 with sha2-256 and codec raw/dag-pb")

    @classmethod
    def from_digest(cls, codec: Codec, digest: bytes) -> Cid:
        """The CID of a block whose sha2-256 digest is `digest`."""
        if len(digest) != DIGEST_SIZE:
            raise InvalidCid(digest.hex(), f"a sha2-256 digest is {DIGEST_SIZE} bytes")
        return cls(_PREFIX[codec] + digest)

    @classmethod
    def of_block(cls, codec: Codec, block: bytes | memoryview) -> Cid:
        """Hash a block's bytes into its CID."""
        return cls.from_digest(codec, hashlib.sha256(block).digest())

    @classmethod
    def parse(cls, value: str | bytes) -> Cid:
        """Read a CID from text (any multibase) or binary, refusing what we never produce."""
        shown = value if isinstance(value, str) else value.hex()
        try:
            lib = multiformats.CID.decode(value.strip() if isinstance(value, str) else value)
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidCid(shown, "not a CID") from e
        if lib.version != 1:
            raise InvalidCid(shown, f"CIDv{lib.version}; only CIDv1 is used here")
        if lib.hashfun.name != _HASH:
            raise InvalidCid(shown, f"hash {lib.hashfun.name}; only {_HASH} is used here")
        names = {codec.multicodec_name: codec for codec in Codec}
        if lib.codec.name not in names:
            raise InvalidCid(shown, f"codec {lib.codec.name}; only raw and dag-pb files")
        return cls.from_digest(names[lib.codec.name], bytes(lib.raw_digest))

    @property
    def codec(self) -> Codec:
        return _CODEC_BY_PREFIX[self.binary[:_PREFIX_SIZE]]

    @property
    def digest(self) -> bytes:
        """The raw 32-byte sha2-256 digest."""
        return self.binary[_PREFIX_SIZE:]

    @property
    def text(self) -> str:
        """Base32 multibase text, as `ipfs add --cid-version=1` prints it."""
        return str(multiformats.CID.decode(self.binary).encode("base32"))

    def matches(self, block: bytes | memoryview) -> bool:
        """Whether `block` hashes to this CID (what every read checks before trusting bytes)."""
        return hashlib.sha256(block).digest() == self.digest

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Cid({self.text})"
