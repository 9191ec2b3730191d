"""A typed client of the AggregateMarket contract (aggregate debits, DESIGN §10).

Same conventions as `marketplace.chain.market`: transactions signed locally, reverts
surfaced as named exceptions (the AggregateMarket's errors from
`marketplace.chain.aggregate_types`, and the DataMarket's for anything its committee views
raise), events decoded only from this contract's address.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount
from eth_typing import BlockIdentifier, ChecksumAddress
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from marketplace.chain.aggregate_types import (
    AggregateDebit,
    AggregateEvent,
    AggregateEventDecoder,
    AggregateEventType,
    AggregateId,
    AggregateRefunded,
    AggregateRequested,
    AggregateRoundPosted,
    AggregateWithdrawn,
    Cohort,
    CohortCreated,
    CohortId,
    ContributionClaimed,
    ContributionRecorded,
    EpsilonMicros,
)
from marketplace.chain.artifacts import ContractArtifact, load_artifact
from marketplace.chain.errors import ChainUnavailable, TransactionFailed
from marketplace.chain.market import ContractClient, _send, _sent
from marketplace.chain.provider import endpoint_name
from marketplace.chain.reverts import RevertDecoder
from marketplace.chain.types import Sent, Wei

E = TypeVar("E", bound=AggregateEvent)

ARTIFACT_NAME = "AggregateMarket"


class AggregateClient(ContractClient[AggregateEvent]):
    """One deployed AggregateMarket: every transaction and view, typed."""

    decoder: AggregateEventDecoder

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        artifact: ContractArtifact | None = None,
        tx_timeout: float = 120.0,
    ) -> None:
        self.artifact = artifact or load_artifact(ARTIFACT_NAME)
        self.w3 = w3
        self.address: ChecksumAddress = to_checksum_address(address)
        self.contract: Contract = w3.eth.contract(address=self.address, abi=list(self.artifact.abi))
        self.decoder = AggregateEventDecoder(w3, self.address, self.artifact.abi)
        self._reverts = _revert_decoder(self.artifact)
        self._tx_timeout = tx_timeout
        self._endpoint = endpoint_name(w3)

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        deployer: LocalAccount,
        market: str,
        *,
        artifact: ContractArtifact | None = None,
    ) -> Sent[AggregateClient]:
        """Deploy an AggregateMarket served by the committee of the DataMarket `market`."""
        artifact = artifact or load_artifact(ARTIFACT_NAME)
        factory = w3.eth.contract(abi=list(artifact.abi), bytecode=artifact.bytecode)
        ctor = factory.constructor(to_checksum_address(market))
        receipt = _send(w3, deployer, ctor, 0, _revert_decoder(artifact), 120.0)
        address = receipt["contractAddress"]
        if address is None:
            raise TransactionFailed(receipt["transactionHash"].hex(), "no contract created")
        return _sent(cls(w3, address, artifact=artifact), receipt)

    # ------------------------------------------------------------ cohorts

    def create_cohort(
        self,
        admin: LocalAccount,
        *,
        schema_hash: bytes,
        schema_uri: str,
        epsilon_cap: int,
        min_contributors: int,
    ) -> Sent[CohortId]:
        """A cohort administered by `admin`; `epsilon_cap` in micro-units (see
        `aggregate_types.epsilon_micros`)."""
        fn = self.contract.functions.createCohort(
            schema_hash, schema_uri, epsilon_cap, min_contributors)
        receipt = self._transact(admin, fn)
        return _sent(self._only(receipt, CohortCreated).cohort_id, receipt)

    def join_cohort(self, owner: LocalAccount, cohort_id: int) -> Sent[None]:
        return _sent(None, self._transact(owner, self.contract.functions.joinCohort(cohort_id)))

    def leave_cohort(self, owner: LocalAccount, cohort_id: int) -> Sent[None]:
        return _sent(None, self._transact(owner, self.contract.functions.leaveCohort(cohort_id)))

    # ------------------------------------------------------------ aggregate debits

    def request_aggregate(
        self,
        buyer: LocalAccount,
        cohort_id: int,
        *,
        query_hash: bytes,
        query_uri: str,
        epsilon: int,
        deadline: int,
        price: int,
    ) -> Sent[AggregateId]:
        """Pay `price` wei for one query; `epsilon` in micro-units, `deadline` unix seconds."""
        fn = self.contract.functions.requestAggregate(
            cohort_id, query_hash, query_uri, epsilon, deadline)
        receipt = self._transact(buyer, fn, value=price)
        return _sent(self._only(receipt, AggregateRequested).debit_id, receipt)

    def contribute(self, owner: LocalAccount, debit_id: int, bundle_cid: bytes) -> Sent[None]:
        """Record the owner's contribution bundle (its binary CID) before the deadline."""
        fn = self.contract.functions.contribute(debit_id, bundle_cid)
        return _sent(None, self._transact(owner, fn))

    def post_round(
        self, node: LocalAccount, debit_id: int, round_number: int, cid: bytes
    ) -> Sent[None]:
        """Post a node's aggregation round (`aggregate_types.ROUND_*`) by its payload's CID."""
        fn = self.contract.functions.postAggregateRound(debit_id, round_number, cid)
        return _sent(None, self._transact(node, fn))

    def claim_contribution(self, owner: LocalAccount, debit_id: int) -> Sent[Wei]:
        """Credit the owner's share of a paid-out debit; the value is the share."""
        receipt = self._transact(owner, self.contract.functions.claimContribution(debit_id))
        return _sent(self._only(receipt, ContributionClaimed).amount, receipt)

    def refund(self, sender: LocalAccount, debit_id: int) -> Sent[Wei]:
        """Refund a debit with fewer than k contributions (anyone may send it); the value is
        what was credited to the buyer."""
        receipt = self._transact(sender, self.contract.functions.refundAggregate(debit_id))
        return _sent(self._only(receipt, AggregateRefunded).refund, receipt)

    def withdraw(self, account: LocalAccount) -> Sent[Wei]:
        """Pay out the account's credited balance."""
        receipt = self._transact(account, self.contract.functions.withdraw())
        return _sent(self._only(receipt, AggregateWithdrawn).amount, receipt)

    # ------------------------------------------------------------ views

    def market_address(self, *, block: BlockIdentifier = "latest") -> ChecksumAddress:
        """The DataMarket whose committee serves this contract."""
        return to_checksum_address(self._call(self.contract.functions.market(), block))

    def cohort(self, cohort_id: int, *, block: BlockIdentifier = "latest") -> Cohort:
        admin, schema_hash, cap, spent, k, members = self._call(
            self.contract.functions.cohort(cohort_id), block)
        return Cohort(CohortId(cohort_id), to_checksum_address(admin), bytes(schema_hash),
                      EpsilonMicros(cap), EpsilonMicros(spent), k, members)

    def is_member(self, cohort_id: int, owner: str, *, block: BlockIdentifier = "latest") -> bool:
        fn = self.contract.functions.isMember(cohort_id, to_checksum_address(owner))
        return bool(self._call(fn, block))

    def aggregate(self, debit_id: int, *, block: BlockIdentifier = "latest") -> AggregateDebit:
        values = self._call(self.contract.functions.getAggregate(debit_id), block)
        return AggregateDebit.from_view(debit_id, values)

    def contribution_of(
        self, debit_id: int, owner: str, *, block: BlockIdentifier = "latest"
    ) -> tuple[bool, bool]:
        """(contributed, claimed) of `owner` on the debit."""
        fn = self.contract.functions.contributionOf(debit_id, to_checksum_address(owner))
        contributed, claimed = self._call(fn, block)
        return bool(contributed), bool(claimed)

    def balance_of(self, account: str, *, block: BlockIdentifier = "latest") -> Wei:
        fn = self.contract.functions.balanceOf(to_checksum_address(account))
        return Wei(self._call(fn, block))

    def cohort_count(self, *, block: BlockIdentifier = "latest") -> int:
        return int(self._call(self.contract.functions.cohortCount(), block))

    def aggregate_count(self, *, block: BlockIdentifier = "latest") -> int:
        return int(self._call(self.contract.functions.aggregateCount(), block))

    def contract_balance(self, *, block: BlockIdentifier = "latest") -> Wei:
        """The ether this contract holds (escrow plus credited balances)."""
        with self._translated():
            return Wei(self.w3.eth.get_balance(self.address, block))

    # ------------------------------------------------------------ events

    def read_events(
        self,
        from_block: int,
        to_block: int | None = None,
        kinds: Sequence[AggregateEventType] | None = None,
        indexed: Sequence[bytes | None] = (),
        *,
        max_block_range: int = 500,
    ) -> list[AggregateEvent]:
        """This contract's events in [from_block, to_block] (default: the latest block), in
        chain order, fetched in bounded ranges; `indexed` narrows by indexed arguments as
        32-byte topics (None = any)."""
        if max_block_range < 1:
            raise ValueError("max_block_range must be >= 1")
        with self._translated():
            last = int(self.w3.eth.block_number) if to_block is None else to_block
        topics: list[Any] = [self.decoder.topics(kinds)]
        topics += [None if t is None else "0x" + t.hex() for t in indexed]
        events: list[AggregateEvent] = []
        start = max(from_block, 0)
        while start <= last:
            end = min(start + max_block_range - 1, last)
            try:
                logs = self.w3.eth.get_logs({
                    "address": self.address, "fromBlock": start, "toBlock": end,
                    "topics": topics,
                })
            except OSError as e:
                raise ChainUnavailable(self._endpoint, type(e).__name__) from e
            events.extend(self.decoder.decode(log) for log in logs)
            start = end + 1
        return events

    def contributions(
        self, debit_id: int, from_block: int, to_block: int | None = None
    ) -> list[ContributionRecorded]:
        """The debit's recorded contributions, in chain order (what the nodes aggregate)."""
        events = self.read_events(from_block, to_block, [ContributionRecorded],
                                  [debit_id.to_bytes(32, "big")])
        return [e for e in events if isinstance(e, ContributionRecorded)]

    def rounds(
        self, debit_id: int, from_block: int, to_block: int | None = None
    ) -> list[AggregateRoundPosted]:
        """The debit's posted rounds, in chain order."""
        events = self.read_events(from_block, to_block, [AggregateRoundPosted],
                                  [debit_id.to_bytes(32, "big")])
        return [e for e in events if isinstance(e, AggregateRoundPosted)]

def _revert_decoder(artifact: ContractArtifact) -> RevertDecoder:
    """Our errors plus the DataMarket's (its committee views' reverts bubble up)."""
    market_errors = [e for e in load_artifact().abi if e.get("type") == "error"]
    return RevertDecoder([*artifact.abi, *market_errors])
