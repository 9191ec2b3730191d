"""Showing listings, debits and requests: rich tables for people, JSON for scripts (both
on stdout); notes about what happened go to stderr so stdout stays parseable. Amounts are
shown in the listing's asset (ETH, or a token's symbol and decimals) and periods as
durations in tables; JSON keeps base units (wei) and seconds."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from marketplace.app.units import format_duration, format_eth, format_in
from marketplace.chain.types import Debit, DebitState

if TYPE_CHECKING:
    from marketplace.app.owner import PendingRequest
    from marketplace.app.reads import DebitView, ListingView
    from marketplace.chain.assets import AssetInfo


def note(message: str) -> None:
    """A progress or state line for the person at the terminal (stderr)."""
    typer.echo(message, err=True)


def eth_amount(wei: int) -> str:
    """`0.003 ETH (3000000000000000 wei)`: exact, no float anywhere."""
    return f"{format_eth(wei)} ({wei} wei)"


def asset_amount(units: int, asset: AssetInfo) -> str:
    """`5.25 TUSD (5250000 base units)` for a token, `eth_amount` for ether: exact."""
    if asset.is_ether:
        return eth_amount(units)
    if asset.symbol is None:
        return f"{units} base units of token {asset.address}"
    return f"{format_in(units, asset.decimals, asset.symbol)} ({units} base units)"


def asset_fields(asset: AssetInfo) -> dict[str, Any]:
    """How a record's amounts are written, for JSON and for the tables."""
    return {"asset": asset.address, "asset_symbol": asset.symbol,
            "asset_decimals": asset.decimals}


def _shown(units: int, record: dict[str, Any]) -> str:
    """An amount of a record that may name its asset (`asset_fields`); ether otherwise."""
    if "asset_decimals" not in record:
        return format_eth(units)
    if record["asset_symbol"] is None:
        return f"{units} units"
    return format_in(units, record["asset_decimals"], record["asset_symbol"])


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


def view_record(view: DebitView) -> dict[str, Any]:
    return debit_record(view.debit, claimable=view.claimable)


def listing_record(view: ListingView, asset: AssetInfo | None = None) -> dict[str, Any]:
    """A listing and its debits; with `asset`, each says how its amounts are written."""
    listing = view.listing
    named = {} if asset is None else asset_fields(asset)
    return {
        "listing": listing.listing_id,
        "owner": listing.owner,
        "price_per_period": listing.price_per_period,
        "period_seconds": listing.period_seconds,
        "versions": listing.version_count,
        "auto_approve": listing.auto_approve,
        "open": listing.open,
        "metadata_uri": view.created.metadata_uri,
        **named,
        "debits": [{**view_record(d), **named} for d in view.debits],
    }


def request_record(request: PendingRequest) -> dict[str, Any]:
    """A pending request for JSON: the purpose document as the buyer wrote it, or why
    it could not be read (`purpose_problem`: a DocumentError reason code)."""
    return {
        **debit_record(request.debit),
        "periods": request.periods,
        "purpose_hash": "0x" + request.purpose_hash.hex(),
        "purpose": None if request.purpose is None
        else request.purpose.model_dump(mode="json", by_alias=True),
        "purpose_problem": None if request.problem is None else request.problem.reason,
        "purpose_error": None if request.problem is None else str(request.problem),
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
            when(r["end"]), _shown(r["amount"], r), _shown(r["settled"], r),
        ]
        if has_claimable:
            row.append(_shown(r["claimable"], r) if "claimable" in r else "")
        table.add_row(*row)
    _console().print(table)


def print_listings(records: Sequence[dict[str, Any]]) -> None:
    table = Table(title="listings")
    for column in ("listing", "price/period", "period", "versions", "approval", "open"):
        table.add_column(column)
    for r in records:
        table.add_row(
            str(r["listing"]), _shown(r["price_per_period"], r),
            format_duration(r["period_seconds"]), str(r["versions"]),
            "auto" if r["auto_approve"] else "consent", "yes" if r["open"] else "no",
        )
    _console().print(table)
    debits = [d for r in records for d in r["debits"]]
    if debits:
        print_debits("debits on these listings", debits)


def print_inbox(
    requests: Sequence[PendingRequest], assets: dict[int, AssetInfo] | None = None
) -> None:
    """Each pending request as a block: who asks, what they pay (in the listing's asset,
    `assets` by listing id; ether when absent), and their purpose in their words
    (verified against the on-chain hash), or why it cannot be shown."""
    out = _console()
    for request in requests:
        debit = request.debit
        asset = (assets or {}).get(debit.listing_id)
        paid = format_eth(debit.amount) if asset is None \
            else _shown(debit.amount, asset_fields(asset))
        out.print(
            f"[bold]debit {debit.debit_id}[/] on listing {debit.listing_id}: "
            f"{debit.buyer} pays {paid} for {request.periods} period(s)",
            markup=True, highlight=False,
        )
        for line in purpose_lines(request):
            out.print(f"   {line}", markup=False, highlight=False)
        out.print(f"   decide: datadebit owner consent {debit.debit_id}  |  "
                  f"datadebit owner reject {debit.debit_id}", markup=False, highlight=False)


def purpose_lines(request: PendingRequest) -> list[str]:
    if not request.declared:
        return ["purpose: none declared (the on-chain purpose hash is zero)"]
    if request.problem is not None:
        return [f"purpose: NOT SHOWN ({request.problem.reason}): {request.problem}",
                f"purpose hash: 0x{request.purpose_hash.hex()}"]
    doc = request.purpose
    assert doc is not None  # declared, no problem: read_purpose returned the document
    lines = [f"requester: {doc.requester}", f"purpose (verified): {doc.purpose}"]
    for label, value in (("intended use", doc.intended_use), ("retention", doc.retention),
                         ("contact", doc.contact)):
        if value:
            lines.append(f"{label}: {value}")
    return lines


def _console() -> Console:
    # wide enough that addresses are not wrapped when stdout is a pipe or a file
    return Console() if sys.stdout.isatty() else Console(width=200)
