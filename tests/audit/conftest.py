from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audit.scenario import Scenario, build_scenario

# fastapi.testclient (the in-process gateways' transport) warns about its own httpx use.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    built = build_scenario(tmp_path)
    yield built
    built.net.close()
