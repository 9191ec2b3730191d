"""Fixtures shared across test packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.servers.anvil import start_anvil


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    """One real anvil for the session; tests that use it deploy their own market."""
    with start_anvil() as url:
        yield url
