"""Byte counters for progress bars: a reader and an iterator that report what passed.

Kept outside the envelope and the stores so that neither needs to know about displays;
the callback gets the number of bytes of each piece, never the bytes themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

Progress = Callable[[int], None]
"""Called with the size of each piece read or written (a count, never content)."""


class ProgressReader:
    """A read-only file wrapper that reports how many bytes each `read` returned."""

    def __init__(self, source: BinaryIO, progress: Progress) -> None:
        self._source = source
        self._progress = progress

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        if data:
            self._progress(len(data))
        return data


def reporting(pieces: Iterable[bytes], progress: Progress) -> Iterator[bytes]:
    """Pass `pieces` through, reporting the size of each."""
    for piece in pieces:
        progress(len(piece))
        yield piece
