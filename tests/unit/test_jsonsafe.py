"""Deeply nested JSON from a hostile node is refused, never a crash.

py_ecc (imported with eth_account) raises Python's recursion limit to 100,000, so
`json.loads` of a few hundred KB of `[` overflows the C stack and the process dies with
SIGSEGV: before `marketplace.jsonsafe`, a node serving such a release-log page (the auditor
accepts pages up to 4 MiB) killed `datadebit audit`. Each case runs in a fresh interpreter,
so a regression shows as a crashed child, not a crashed test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

AUDITOR = """
import eth_account, httpx
from marketplace.audit.release_log import HttpReleaseLog, MalformedReleaseLog
class Body(httpx.SyncByteStream):
    def __iter__(self):
        for _ in range(32):
            yield b"[" * 65_536  # 2 MiB of `[`, within the 4 MiB page limit
client = httpx.Client(base_url="http://node", transport=httpx.MockTransport(
    lambda request: httpx.Response(200, stream=Body())))
try:
    HttpReleaseLog(1, client).page(0, 10)
except MalformedReleaseLog as e:
    print("refused:", e)
"""

KEY_CLIENT = """
import eth_account
from marketplace.keyclient import GatewayAnswerError, _parsed
try:
    _parsed(200, b"[" * 60_000)
except GatewayAnswerError as e:
    print("refused:", e)
"""



@pytest.mark.parametrize("script", [AUDITOR, KEY_CLIENT], ids=["auditor", "key-client"])
def test_deep_nesting_is_refused_not_a_crash(script: str) -> None:
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.startswith("refused:"), done.stdout


def test_jsonsafe_parses_what_json_does_and_refuses_deep_nesting() -> None:
    import json  # noqa: PLC0415

    from marketplace import jsonsafe  # noqa: PLC0415

    value = {"a": [1, 2**80, {"b": None}], "c": "x"}
    assert jsonsafe.loads(json.dumps(value)) == value
    assert jsonsafe.loads(b"[" * 150 + b"]" * 150) is not None
    for bad in (b"[" * 300 + b"]" * 300, b"{", b"", b"\xff"):
        with pytest.raises(ValueError):
            jsonsafe.loads(bad)
