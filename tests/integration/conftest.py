"""Integration-test plumbing: a failing test on a devstack shows the gateways' logs."""

from __future__ import annotations

from collections.abc import Generator

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach `stack.log_tails()` to the report of a failed test that used a `stack`
    fixture offering it (the devstack: one log per gateway process)."""
    report = yield
    if report.failed and report.when in ("call", "teardown"):
        stack = getattr(item, "funcargs", {}).get("stack")
        tails = getattr(stack, "log_tails", None)
        if callable(tails):
            report.sections.append(("gateway logs", str(tails())))
    return report
