"""Gas budgets of DESIGN §8, measured on the embedded chain (gas is deterministic)."""

from __future__ import annotations

import pytest

from marketplace.chain.provider import connect
from scripts.gas_report import BUDGETS, REPORT, GasRow, main, measure_gas, over_budget

TRANSACTIONS = {
    "deploy (3-node roster, ceremony 1 pending)",
    "finalizeCommittee (first epoch, n=3, t=2, 3 signatures)",
    "createListing", "updateListing", "publishVersion (first)",
    "publishVersion (later)", "requestDebit (auto-approve)", "requestDebit (manual)",
    "consent", "reject", "cancel", "revoke", "claim (1 debit)", "claim (5 debits)",
    "withdraw", "anchorReleases (first)", "anchorReleases (later)",
    "finalizeCommittee (first epoch, n=3, t=2, 2 signatures)",
    "finalizeCommittee (first epoch, n=5, t=3, 3 signatures)",
    "finalizeCommittee (first epoch, n=5, t=3, 5 signatures)",
    "finalizeCommittee (first epoch, n=10, t=7, 7 signatures)",
    "finalizeCommittee (first epoch, n=10, t=7, 10 signatures)",
    "finalizeCommittee (first epoch, n=16, t=11, 11 signatures)",
    "finalizeCommittee (first epoch, n=16, t=11, 16 signatures)",
    "proposeCommittee (reshare, n=16)",
    "approveCommittee (first)",
    "approveCommittee (t-th: opens the ceremony)",
    "postCeremonyMessage (DEALING, n=16, t=11: 1,859 bytes)",
    "finalizeCommittee (reshare, n=16 -> 16, t=11, 11 + 11 signatures)",
    "anchorReleases (previous epoch's node)",
    "createListing (ERC-20)", "approve (ERC-20, buyer to market)",
    "requestDebit (ERC-20, approved, auto-approve)",
    "requestDebit (ERC-20, permit, auto-approve)", "withdraw (ERC-20)",
    "deploy AggregateMarket", "createCohort", "joinCohort", "requestAggregate",
    "contribute (first)", "contribute (later)", "postAggregateRound",
    "claimContribution (first: fixes the payout)", "claimContribution (later)",
    "refundAggregate", "withdraw (AggregateMarket)",
}


@pytest.fixture(scope="module")
def rows() -> list[GasRow]:
    return measure_gas(connect())


def test_gasReport_measuresEveryTransaction(rows: list[GasRow]) -> None:
    assert {r.transaction for r in rows} == TRANSACTIONS
    assert all(r.gas_used > 21_000 for r in rows)


@pytest.mark.parametrize("transaction", sorted(BUDGETS))
def test_gas_withinDesignBudget(rows: list[GasRow], transaction: str) -> None:
    (row,) = [r for r in rows if r.transaction == transaction]
    assert row.budget == BUDGETS[transaction]
    assert row.gas_used <= BUDGETS[transaction]
    assert row.within_budget is True


def test_gasReport_committedReportIsCurrent(rows: list[GasRow]) -> None:
    """docs/gas-report.md shows what the committed contract costs now
    (regenerate with `python scripts/gas_report.py --anvil`)."""
    committed = {}
    for line in REPORT.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 2 and cells[1].replace(",", "").isdigit():
            committed[cells[0]] = int(cells[1].replace(",", ""))
    assert {r.transaction: r.gas_used for r in rows}.items() <= committed.items()


def test_gasReport_checkFailsOverBudget(capsys: pytest.CaptureFixture[str]) -> None:
    assert over_budget([GasRow("consent", 40_000, 40_000), GasRow("x", 10**6, None)]) == []
    over = GasRow("consent", 40_001, 40_000)
    assert over_budget([over]) == [over]
    assert over.within_budget is False
    assert main(["--check"]) == 0  # the real contract is within budget; nothing written
    assert "| consent |" in capsys.readouterr().out
