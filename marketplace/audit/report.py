"""What an audit found: one row per check and every violation, with a stable JSON schema.

A *violation* is something that must not happen (exit 1); a *warning* is something that is
fine now but must resolve later (a release its node has not anchored yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Version of the JSON document `AuditReport.to_json` writes.
SCHEMA_VERSION = 1

Fields = Mapping[str, int | str]


@dataclass(frozen=True, slots=True)
class Finding:
    """One violation or warning: a stable `kind`, the check that raised it, a sentence."""

    kind: str
    check: str
    detail: str
    fields: Fields = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "check": self.check, "detail": self.detail, **self.fields}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """How many items a check looked at, how many failed, how many wait (pending)."""

    name: str
    checked: int
    failed: int
    pending: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "checked": self.checked, "failed": self.failed,
            "pending": self.pending,
        }


class CheckRun:
    """Collects one check's counts and findings as it goes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.checked = 0
        self.failed = 0
        self.pending = 0
        self.violations: list[Finding] = []
        self.warnings: list[Finding] = []

    def count(self, ok: bool) -> None:
        """One more item examined; `ok` says whether it passed."""
        self.checked += 1
        if not ok:
            self.failed += 1

    def violation(self, kind: str, detail: str, **fields: int | str) -> None:
        self.violations.append(Finding(kind, self.name, detail, fields))

    def warning(self, kind: str, detail: str, **fields: int | str) -> None:
        self.warnings.append(Finding(kind, self.name, detail, fields))

    def result(self) -> CheckResult:
        return CheckResult(self.name, self.checked, self.failed, self.pending)


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Everything one audit run found, at one pinned block (`head`)."""

    head: int
    chain_id: int
    market: str
    checks: tuple[CheckResult, ...]
    violations: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    seconds: float = 0.0

    @classmethod
    def from_runs(
        cls, head: int, chain_id: int, market: str, runs: list[CheckRun], seconds: float
    ) -> AuditReport:
        return cls(
            head=head,
            chain_id=chain_id,
            market=market,
            checks=tuple(r.result() for r in runs),
            violations=tuple(v for r in runs for v in r.violations),
            warnings=tuple(w for r in runs for w in r.warnings),
            seconds=seconds,
        )

    @property
    def clean(self) -> bool:
        return not self.violations

    def check(self, name: str) -> CheckResult:
        for result in self.checks:
            if result.name == name:
                return result
        raise KeyError(name)

    def kinds(self) -> set[str]:
        """The kinds of violation found (handy for tests and scripts)."""
        return {v.kind for v in self.violations}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "head": self.head,
            "chainId": self.chain_id,
            "market": self.market,
            "clean": self.clean,
            "seconds": round(self.seconds, 3),
            "checks": [c.to_json() for c in self.checks],
            "violations": [v.to_json() for v in self.violations],
            "warnings": [w.to_json() for w in self.warnings],
        }
