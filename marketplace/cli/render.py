"""Showing listings and debits: rich tables for people, JSON for scripts (both on stdout);
notes about what happened go to stderr so stdout stays parseable."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from marketplace.chain.types import Debit, DebitState, Listing


def note(message: str) -> None:
    """A progress or state line for the person at the terminal (stderr)."""
    typer.echo(message, err=True)


def when(timestamp: int) -> str:
    """A block timestamp as UTC ISO-8601, or "-" for none."""
    if timestamp <= 0:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def state_name(state: DebitState) -> str:
    return state.name.lower()


def debit_line(debit: Debit) -> str:
    """One line: what a debit is now, e.g. `debit 3: active until 2026-...`."""
    state = state_name(debit.state)
    if debit.state is DebitState.ACTIVE:
        return f"debit {debit.debit_id}: active from {when(debit.start)} until {when(debit.end)}"
    if debit.state is DebitState.REQUESTED:
        return f"debit {debit.debit_id}: requested, waiting for the owner's consent"
    return f"debit {debit.debit_id}: {state}"


def debit_record(debit: Debit, *, claimable: int | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "debit": debit.debit_id,
        "listing": debit.listing_id,
        "buyer": debit.buyer,
        "state": state_name(debit.state),
        "start": debit.start,
        "end": debit.end,
        "duration": debit.duration,
        "amount": debit.amount,
        "settled": debit.settled,
    }
    if claimable is not None:
        record["claimable"] = claimable
    return record


def listing_record(listing: Listing, debits: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "listing": listing.listing_id,
        "owner": listing.owner,
        "price_per_period": listing.price_per_period,
        "period_seconds": listing.period_seconds,
        "versions": listing.version_count,
        "auto_approve": listing.auto_approve,
        "open": listing.open,
        "debits": list(debits),
    }


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def print_debits(title: str, records: Sequence[dict[str, Any]]) -> None:
    table = Table(title=title)
    for column in ("debit", "listing", "buyer", "state", "start", "end", "amount", "settled"):
        table.add_column(column, justify="right" if column in ("amount", "settled") else "left")
    has_claimable = any("claimable" in r for r in records)
    if has_claimable:
        table.add_column("claimable", justify="right")
    for r in records:
        row = [
            str(r["debit"]), str(r["listing"]), r["buyer"], r["state"], when(r["start"]),
            when(r["end"]), str(r["amount"]), str(r["settled"]),
        ]
        if has_claimable:
            row.append(str(r.get("claimable", "")))
        table.add_row(*row)
    _console().print(table)


def print_listings(records: Sequence[dict[str, Any]]) -> None:
    table = Table(title="listings (amounts in wei)")
    for column in ("listing", "price/period", "period s", "versions", "approval", "open"):
        table.add_column(column)
    for r in records:
        table.add_row(
            str(r["listing"]), str(r["price_per_period"]), str(r["period_seconds"]),
            str(r["versions"]), "auto" if r["auto_approve"] else "consent",
            "yes" if r["open"] else "no",
        )
    _console().print(table)
    debits = [d for r in records for d in r["debits"]]
    if debits:
        print_debits("debits on these listings (amounts in wei)", debits)


def _console() -> Console:
    # wide enough that addresses are not wrapped when stdout is a pipe or a file
    return Console() if sys.stdout.isatty() else Console(width=200)
