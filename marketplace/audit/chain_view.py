"""The market's views, every one read at the audited block.

An audit pins one block and asks everything there, so a transaction mined while it runs
cannot make two checks disagree. `ChainView` is the protocol the checks use; tests may
pass a fake to construct states the contract itself would never reach.
"""

from __future__ import annotations

from typing import Protocol

from eth_typing import ChecksumAddress

from marketplace.audit.epochs import FinalizedEpoch
from marketplace.ceremony_chain import CeremonyReader
from marketplace.chain.aggregate import AggregateClient
from marketplace.chain.aggregate_types import AggregateDebit, Cohort
from marketplace.chain.errors import ChainUnavailable
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import endpoint_name
from marketplace.chain.types import ETHER, Committee, Debit, VersionRecord, Wei
from marketplace.keyrelease.ceremony import CeremonyView


class ChainView(Protocol):
    head: int

    def contract_balance(self, asset: str = ETHER) -> Wei:
        """What the market holds of `asset`: its ether, or the token's `balanceOf(market)`."""
        ...

    def balance_of(self, account: str, asset: str = ETHER) -> Wei: ...

    def debit(self, debit_id: int) -> Debit: ...

    def debit_count(self) -> int: ...

    def version(self, listing_id: int, version: int) -> VersionRecord: ...

    def version_count(self, listing_id: int) -> int: ...

    def committee(self) -> Committee: ...

    def is_entitled(self, debit_id: int, version: int, block: int) -> bool:
        """`isEntitled` as the chain answered at `block` (a historical call)."""
        ...

    def timestamp(self, block: int) -> int: ...

    def current_epoch(self) -> int: ...

    def finalized_epochs(self) -> list[FinalizedEpoch]:
        """Every epoch a `CommitteeFinalized` log made current, with `committeeAt`'s record."""
        ...

    def ceremony_view(self, epoch: FinalizedEpoch) -> CeremonyView:
        """The ceremony that made `epoch`, replayed from its `CeremonyMessage` logs as of
        the block that finalized it."""
        ...


class PinnedMarket:
    """A `MarketClient` whose views all read block `head`."""

    def __init__(self, market: MarketClient, head: int) -> None:
        self.market = market
        self.head = head
        self._timestamps: dict[int, int] = {}

    def contract_balance(self, asset: str = ETHER) -> Wei:
        return self.market.contract_balance(asset, block=self.head)

    def balance_of(self, account: str, asset: str = ETHER) -> Wei:
        return self.market.balance_of(account, asset, block=self.head)

    def debit(self, debit_id: int) -> Debit:
        return self.market.debit(debit_id, block=self.head)

    def debit_count(self) -> int:
        return self.market.debit_count(block=self.head)

    def version(self, listing_id: int, version: int) -> VersionRecord:
        return self.market.version(listing_id, version, block=self.head)

    def version_count(self, listing_id: int) -> int:
        return self.market.listing(listing_id, block=self.head).version_count

    def committee(self) -> Committee:
        return self.market.committee(block=self.head)

    def is_entitled(self, debit_id: int, version: int, block: int) -> bool:
        return self.market.is_entitled(debit_id, version, block=block)

    def current_epoch(self) -> int:
        return self.market.current_epoch(block=self.head)

    def finalized_epochs(self) -> list[FinalizedEpoch]:
        # from block 0 whatever the audit's from_block: every epoch's roster is needed
        logs = self.market.committee_finalized_logs(0, self.head)
        return [FinalizedEpoch(self.market.committee_at(log.epoch, block=self.head), log)
                for log in logs]

    def ceremony_view(self, epoch: FinalizedEpoch) -> CeremonyView:
        info = self.market.ceremony(epoch.record.ceremony_id, block=self.head)
        return CeremonyReader(self.market).view(
            info, to_block=epoch.start_block, now=self.timestamp(epoch.start_block)
        )

    def timestamp(self, block: int) -> int:
        if block not in self._timestamps:
            try:
                header = self.market.w3.eth.get_block(block)
            except OSError as e:
                raise ChainUnavailable(endpoint_name(self.market.w3), type(e).__name__) from e
            self._timestamps[block] = int(header["timestamp"])
        return self._timestamps[block]


class AggregateView(Protocol):
    """An AggregateMarket's views at the audited block (aggregate debits, DESIGN §10)."""

    head: int
    address: ChecksumAddress

    def cohort(self, cohort_id: int) -> Cohort: ...

    def aggregate(self, debit_id: int) -> AggregateDebit: ...

    def aggregate_count(self) -> int: ...

    def balance_of(self, account: str) -> Wei: ...

    def contract_balance(self) -> Wei:
        """The ether the AggregateMarket holds."""
        ...

    def timestamp(self, block: int) -> int: ...


class PinnedAggregator:
    """An `AggregateClient` whose views all read block `head`; block timestamps come from
    the market's pinned view (one cache for the whole audit)."""

    def __init__(self, client: AggregateClient, chain: ChainView) -> None:
        self.client = client
        self.chain = chain
        self.head = chain.head
        self.address = client.address

    def cohort(self, cohort_id: int) -> Cohort:
        return self.client.cohort(cohort_id, block=self.head)

    def aggregate(self, debit_id: int) -> AggregateDebit:
        return self.client.aggregate(debit_id, block=self.head)

    def aggregate_count(self) -> int:
        return self.client.aggregate_count(block=self.head)

    def balance_of(self, account: str) -> Wei:
        return self.client.balance_of(account, block=self.head)

    def contract_balance(self) -> Wei:
        return self.client.contract_balance(block=self.head)

    def timestamp(self, block: int) -> int:
        return self.chain.timestamp(block)
