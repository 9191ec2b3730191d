"""The embedded store: a directory of blocks named by their CIDs, no daemon needed.

    root/blocks/<last two CID characters>/<CID>   one file per raw leaf or dag-pb node
    root/pins/<CID>                                an empty marker per pinned root

It holds exactly the blocks an IPFS daemon would hold for the same `add`, so its CIDs are the
daemon's. Reads walk the DAG from the root and check every block against its CID before a
byte of it is used: a corrupted or swapped block file is refused, never returned.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from storage.atomic import atomic_output
from storage.cid import Cid
from storage.errors import ContentNotFound
from storage.stores.base import save
from storage.unixfs import compute_cid, read_file


class LocalStore:
    """Blocks under `root`; `fsync=False` trades crash safety for speed (tests, demos)."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self._fsync = fsync

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _block_path(self, cid: Cid) -> Path:
        text = cid.text
        return self.root / "blocks" / text[-2:] / text

    def _write_block(self, cid: Cid, block: bytes) -> None:
        path = self._block_path(cid)
        if path.is_file() and cid.matches(path.read_bytes()):
            return  # already there and intact; a damaged copy is rewritten
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, fsync=self._fsync) as out:
            out.write(block)

    def _load(self, cid: Cid) -> bytes:
        try:
            return self._block_path(cid).read_bytes()
        except FileNotFoundError as e:
            raise ContentNotFound(cid.text, repr(self)) from e

    def put(self, source: BinaryIO) -> Cid:
        """Store `source` block by block (children first, root last) and pin the root."""
        cid = compute_cid(source, on_block=self._write_block)
        self.pin(cid)
        return cid

    def stream(self, cid: Cid) -> Iterator[bytes]:
        """The content, each block verified before it is yielded."""
        if not self.has(cid):
            raise ContentNotFound(cid.text, repr(self))
        return read_file(cid, self._load)

    def get(self, cid: Cid, dest: Path) -> int:
        return save(self.stream(cid), dest)

    def pin(self, cid: Cid) -> None:
        if not self.has(cid):
            raise ContentNotFound(cid.text, repr(self))
        marker = self.root / "pins" / cid.text
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    def is_pinned(self, cid: Cid) -> bool:
        return (self.root / "pins" / cid.text).exists()

    def has(self, cid: Cid) -> bool:
        return self._block_path(cid).is_file()
