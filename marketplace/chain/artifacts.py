"""Load the committed contract artifacts; the runtime never compiles Solidity."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from marketplace.errors import MarketplaceError

#: contracts/artifacts in the source tree (the project installs editable).
DEFAULT_ARTIFACTS = Path(__file__).resolve().parents[2] / "contracts" / "artifacts"


class ArtifactMissing(MarketplaceError, FileNotFoundError):
    """The compiled contract artifact is not where it should be."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"contract artifact not found at {path}; run scripts/compile_contracts.py "
            "or set DATADEBIT_ARTIFACTS to the folder holding it"
        )


@dataclass(frozen=True, slots=True)
class ContractArtifact:
    """What deployment and calls need: ABI and creation bytecode, plus provenance."""

    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: str
    deployed_bytecode: str
    solc_version: str
    source_hash: str


@cache
def load_artifact(name: str = "DataMarket") -> ContractArtifact:
    """The named artifact, from DATADEBIT_ARTIFACTS or contracts/artifacts."""
    folder = Path(os.environ.get("DATADEBIT_ARTIFACTS", DEFAULT_ARTIFACTS))
    path = folder / f"{name}.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ArtifactMissing(path) from e
    return ContractArtifact(
        name=raw["contractName"],
        abi=tuple(raw["abi"]),
        bytecode=raw["bytecode"],
        deployed_bytecode=raw["deployedBytecode"],
        solc_version=raw["compiler"]["solc"],
        source_hash=raw["sourceHash"],
    )
