"""The store interface, and the check every read goes through: content must be its CID.

A store is untrusted: whatever it returns is recomputed into a CID while it streams past and
compared with the CID asked for. `get` writes to a file that only appears once that check
has passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from storage.atomic import atomic_output
from storage.cid import Cid
from storage.errors import ContentMismatch
from storage.unixfs import DagBuilder


@runtime_checkable
class ContentStore(Protocol):
    """Where envelopes live, addressed by the CID `ipfs add --cid-version=1` gives them."""

    def put(self, source: BinaryIO) -> Cid:
        """Store everything `source` holds (streamed) and pin it; returns its CID."""
        ...

    def stream(self, cid: Cid) -> Iterator[bytes]:
        """The content, in pieces. It is verified against `cid`: a mismatch raises, at the
        latest when the iterator ends, so treat the bytes as final only after it finished."""
        ...

    def get(self, cid: Cid, dest: Path) -> int:
        """Write the content to `dest` (all or nothing, verified first); returns its size."""
        ...

    def pin(self, cid: Cid) -> None:
        """Keep `cid` and everything under it; raises `ContentNotFound` if it is not there."""
        ...

    def has(self, cid: Cid) -> bool:
        """Whether the store holds `cid`'s root block right now (it does not fetch)."""
        ...


def verified(cid: Cid, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Pass `pieces` through, recomputing their CID; raise `ContentMismatch` if it differs."""
    builder = DagBuilder()
    for piece in pieces:
        builder.update(piece)
        yield piece
    actual = builder.finish()
    if actual != cid:
        raise ContentMismatch(cid.text, actual.text)


def save(pieces: Iterable[bytes], dest: Path) -> int:
    """Write `pieces` to `dest` all or nothing: an error while iterating leaves no file."""
    size = 0
    with atomic_output(Path(dest)) as out:
        for piece in pieces:
            out.write(piece)
            size += len(piece)
    return size


def save_verified(cid: Cid, pieces: Iterable[bytes], dest: Path) -> int:
    """Write `pieces` to `dest` only if they are `cid`'s content; nothing is left otherwise."""
    return save(verified(cid, pieces), dest)
