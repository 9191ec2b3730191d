"""On an honest run every check passes, and every check actually looked at something."""

from __future__ import annotations

from marketplace.audit.auditor import NODES
from marketplace.audit.balances import NAME as BALANCES
from marketplace.audit.ceremonies import CEREMONIES
from marketplace.audit.content import NAME as CONTENT
from marketplace.audit.releases import ANCHORING, ENTITLEMENT, REQUESTS, SIGNATURES
from marketplace.audit.transitions import NAME as TRANSITIONS
from tests.audit.scenario import Scenario, warning_kinds


def test_audit_passesOn_anHonestRun(scenario: Scenario) -> None:
    report = scenario.auditor().run()
    assert report.clean, report.violations
    assert warning_kinds(report) == []
    names = [c.name for c in report.checks]
    assert names == [BALANCES, TRANSITIONS, CONTENT, CEREMONIES, NODES, SIGNATURES, ANCHORING,
                     ENTITLEMENT, REQUESTS]
    for check in report.checks:
        assert check.checked > 0 and check.failed == 0, check
    assert report.check(CONTENT).checked == 3
    assert report.check(NODES).checked == 3
    # two (debit, version) pairs released by each of the three nodes
    assert report.check(SIGNATURES).checked == 6
    assert report.check(ANCHORING).checked == 6
    assert report.check(ENTITLEMENT).checked == 6
    assert report.check(REQUESTS).checked == 6
    assert report.head == scenario.net.market.w3.eth.block_number
