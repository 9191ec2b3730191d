"""Gateways over a real anvil: one anvil per session, a fresh market per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.servers.anvil import start_anvil


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    with start_anvil() as url:
        yield url
