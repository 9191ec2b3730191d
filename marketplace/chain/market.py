"""A typed client of the DataMarket contract over any web3 provider.

Transactions are signed locally with eth-account keys (a real node holds no keys), so
the same code drives the in-process eth-tester chain and any JSON-RPC URL. Reverts come
back as the contract's own custom errors (`marketplace.chain.errors`), a node that does
not answer as `ChainUnavailable`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar

from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from eth_typing import BlockIdentifier, ChecksumAddress
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import Web3Exception
from web3.types import TxReceipt

from marketplace.chain.artifacts import ContractArtifact, load_artifact
from marketplace.chain.errors import ChainError, ChainUnavailable, ContractRevert, TransactionFailed
from marketplace.chain.events import (
    CeremonyMessage,
    CeremonyMessageLog,
    CommitteeEpochEvent,
    CommitteeFinalized,
    CommitteeProposed,
    DebitRequested,
    EarningsClaimed,
    EventDecoder,
    EventReader,
    ForeignLog,
    ListingCreated,
    MarketEvent,
    ReleasesAnchored,
    VersionPublished,
    Withdrawn,
)
from marketplace.chain.provider import endpoint_name
from marketplace.chain.reverts import RevertDecoder, revert_data
from marketplace.chain.tokens import ERC20_ABI, Permit
from marketplace.chain.types import (
    ETHER,
    CeremonyInfo,
    CeremonyStatus,
    Committee,
    CommitteeEpoch,
    Debit,
    DebitId,
    Listing,
    ListingId,
    Roster,
    Sent,
    VersionNumber,
    VersionRecord,
    Wei,
)
from marketplace.committee import node_encryption_key
from marketplace.eip712 import CommitteeResult, Eip712Domain, sign

#: An event type of some contract, and one kind of it (`ContractClient._only`).
EventT = TypeVar("EventT")
EventT_co = TypeVar("EventT_co", covariant=True)
E = TypeVar("E")

#: Headroom over the node's gas estimate, so a state change between estimate and
#: inclusion (another tx in the same block) does not run the transaction out of gas.
GAS_HEADROOM = 1.2
#: Plus a fixed margin of one zero-to-non-zero storage write (22,100 gas) and change: the
#: estimate runs at the latest block, and a revoke or claim that lands seconds later may
#: credit a balance that was still zero when estimated. Only gas used is paid for.
GAS_MARGIN = 25_000
#: How long a first ceremony may take unless told otherwise.
DEFAULT_CEREMONY_WINDOW = 86_400
#: The `transcriptHash` of a committee dealt by one trusted machine (development only).
TRUSTED_DEALER_TRANSCRIPT = keccak(b"datadebit/trusted-dealer/v1")


class _LogDecoder(Protocol[EventT_co]):
    def decode(self, log: Any) -> EventT_co: ...


class ContractClient(Generic[EventT]):
    """What every typed contract client here shares: sending (estimate, sign locally,
    wait), calling, translating reverts and transport failures, and decoding its own logs
    (`MarketClient`, `AggregateClient`)."""

    w3: Web3
    decoder: _LogDecoder[EventT]
    _reverts: RevertDecoder
    _tx_timeout: float
    _endpoint: str

    def _transact(self, sender: LocalAccount, fn: ContractFunction, value: int = 0) -> TxReceipt:
        return _send(self.w3, sender, fn, value, self._reverts, self._tx_timeout)

    def _call(self, fn: ContractFunction, block: BlockIdentifier = "latest") -> Any:
        with self._translated():
            return fn.call(block_identifier=block)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        with translated_errors(self._reverts, self._endpoint):
            yield

    def decoded(self, receipt: TxReceipt) -> list[EventT]:
        """This contract's events in a receipt (other contracts' logs skipped)."""
        events = []
        for log in receipt["logs"]:
            try:
                events.append(self.decoder.decode(log))
            except ForeignLog:
                continue
        return events

    def _only(self, receipt: TxReceipt, kind: type[E]) -> E:
        found = [e for e in self.decoded(receipt) if isinstance(e, kind)]
        if len(found) != 1:
            raise TransactionFailed(
                "0x" + bytes(receipt["transactionHash"]).hex(),
                f"expected one {kind.__name__} event, found {len(found)}",
            )
        return found[0]


class MarketClient(ContractClient[MarketEvent]):
    """One deployed DataMarket: every transaction and view, typed."""

    decoder: EventDecoder

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        artifact: ContractArtifact | None = None,
        tx_timeout: float = 120.0,
    ) -> None:
        self.artifact = artifact or load_artifact()
        self.w3 = w3
        self.address: ChecksumAddress = to_checksum_address(address)
        self.contract: Contract = w3.eth.contract(address=self.address, abi=list(self.artifact.abi))
        self.decoder = EventDecoder(w3, self.address, self.artifact.abi)
        self._reverts = RevertDecoder(self.artifact.abi)
        self._tx_timeout = tx_timeout
        self._endpoint = endpoint_name(w3)
        self._chain_id: int | None = None

    # ------------------------------------------------------------ deployment

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        deployer: LocalAccount,
        roster: Roster,
        *,
        governor: str | None = None,
        phase_seconds: int = 30,
        deadline: int | None = None,
        reshare_delay: int = 0,
        artifact: ContractArtifact | None = None,
    ) -> Sent[MarketClient]:
        """Deploy a new market whose epoch-1 ceremony (a DKG among `roster`) is pending.

        `governor` defaults to the deployer; `deadline` to one day after the latest block.
        """
        artifact = artifact or load_artifact()
        if deadline is None:
            deadline = int(w3.eth.get_block("latest")["timestamp"]) + DEFAULT_CEREMONY_WINDOW
        factory = w3.eth.contract(abi=list(artifact.abi), bytecode=artifact.bytecode)
        ctor = factory.constructor(
            to_checksum_address(governor) if governor else ZERO_ADDRESS,
            list(roster.nodes),
            list(roster.encryption_keys),
            roster.threshold,
            phase_seconds,
            deadline,
            reshare_delay,
        )
        reverts = RevertDecoder(artifact.abi)
        receipt = _send(w3, deployer, ctor, 0, reverts, 120.0)
        address = receipt["contractAddress"]
        if address is None:
            raise TransactionFailed(receipt["transactionHash"].hex(), "no contract created")
        client = cls(w3, address, artifact=artifact)
        return _sent(client, receipt)

    @classmethod
    def deploy_dealt(
        cls,
        w3: Web3,
        deployer: LocalAccount,
        committee: Committee,
        node_accounts: Sequence[LocalAccount],
        *,
        governor: str | None = None,
        reshare_delay: int = 0,
        artifact: ContractArtifact | None = None,
    ) -> Sent[MarketClient]:
        """Deploy with a committee dealt by one machine (the trusted-dealer development
        option): epoch 1 is final at once, signed by every node. `node_accounts[i]` must be
        node i + 1 of `committee`; `gas_used` is the deployment's plus the finalization's.
        """
        addresses = tuple(to_checksum_address(a.address) for a in node_accounts)
        if addresses != tuple(to_checksum_address(n) for n in committee.nodes):
            raise ValueError("node_accounts must be the committee's nodes, in order")
        roster = Roster(
            nodes=addresses,
            encryption_keys=tuple(node_encryption_key(a) for a in node_accounts),
            threshold=committee.threshold,
        )
        deployed = cls.deploy(
            w3, deployer, roster, governor=governor, reshare_delay=reshare_delay,
            artifact=artifact,
        )
        market = deployed.value
        result = CommitteeResult(
            ceremony=1,
            epoch=1,
            committee_key=committee.committee_key,
            share_keys=tuple(committee.share_keys),
            qualified=(1 << committee.size) - 1,
            transcript_hash=TRUSTED_DEALER_TRANSCRIPT,
        )
        signatures = [sign(a, market.domain, result) for a in node_accounts]
        final = market.finalize_committee(deployer, 1, result, signatures, [])
        return Sent(
            value=market,
            tx_hash=final.tx_hash,
            block_number=final.block_number,
            gas_used=deployed.gas_used + final.gas_used,
        )

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            with self._translated():
                self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    @property
    def domain(self) -> Eip712Domain:
        """The EIP-712 domain of this market (what `CommitteeResult`s are signed under)."""
        return Eip712Domain(self.chain_id, self.address)

    def events(self, *, confirmations: int = 0, max_block_range: int = 500) -> EventReader:
        """A reader of this market's events at the given confirmation depth."""
        return EventReader(
            self.w3, self.decoder, confirmations=confirmations, max_block_range=max_block_range
        )

    # ------------------------------------------------------------ listings

    def create_listing(
        self,
        owner: LocalAccount,
        *,
        price_per_period: int,
        period_seconds: int,
        auto_approve: bool,
        terms_hash: bytes = bytes(32),
        metadata_uri: str = "",
        asset: str = ETHER,
    ) -> Sent[ListingId]:
        """A listing priced in `asset`: `ETHER`, or an ERC-20 token's address (fixed for
        the listing's life; the price is in the asset's smallest unit)."""
        fn = self.contract.functions.createListing(
            to_checksum_address(asset), price_per_period, period_seconds, auto_approve,
            terms_hash, metadata_uri,
        )
        receipt = self._transact(owner, fn)
        return _sent(self._only(receipt, ListingCreated).listing_id, receipt)

    def update_listing(
        self,
        owner: LocalAccount,
        listing_id: int,
        *,
        price_per_period: int,
        auto_approve: bool,
        open: bool,
    ) -> Sent[None]:
        fn = self.contract.functions.updateListing(
            listing_id, price_per_period, auto_approve, open
        )
        return _sent(None, self._transact(owner, fn))

    def publish_version(
        self, owner: LocalAccount, listing_id: int, cid: bytes, capsule: bytes
    ) -> Sent[VersionNumber]:
        fn = self.contract.functions.publishVersion(listing_id, cid, capsule)
        receipt = self._transact(owner, fn)
        return _sent(self._only(receipt, VersionPublished).version, receipt)

    # ------------------------------------------------------------ debits

    def request_debit(
        self,
        buyer: LocalAccount,
        listing_id: int,
        *,
        periods: int,
        buyer_key: bytes,
        purpose_hash: bytes = bytes(32),
        consent_deadline: int = 0,
        value: int | None = None,
    ) -> Sent[DebitId]:
        """Pay for `periods` periods. On an ether listing `value` defaults to the exact
        price; on a token listing to 0 (the market pulls the price: approve it first).
        `consent_deadline` (unix seconds, 0: none) bounds when the owner may consent."""
        if value is None:
            listing = self.listing(listing_id)
            value = listing.price_per_period * periods if listing.is_ether else 0
        fn = self.contract.functions.requestDebit(
            listing_id, periods, buyer_key, purpose_hash, consent_deadline
        )
        receipt = self._transact(buyer, fn, value=value)
        return _sent(self._only(receipt, DebitRequested).debit_id, receipt)

    def request_debit_with_permit(
        self,
        buyer: LocalAccount,
        listing_id: int,
        permit: Permit,
        *,
        periods: int,
        buyer_key: bytes,
        purpose_hash: bytes = bytes(32),
        consent_deadline: int = 0,
    ) -> Sent[DebitId]:
        """Pay a token listing with an EIP-2612 permit of exactly the price, in one
        transaction (`marketplace.chain.tokens.sign_permit` makes one)."""
        fn = self.contract.functions.requestDebitWithPermit(
            listing_id, periods, buyer_key, purpose_hash, consent_deadline, permit.deadline,
            permit.v, permit.r, permit.s,
        )
        receipt = self._transact(buyer, fn)
        return _sent(self._only(receipt, DebitRequested).debit_id, receipt)

    def approve_payment(self, buyer: LocalAccount, asset: str, amount: int) -> Sent[None]:
        """Let the market pull `amount` of the ERC-20 `asset` from `buyer` (what
        `request_debit` on a token listing needs first)."""
        token = self.w3.eth.contract(address=to_checksum_address(asset), abi=ERC20_ABI)
        receipt = self._transact(buyer, token.functions.approve(self.address, amount))
        return _sent(None, receipt)

    def consent(self, owner: LocalAccount, debit_id: int) -> Sent[None]:
        return _sent(None, self._transact(owner, self.contract.functions.consent(debit_id)))

    def reject(self, owner: LocalAccount, debit_id: int) -> Sent[None]:
        return _sent(None, self._transact(owner, self.contract.functions.reject(debit_id)))

    def cancel(self, buyer: LocalAccount, debit_id: int) -> Sent[None]:
        return _sent(None, self._transact(buyer, self.contract.functions.cancel(debit_id)))

    def revoke(self, owner: LocalAccount, debit_id: int) -> Sent[None]:
        return _sent(None, self._transact(owner, self.contract.functions.revoke(debit_id)))

    def claim(self, owner: LocalAccount, debit_ids: Sequence[int]) -> Sent[Wei]:
        """Credit what accrued on `debit_ids`; the value is the total credited."""
        receipt = self._transact(owner, self.contract.functions.claim(list(debit_ids)))
        total = sum(e.amount for e in self.decoded(receipt) if isinstance(e, EarningsClaimed))
        return _sent(Wei(total), receipt)

    def withdraw(self, account: LocalAccount, asset: str = ETHER) -> Sent[Wei]:
        """Pay out the account's credited balance in `asset`."""
        fn = self.contract.functions.withdraw(to_checksum_address(asset))
        receipt = self._transact(account, fn)
        return _sent(self._only(receipt, Withdrawn).amount, receipt)

    # ------------------------------------------------------------ committee

    def anchor_releases(self, node: LocalAccount, root: bytes, count: int) -> Sent[int]:
        """Anchor a Merkle root of `count` releases; the value is the anchor's sequence."""
        receipt = self._transact(node, self.contract.functions.anchorReleases(root, count))
        return _sent(self._only(receipt, ReleasesAnchored).seq, receipt)

    def propose_committee(
        self, sender: LocalAccount, roster: Roster, *, phase_seconds: int, deadline: int
    ) -> Sent[int]:
        """Propose the next epoch's roster (governor only); the value is the ceremony id."""
        fn = self.contract.functions.proposeCommittee(
            list(roster.nodes), list(roster.encryption_keys), roster.threshold, phase_seconds,
            deadline,
        )
        receipt = self._transact(sender, fn)
        return _sent(self._only(receipt, CommitteeProposed).ceremony_id, receipt)

    def approve_committee(self, sender: LocalAccount, ceremony_id: int) -> Sent[None]:
        """Approve a pending reshare as a node of the current epoch."""
        fn = self.contract.functions.approveCommittee(ceremony_id)
        return _sent(None, self._transact(sender, fn))

    def post_ceremony_message(
        self, sender: LocalAccount, ceremony_id: int, kind: int, payload: bytes
    ) -> Sent[None]:
        """Broadcast one ceremony message (emitted as `CeremonyMessage`, never stored)."""
        fn = self.contract.functions.postCeremonyMessage(ceremony_id, kind, payload)
        return _sent(None, self._transact(sender, fn))

    def finalize_committee(
        self,
        sender: LocalAccount,
        ceremony_id: int,
        result: CommitteeResult,
        new_signatures: Sequence[bytes],
        old_signatures: Sequence[bytes],
    ) -> Sent[None]:
        """Record a ceremony's signed result; its epoch becomes the current one.

        `result.ceremony` must be `ceremony_id` (the contract hashes the id it is given,
        so a mismatch would only make every signature recover to a stranger).
        """
        if result.ceremony != ceremony_id:
            raise ValueError(f"result is for ceremony {result.ceremony}, not {ceremony_id}")
        fn = self.contract.functions.finalizeCommittee(
            ceremony_id, result.committee_key, list(result.share_keys), result.qualified,
            result.transcript_hash, list(new_signatures), list(old_signatures),
        )
        return _sent(None, self._transact(sender, fn))

    def set_governor(self, sender: LocalAccount, next_governor: str) -> Sent[None]:
        fn = self.contract.functions.setGovernor(to_checksum_address(next_governor))
        return _sent(None, self._transact(sender, fn))

    # ------------------------------------------------------------ views

    def is_entitled(
        self, debit_id: int, version: int, *, block: BlockIdentifier = "latest"
    ) -> bool:
        return bool(self._call(self.contract.functions.isEntitled(debit_id, version), block))

    def committee(self, *, block: BlockIdentifier = "latest") -> Committee:
        key, threshold, nodes, share_keys = self._call(self.contract.functions.committee(), block)
        return Committee(
            committee_key=bytes(key),
            threshold=int(threshold),
            nodes=tuple(to_checksum_address(n) for n in nodes),
            share_keys=tuple(bytes(k) for k in share_keys),
        )

    def current_epoch(self, *, block: BlockIdentifier = "latest") -> int:
        return int(self._call(self.contract.functions.currentEpoch(), block))

    def latest_ceremony(self, *, block: BlockIdentifier = "latest") -> int:
        return int(self._call(self.contract.functions.latestCeremony(), block))

    def governor(self, *, block: BlockIdentifier = "latest") -> ChecksumAddress:
        return to_checksum_address(self._call(self.contract.functions.governor(), block))

    def reshare_delay(self, *, block: BlockIdentifier = "latest") -> int:
        return int(self._call(self.contract.functions.reshareDelay(), block))

    def ceremony(self, ceremony_id: int, *, block: BlockIdentifier = "latest") -> CeremonyInfo:
        (epoch, threshold, phase_seconds, proposed_at, not_before, opened_at, deadline,
         approvals, status, nodes, keys) = self._call(
            self.contract.functions.ceremony(ceremony_id), block)
        return CeremonyInfo(
            ceremony_id=ceremony_id,
            epoch=int(epoch),
            threshold=int(threshold),
            phase_seconds=int(phase_seconds),
            proposed_at=int(proposed_at),
            not_before=int(not_before),
            opened_at=int(opened_at),
            deadline=int(deadline),
            approvals=int(approvals),
            status=CeremonyStatus(status),
            roster=Roster(
                nodes=tuple(to_checksum_address(n) for n in nodes),
                encryption_keys=tuple(bytes(k) for k in keys),
                threshold=int(threshold),
            ),
        )

    def committee_at(self, epoch: int, *, block: BlockIdentifier = "latest") -> CommitteeEpoch:
        """A final epoch's committee (UnknownEpoch if it is not final at `block`)."""
        (number, ceremony_id, start_block, threshold, key, nodes, enc_keys, share_keys,
         qualified, transcript) = self._call(self.contract.functions.committeeAt(epoch), block)
        return CommitteeEpoch(
            epoch=int(number),
            ceremony_id=int(ceremony_id),
            start_block=int(start_block),
            threshold=int(threshold),
            committee_key=bytes(key),
            nodes=tuple(to_checksum_address(n) for n in nodes),
            encryption_keys=tuple(bytes(k) for k in enc_keys),
            share_keys=tuple(bytes(k) for k in share_keys),
            qualified=int(qualified),
            transcript_hash=bytes(transcript),
        )

    def ceremony_messages(
        self, ceremony_id: int, from_block: int, to_block: int | None = None
    ) -> list[CeremonyMessageLog]:
        """The ceremony's messages in chain order (`to_block` defaults to the latest)."""
        events = self.events().read(
            from_block, to_block, [CeremonyMessage], [ceremony_id.to_bytes(32, "big")]
        )
        return [CeremonyMessageLog.from_event(e) for e in events if isinstance(e, CeremonyMessage)]

    def committee_finalized_logs(
        self, from_block: int, to_block: int | None = None
    ) -> list[CommitteeEpochEvent]:
        """Every epoch finalized in the range, in chain order."""
        events = self.events().read(from_block, to_block, [CommitteeFinalized])
        return [
            CommitteeEpochEvent.from_event(e) for e in events if isinstance(e, CommitteeFinalized)
        ]

    def listing(self, listing_id: int, *, block: BlockIdentifier = "latest") -> Listing:
        owner, price, period, count, auto, is_open, asset = self._call(
            self.contract.functions.getListing(listing_id), block
        )
        return Listing(
            listing_id=ListingId(listing_id),
            owner=to_checksum_address(owner),
            price_per_period=Wei(price),
            period_seconds=period,
            version_count=count,
            auto_approve=auto,
            open=is_open,
            asset=to_checksum_address(asset),
        )

    def version(
        self, listing_id: int, version: int, *, block: BlockIdentifier = "latest"
    ) -> VersionRecord:
        published_at, digest = self._call(
            self.contract.functions.getVersion(listing_id, version), block
        )
        return VersionRecord(
            listing_id=ListingId(listing_id),
            version=VersionNumber(version),
            published_at=published_at,
            cid_digest=bytes(digest),
        )

    def debit(self, debit_id: int, *, block: BlockIdentifier = "latest") -> Debit:
        values = self._call(self.contract.functions.getDebit(debit_id), block)
        return Debit.from_view(debit_id, values)

    def debit_ids_requested_by(
        self, buyer: str, from_block: int = 0, to_block: int | None = None
    ) -> list[int]:
        """Ids of the debits `buyer` requested (its `DebitRequested` events), in chain
        order; `light.LightMarket` answers the same without web3."""
        buyer_topic = bytes(12) + bytes.fromhex(to_checksum_address(buyer)[2:])
        events = self.events().read(from_block, to_block, kinds=[DebitRequested],
                                    indexed=[None, None, buyer_topic])
        return [e.debit_id for e in events if isinstance(e, DebitRequested)]

    def claimable(self, debit_id: int) -> Wei:
        return Wei(self._call(self.contract.functions.claimable(debit_id)))

    def balance_of(
        self, account: str, asset: str = ETHER, *, block: BlockIdentifier = "latest"
    ) -> Wei:
        """The account's credited balance in `asset` (smallest units; `Wei` for ether)."""
        fn = self.contract.functions.balanceOf(
            to_checksum_address(account), to_checksum_address(asset)
        )
        return Wei(self._call(fn, block))

    def listing_count(self, *, block: BlockIdentifier = "latest") -> int:
        return int(self._call(self.contract.functions.listingCount(), block))

    def debit_count(self, *, block: BlockIdentifier = "latest") -> int:
        return int(self._call(self.contract.functions.debitCount(), block))

    def anchor_count(self, node: str, *, block: BlockIdentifier = "latest") -> int:
        fn = self.contract.functions.anchorCount(to_checksum_address(node))
        return int(self._call(fn, block))

    def contract_balance(
        self, asset: str = ETHER, *, block: BlockIdentifier = "latest"
    ) -> Wei:
        """What the market holds of `asset` (escrow plus credited balances)."""
        with self._translated():
            if asset == ETHER:
                return Wei(self.w3.eth.get_balance(self.address, block))
            token = self.w3.eth.contract(address=to_checksum_address(asset), abi=ERC20_ABI)
            return Wei(token.functions.balanceOf(self.address).call(block_identifier=block))

@contextmanager
def translated_errors(reverts: RevertDecoder, endpoint: str) -> Iterator[None]:
    """Map backend exceptions to ours: reverts by name, transport failures as unavailable."""
    try:
        yield
    except ContractRevert:
        raise
    except OSError as e:  # requests' ConnectionError and Timeout are OSErrors
        raise ChainUnavailable(endpoint, type(e).__name__) from e
    except Exception as e:
        data = revert_data(e)
        if data is not None:
            raise reverts.decode(data) from e
        if "revert" in str(e).lower():
            raise ContractRevert({"message": str(e)}, name="revert") from e
        if isinstance(e, Web3Exception):
            raise ChainError(f"chain node {endpoint} refused the request: {e}") from e
        raise


def _send(
    w3: Web3,
    sender: LocalAccount,
    fn: Any,
    value: int,
    reverts: RevertDecoder,
    timeout: float,
) -> TxReceipt:
    """Estimate, sign locally, send and wait; reverts surface at the estimate."""
    with translated_errors(reverts, endpoint_name(w3)):
        tx = fn.build_transaction({
            "from": sender.address,
            "value": value,
            "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        })
        tx["gas"] = int(tx["gas"] * GAS_HEADROOM) + GAS_MARGIN
        signed = sender.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    if receipt["status"] != 1:
        raise TransactionFailed("0x" + bytes(tx_hash).hex(), "reverted after inclusion")
    return receipt


T = TypeVar("T")
ZERO_ADDRESS = "0x" + "00" * 20


def _sent(value: T, receipt: TxReceipt) -> Sent[T]:
    return Sent(
        value=value,
        tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
        block_number=int(receipt["blockNumber"]),
        gas_used=int(receipt["gasUsed"]),
    )


def chain_time(w3: Web3) -> int:
    """Now, by the later of this machine's clock and the latest block's timestamp: what a
    deadline typed as a duration ("1h") counts from. Contracts compare deadlines with
    block.timestamp, which on a development chain may run ahead of the wall clock."""
    latest = int(w3.eth.get_block("latest")["timestamp"])
    return max(int(time.time()), latest)
