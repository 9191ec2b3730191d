"""The README's Python SDK example runs as written (so the README stays true): the code
block after its marker comment is executed, and what it prints is what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- the block below runs as tests/app/test_readme_example.py -->"


def example() -> str:
    text = README.read_text()
    found = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", text, re.DOTALL)
    assert found is not None, "README lost its Python SDK example"
    return found.group(1)


def test_the_readme_sdk_example_runs_and_prints_what_it_claims(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = example()
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)  # our own README
    printed = capsys.readouterr().out.splitlines()
    claimed = [line.split("# ", 1)[1] for line in code.splitlines()
               if line.startswith("print(") and "# " in line]
    assert printed == claimed == ["Air quality, Lyon 0.001 ETH", "48.0"]
    assert namespace["rows"] == [{"station": "ST-001", "pm25": "12.5"},
                                 {"station": "ST-002", "pm25": "48.0"}]
