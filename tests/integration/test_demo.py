"""The main job, as a user runs it: `datadebit demo` exits 0 and every step holds."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_whole_flow_and_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "marketplace.cli", "demo"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "demo passed" in out
    for step in ("buyer A's plaintext equals the owner's file",
                 "before consent every gateway refuses B",
                 "B, revoked, cannot get version 2",
                 "a flipped bit in the store is refused",
                 "market's ether = unsettled escrow + credited balances",
                 "market's TUSD = unsettled escrow + credited balances",
                 "listing 2 \"Clinic visits near the stations\": 2 TUSD per 1d",
                 "B withdrew the unaccrued",
                 "An auditor replays the chain and the gateways' logs",
                 "audit clean: no violations",
                 "epoch 1 from a DKG",
                 "each gateway holds its own share",
                 "the committee key is byte-identical",
                 "buyer C decrypts a version published in epoch 1 from epoch-2 shares"):
        assert step in out
    assert "publishVersion" in out and "consent" in out
    assert "requestDebitWithPermit (needs consent)" in out  # the token feed, one transaction
