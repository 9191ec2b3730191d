"""The market as its events tell it: listings, versions, debits and release anchors.

Built from the market's own logs only (the event reader refuses any other emitter), in
chain order, up to the audited block. Nothing here is checked yet: the checks read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from marketplace.chain.events import (
    DebitCancelled,
    DebitConsented,
    DebitRejected,
    DebitRequested,
    DebitRevoked,
    EarningsClaimed,
    ListingCreated,
    MarketEvent,
    ReleasesAnchored,
    VersionPublished,
)

#: Events that move a debit after its request.
DebitEvent = DebitConsented | DebitRejected | DebitCancelled | DebitRevoked | EarningsClaimed


@dataclass
class DebitHistory:
    """A debit's request and everything that happened to it after, in chain order."""

    requested: DebitRequested
    later: list[DebitEvent] = field(default_factory=list)

    @property
    def active_since(self) -> int | None:
        """The block the debit became Active (auto-approval or consent), if it ever did."""
        if self.requested.auto_approved:
            return self.requested.ref.block_number
        for event in self.later:
            if isinstance(event, DebitConsented):
                return event.ref.block_number
        return None

    @property
    def term(self) -> tuple[int, int] | None:
        """(start, end) once Active, from the event that activated it."""
        if self.requested.auto_approved:
            return self.requested.start, self.requested.end
        for event in self.later:
            if isinstance(event, DebitConsented):
                return event.start, event.end
        return None


@dataclass
class MarketHistory:
    """Everything the market's events say, up to block `head`."""

    head: int
    events: list[MarketEvent]
    listings: dict[int, ListingCreated] = field(default_factory=dict)
    versions: dict[tuple[int, int], VersionPublished] = field(default_factory=dict)
    debits: dict[int, DebitHistory] = field(default_factory=dict)
    anchors: dict[str, list[ReleasesAnchored]] = field(default_factory=dict)
    #: debit events naming a debit no `DebitRequested` created (checked as transitions)
    orphans: list[DebitEvent] = field(default_factory=list)

    @classmethod
    def from_events(cls, events: Iterable[MarketEvent], head: int) -> MarketHistory:
        ordered = sorted(events, key=lambda e: (e.ref.block_number, e.ref.log_index))
        history = cls(head=head, events=ordered)
        for event in ordered:
            history._add(event)
        return history

    def _add(self, event: MarketEvent) -> None:
        if isinstance(event, ListingCreated):
            self.listings[event.listing_id] = event
        elif isinstance(event, VersionPublished):
            self.versions[(event.listing_id, event.version)] = event
        elif isinstance(event, DebitRequested):
            self.debits[event.debit_id] = DebitHistory(event)
        elif isinstance(event, ReleasesAnchored):
            self.anchors.setdefault(event.node.lower(), []).append(event)
        elif isinstance(event, DebitEvent):
            debit = self.debits.get(event.debit_id)
            if debit is None:
                self.orphans.append(event)
            else:
                debit.later.append(event)

    def anchored_count(self, node: str) -> int:
        """How many log entries a node's anchors cover in all."""
        return sum(a.count for a in self.anchors.get(node.lower(), []))

    def release_bound(self) -> int:
        """How many releases a node can have made by `head`: one per (debit, version of its
        listing); each costs a transaction, so a node's claims beyond it are not believed."""
        versions: dict[int, int] = {}
        for listing_id, _ in self.versions:
            versions[listing_id] = versions.get(listing_id, 0) + 1
        return sum(versions.get(d.requested.listing_id, 0) for d in self.debits.values())

    def anchors_of(self, node: str) -> list[ReleasesAnchored]:
        """A node's anchors in the order the contract numbered them."""
        return sorted(self.anchors.get(node.lower(), []), key=lambda a: a.seq)
