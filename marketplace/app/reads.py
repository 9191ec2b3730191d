"""Chain reads the owner and buyer flows share: a listing's creation event (its
document URI and terms hash), an owner's listings and a buyer's debits, with state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from marketplace.chain.types import Debit, Listing, Wei
from marketplace.errors import MarketplaceError

if TYPE_CHECKING:  # web3: `debits_of` also serves the web3-free `LightMarket`
    from marketplace.chain.events import DebitRequested, ListingCreated
    from marketplace.chain.market import MarketClient


class DebitReads(Protocol):
    """What `debits_of` reads: `MarketClient` or the CLI's web3-free `LightMarket`."""

    def debit(self, debit_id: int) -> Debit: ...

    def debit_ids_requested_by(self, buyer: str, from_block: int = 0) -> list[int]: ...


class UnknownListing(MarketplaceError, LookupError):
    """No `ListingCreated` event for this listing from the block the reader starts at."""

    def __init__(self, listing_id: int, from_block: int) -> None:
        self.listing_id, self.from_block = listing_id, from_block
        super().__init__(
            f"no ListingCreated event for listing {listing_id} from block {from_block} on "
            "(wrong listing id, or is --from-block too high?)"
        )


@dataclass(frozen=True, slots=True)
class DebitView:
    """A debit as it stands now; `claimable` (what the owner could claim) when asked."""

    debit: Debit
    claimable: Wei | None = None


@dataclass(frozen=True, slots=True)
class ListingView:
    """A listing as it stands now, its creation event and the debits on it."""

    listing: Listing
    created: ListingCreated
    debits: tuple[DebitView, ...]


def topic(value: int | str) -> bytes:
    """A 32-byte indexed-topic value for an id or an address."""
    if isinstance(value, str):
        return bytes(12) + bytes.fromhex(value.removeprefix("0x"))
    return value.to_bytes(32, "big")


def listing_created(market: MarketClient, listing_id: int, from_block: int = 0
                    ) -> ListingCreated:
    """The listing's creation event: where its document is, and its terms hash."""
    from marketplace.chain.events import ListingCreated  # noqa: PLC0415

    events = market.events().read(from_block, kinds=[ListingCreated],
                                  indexed=[topic(listing_id)])
    found = [e for e in events if isinstance(e, ListingCreated)]
    if not found:
        raise UnknownListing(listing_id, from_block)
    return found[0]


def requested_on(market: MarketClient, listing_id: int, from_block: int = 0
                 ) -> list[DebitRequested]:
    """Every debit ever requested on a listing, in chain order."""
    from marketplace.chain.events import DebitRequested  # noqa: PLC0415

    events = market.events().read(from_block, kinds=[DebitRequested],
                                  indexed=[None, topic(listing_id)])
    return [e for e in events if isinstance(e, DebitRequested)]


def listings_of(market: MarketClient, owner: str, from_block: int = 0) -> list[ListingView]:
    """Listings created by `owner`, each with its debits and what is claimable on them."""
    from marketplace.chain.events import ListingCreated  # noqa: PLC0415

    created = market.events().read(from_block, kinds=[ListingCreated],
                                   indexed=[None, topic(owner)])
    views = []
    for event in created:
        if not isinstance(event, ListingCreated):
            continue
        debits = tuple(
            DebitView(market.debit(d.debit_id), market.claimable(d.debit_id))
            for d in requested_on(market, event.listing_id, from_block)
        )
        views.append(ListingView(market.listing(event.listing_id), event, debits))
    return views


def debits_of(market: DebitReads, buyer: str, from_block: int = 0) -> list[DebitView]:
    """Debits requested by `buyer`, with their current state."""
    return [DebitView(market.debit(i)) for i in market.debit_ids_requested_by(buyer, from_block)]
