"""The browser's JavaScript, run under node's test runner (tests/web/js/*.test.mjs).

The modules in marketplace/web/static/js are checked against the Python's vectors
(tests/vectors/web.json, keyrelease.json, cid_vectors.json). The run must report every
test the files declare as passed: a run that found no tests, or fewer than declared,
fails here rather than passing silently.
"""

from __future__ import annotations

import mimetypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from marketplace.web.vendor import IMPORT_MAP, VENDOR_DIRS, VENDOR_URL, vendor_missing
from scripts.make_web_vectors import main as make_web_vectors

ROOT = Path(__file__).resolve().parents[2]
JS_TESTS = ROOT / "tests" / "web" / "js"
_DECLARED = re.compile(r"^test\(", re.MULTILINE)
#: The crypto helper's test files and how many tests each declares (other pages' JS
#: tests in the folder run too, and count in the total).
MINE = {
    "crypto.test.mjs": 17,
    "envelope_cid.test.mjs": 9,
    "keys.test.mjs": 14,
    "documents.test.mjs": 9,
}
_SUMMARY = re.compile(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", re.MULTILINE)


def _declared(path: Path) -> int:
    return len(_DECLARED.findall(path.read_text()))


def test_web_vectors_are_fresh() -> None:
    """tests/vectors/web.json is what scripts/make_web_vectors.py writes today."""
    assert make_web_vectors(["--check"]) == 0, "run: python scripts/make_web_vectors.py"


def test_js_crypto_agrees_with_the_python() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the web app's JavaScript tests need Node.js 20+")
    missing = vendor_missing()
    if missing is not None:
        pytest.fail(missing)
    files = sorted(JS_TESTS.glob("*.test.mjs"))
    counts = {p.name: _declared(p) for p in files}
    for name, expected in MINE.items():
        assert counts.get(name) == expected, f"{name}: {counts.get(name)} tests, not {expected}"
    declared = sum(counts.values())
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", *map(str, files)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    summary = {name: int(count) for name, count in _SUMMARY.findall(result.stdout)}
    failures = "\n".join(line for line in result.stdout.splitlines() if line.startswith("not ok"))
    tail = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, f"node --test failed:\n{failures}\n{tail}"
    assert summary.get("fail") == 0 and summary.get("cancelled") == 0, summary
    assert summary.get("skipped") == 0 and summary.get("todo") == 0, summary
    assert summary.get("pass") == summary.get("tests") == declared, (
        f"node ran {summary} but the files declare {declared} tests"
    )


_BARE_IMPORT = re.compile(r"""(?:^|;|\s)import\b[^'"]*?(?:from\s*)?["']([^./"'][^"']*)["']""")


def test_the_import_map_serves_every_bare_specifier_the_modules_import() -> None:
    """What node resolves from node_modules, the browser must resolve through the map,
    to a file inside the served folders (libsodium's wrapper imports libsodium-sumo)."""
    imports = IMPORT_MAP["imports"]
    sources = [*(ROOT / "marketplace" / "web" / "static" / "js").glob("*.js")]
    sources.append(VENDOR_DIRS["libsodium-wrappers-sumo"] / "libsodium-wrappers.mjs")
    used = {name for path in sources for name in _BARE_IMPORT.findall(path.read_text())}
    assert {"libsodium-wrappers-sumo", "libsodium-sumo"} <= used
    assert used <= set(imports), f"not in the import map: {used - set(imports)}"
    for url in imports.values():
        prefix, _, file = url.removeprefix(VENDOR_URL + "/").partition("/")
        assert (VENDOR_DIRS[prefix] / file).is_file(), url


def test_vendor_missing_names_npm_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert vendor_missing() is None
    monkeypatch.setitem(VENDOR_DIRS, "libsodium-sumo", tmp_path / "nothing")
    message = vendor_missing()
    assert message is not None
    assert "libsodium-sumo" in message and "npm install" in message
    assert mimetypes.guess_type("x.mjs")[0] == "text/javascript"
