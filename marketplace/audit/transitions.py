"""Check 2: every debit moved only along the contract's state machine, and every listing's
versions were numbered 1, 2, 3... — replayed from events, compared with the chain's views.

    Requested --consent--> Active --revoke--> Revoked
    Requested --reject---> Rejected
    Requested --cancel---> Cancelled
    (auto-approved debits start Active; claims happen only while Active)
"""

from __future__ import annotations

from marketplace.audit.chain_view import ChainView
from marketplace.audit.history import DebitHistory, MarketHistory
from marketplace.audit.report import CheckRun
from marketplace.chain.errors import ContractRevert
from marketplace.chain.events import (
    DebitCancelled,
    DebitConsented,
    DebitRejected,
    DebitRevoked,
    EarningsClaimed,
)
from marketplace.chain.types import DebitState

NAME = "state transitions"

#: (state before, event kind) -> state after; anything missing is illegal.
_MOVES: dict[tuple[DebitState, type], DebitState] = {
    (DebitState.REQUESTED, DebitConsented): DebitState.ACTIVE,
    (DebitState.REQUESTED, DebitRejected): DebitState.REJECTED,
    (DebitState.REQUESTED, DebitCancelled): DebitState.CANCELLED,
    (DebitState.ACTIVE, DebitRevoked): DebitState.REVOKED,
    (DebitState.ACTIVE, EarningsClaimed): DebitState.ACTIVE,
}


def replay_state(debit: DebitHistory, run: CheckRun) -> tuple[DebitState, bool]:
    """The state the events lead to, and whether every step was legal."""
    state = DebitState.ACTIVE if debit.requested.auto_approved else DebitState.REQUESTED
    legal = True
    for event in debit.later:
        after = _MOVES.get((state, type(event)))
        if after is None:
            legal = False
            run.violation(
                "illegal_transition",
                f"debit {event.debit_id}: {type(event).__name__} while {state.name}",
                debitId=event.debit_id, block=event.ref.block_number,
            )
            continue
        state = after
    return state, legal


def check_transitions(history: MarketHistory, chain: ChainView) -> CheckRun:
    run = CheckRun(NAME)
    for orphan in history.orphans:
        run.violation(
            "illegal_transition",
            f"{type(orphan).__name__} for debit {orphan.debit_id}, which was never requested",
            debitId=orphan.debit_id, block=orphan.ref.block_number,
        )
    for debit_id, debit in sorted(history.debits.items()):
        state, legal = replay_state(debit, run)
        try:
            on_chain = chain.debit(debit_id).state
        except ContractRevert as e:
            on_chain = DebitState.NONE
            detail = f"the chain refuses it ({e})"
        else:
            detail = f"the chain says {on_chain.name}"
        if on_chain is not state:
            legal = False
            run.violation(
                "state_mismatch", f"debit {debit_id}: events lead to {state.name}, {detail}",
                debitId=debit_id,
            )
        run.count(legal)
    _check_debit_count(history, chain, run)
    _check_version_numbers(history, chain, run)
    return run


def _check_debit_count(history: MarketHistory, chain: ChainView, run: CheckRun) -> None:
    ids = sorted(history.debits)
    expected = list(range(1, len(ids) + 1))
    on_chain = chain.debit_count()
    if ids != expected or on_chain != len(ids):
        run.violation(
            "state_mismatch",
            f"events request {len(ids)} debits (ids {ids[:3]}...), the chain counts {on_chain}",
        )


def _check_version_numbers(history: MarketHistory, chain: ChainView, run: CheckRun) -> None:
    """Each listing's versions are 1..k, published after the listing, k as the chain says."""
    by_listing: dict[int, list[int]] = {}
    for listing_id, version in sorted(history.versions):
        by_listing.setdefault(listing_id, []).append(version)
    for listing_id in sorted(set(history.listings) | set(by_listing)):
        numbers = by_listing.get(listing_id, [])
        ok = listing_id in history.listings and numbers == list(range(1, len(numbers) + 1))
        if ok:
            try:
                ok = chain.version_count(listing_id) == len(numbers)
            except ContractRevert:
                ok = False
        if not ok:
            run.violation(
                "version_sequence",
                f"listing {listing_id}: versions {numbers} do not match the chain's count",
                listingId=listing_id,
            )
        run.count(ok)
