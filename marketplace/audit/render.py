"""The human view of an audit: one row per check, then the violations and warnings."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from marketplace.audit.report import AuditReport

#: How many warnings to list before summarising the rest.
WARNINGS_SHOWN = 10


def print_report(report: AuditReport, console: Console) -> None:
    table = Table(title=f"audit of {report.market} at block {report.head} "
                        f"({report.seconds:.2f} s)")
    table.add_column("check")
    table.add_column("checked", justify="right")
    table.add_column("passed", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("pending", justify="right")
    for check in report.checks:
        failed = f"[red]{check.failed}[/]" if check.failed else "0"
        table.add_row(check.name, str(check.checked), str(check.checked - check.failed), failed,
                      str(check.pending))
    console.print(table)
    for violation in report.violations:
        console.print(f"[red]violation[/] {violation.kind}: {violation.detail}", markup=True,
                      highlight=False)
    for warning in report.warnings[:WARNINGS_SHOWN]:
        console.print(f"[yellow]warning[/] {warning.kind}: {warning.detail}", highlight=False)
    if len(report.warnings) > WARNINGS_SHOWN:
        console.print(f"[yellow]... and {len(report.warnings) - WARNINGS_SHOWN} more warnings[/]")
    if report.clean:
        console.print("[bold green]audit clean[/]: no violations")
    else:
        console.print(f"[bold red]audit failed[/]: {len(report.violations)} violation(s)")
