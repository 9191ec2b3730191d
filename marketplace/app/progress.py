"""How a long flow reports its stages to whoever shows them (a progress bar, a web
page, nothing): the flow opens one `Stage` per step with its byte total and reports
byte counts into it; the flow never knows how it is shown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from storage.progress import Progress

#: `stages(name, total_bytes)` -> a context yielding the step's byte counter; names used:
#: "encrypt", "upload" (publish), "download", "decrypt" (fetch). total None = unknown.
Stages = Callable[[str, int | None], AbstractContextManager[Progress]]


@contextmanager
def _silent(name: str, total: int | None) -> Iterator[Progress]:
    del name, total
    yield lambda count: None


def silent_stages() -> Stages:
    """Stages that show nothing (the default)."""
    return _silent
