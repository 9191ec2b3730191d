"""Compile contracts/*.sol into the committed artifacts in contracts/artifacts/.

The runtime never compiles: it loads these artifacts. `--check` recompiles and fails when
a committed artifact differs from what the sources give now (CI runs it).

The compiler is the pinned npm `solc` (solcjs) behind scripts/solcjs-standard-json.js,
driven by py-solc-x; a native solc of exactly the pinned version is used instead when
one is on PATH (same output, faster).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import solcx

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "contracts"
ARTIFACTS = CONTRACTS / "artifacts"
WRAPPER = ROOT / "scripts" / "solcjs-standard-json.js"
CONTRACT_NAMES = ("DataMarket", "DevStablecoin")

SETTINGS: dict[str, Any] = {
    "evmVersion": "cancun",
    "optimizer": {"enabled": True, "runs": 10_000},
    "viaIR": True,
    "metadata": {"bytecodeHash": "none"},
    "outputSelection": {
        "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]},
    },
}


def pinned_solc_version() -> str:
    package = json.loads((ROOT / "package.json").read_text())
    return str(package["devDependencies"]["solc"])


def solc_binary(version: str) -> Path:
    native = shutil.which("solc")
    if native:
        out = subprocess.run([native, "--version"], capture_output=True, text=True, check=False)
        if f"Version: {version}+" in out.stdout:
            return Path(native)
    if not (ROOT / "node_modules" / "solc").is_dir():
        sys.exit("compile_contracts: npm tools missing; run `npm ci` (bash scripts/dev test does)")
    return WRAPPER


def compile_all() -> dict[str, dict[str, Any]]:
    version = pinned_solc_version()
    sources = {p.name: {"content": p.read_text()} for p in sorted(CONTRACTS.glob("*.sol"))}
    output = solcx.compile_standard(
        {"language": "Solidity", "sources": sources, "settings": SETTINGS},
        solc_binary=solc_binary(version),
        allow_empty=False,
    )
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        sys.exit("\n".join(e["formattedMessage"] for e in errors))
    used = sorted(output["sources"])
    source_hash = hashlib.sha256()
    for name in used:
        source_hash.update(name.encode() + b"\0" + _read_source(name).encode() + b"\0")
    source_hash.update(json.dumps(SETTINGS, sort_keys=True).encode())
    artifacts = {}
    for name in CONTRACT_NAMES:
        compiled = output["contracts"][f"{name}.sol"][name]
        artifacts[name] = {
            "contractName": name,
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            "compiler": {"solc": version, "settings": SETTINGS},
            "sources": used,
            "sourceHash": "0x" + source_hash.hexdigest(),
        }
    return artifacts


def _read_source(name: str) -> str:
    for base in (CONTRACTS, ROOT / "node_modules"):
        if (base / name).is_file():
            return (base / name).read_text()
    raise FileNotFoundError(name)


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if an artifact is stale")
    args = parser.parse_args()
    artifacts = compile_all()
    stale = []
    for name, artifact in artifacts.items():
        path = ARTIFACTS / f"{name}.json"
        text = render(artifact)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.relative_to(ROOT))
            continue
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        runtime = len(artifact["deployedBytecode"]) // 2 - 1
        print(f"wrote {path.relative_to(ROOT)} ({runtime} bytes runtime)")
    if stale:
        print(
            "stale contract artifacts: " + ", ".join(map(str, stale)),
            "\nrun: .venv/bin/python scripts/compile_contracts.py, and commit the result",
            file=sys.stderr,
        )
        return 1
    if args.check:
        print("contract artifacts are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
