"""Committee ceremonies as the chain shows them (DESIGN §9).

The pure protocol (`keyrelease.dkg`, `keyrelease.ceremony`) works on parameters, a
schedule and ordered messages with block timestamps; this module reads those from the
market contract, so gateways, `datadebit committee status` and the auditor evaluate the
same transcript the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marketplace.chain.events import CommitteeApproved
from marketplace.chain.market import MarketClient
from marketplace.chain.types import CeremonyInfo, CeremonyStatus
from marketplace.eip712 import (
    CommitteeResult,
    Eip712Domain,
    MalformedSignature,
    recover_signer,
)
from marketplace.keyrelease import CommitteeKeys
from marketplace.keyrelease.ceremony import (
    CeremonyMessage,
    CeremonyResult,
    CeremonySchedule,
    CeremonyView,
    evaluate,
)
from marketplace.keyrelease.dkg import CeremonyParams, PreviousCommittee


def to_typed(result: CeremonyResult) -> CommitteeResult:
    """The pure protocol's result as the EIP-712 message nodes sign."""
    return CommitteeResult(
        ceremony=result.ceremony,
        epoch=result.epoch,
        committee_key=result.committee_key,
        share_keys=result.share_keys,
        qualified=result.qualified,
        transcript_hash=result.transcript_hash,
    )


def result_signer(domain: Eip712Domain) -> Callable[[CeremonyResult, bytes], str | None]:
    """Recovers who signed a ceremony result in the market's EIP-712 domain."""

    def recover(result: CeremonyResult, signature: bytes) -> str | None:
        try:
            return recover_signer(domain, to_typed(result), signature)
        except MalformedSignature:
            return None

    return recover


class CeremonyReader:
    """Reads one market's ceremonies: parameters, messages with block timestamps, views.

    Block timestamps are remembered by block hash (a reorged block is read again)."""

    def __init__(self, market: MarketClient, *, from_block: int = 0) -> None:
        self.market = market
        self.from_block = from_block
        self.domain = Eip712Domain(market.chain_id, market.address)
        self._timestamps: dict[str, int] = {}
        #: per ceremony: (last block read, its hash, the messages up to it)
        self._messages: dict[int, tuple[int, bytes, tuple[CeremonyMessage, ...]]] = {}

    def params(self, info: CeremonyInfo) -> CeremonyParams:
        previous = None
        if info.is_reshare:
            current = self.market.committee_at(info.epoch - 1)
            previous = PreviousCommittee(
                CommitteeKeys.from_bytes(
                    current.threshold, current.committee_key, current.share_keys,
                    epoch=current.epoch,
                ),
                tuple(current.nodes),
            )
        return CeremonyParams(
            chain_id=self.market.chain_id,
            market=bytes.fromhex(self.market.address[2:]),
            ceremony_id=info.ceremony_id,
            epoch=info.epoch,
            threshold=info.threshold,
            encryption_keys=info.roster.encryption_keys,
            nodes=tuple(info.roster.nodes),
            previous=previous,
        )

    def messages(
        self, ceremony_id: int, to_block: int, from_block: int | None = None
    ) -> list[CeremonyMessage]:
        """The ceremony's messages up to `to_block`. A node asks every round: what was
        read before is kept, and only blocks after it are read again, unless the last block
        read is no longer on the chain (a reorg: everything is read again)."""
        start = self.from_block if from_block is None else max(from_block, self.from_block)
        cached = self._messages.get(ceremony_id)
        if cached is not None:
            read_to, read_hash, known = cached
            if read_to <= to_block and read_to >= start and self._block_hash(read_to) == read_hash:
                if read_to == to_block:
                    return list(known)
                start, prefix = read_to + 1, list(known)
            else:
                prefix = []
        else:
            prefix = []
        logs = self.market.ceremony_messages(ceremony_id, start, to_block)
        found = prefix + [
            CeremonyMessage(
                sender=log.sender,
                kind=log.kind,
                payload=log.payload,
                block_number=log.block_number,
                log_index=log.log_index,
                block_timestamp=self._timestamp(log.block_number, log.block_hash),
            )
            for log in logs
        ]
        if len(self._messages) > 64:
            self._messages.clear()
        self._messages[ceremony_id] = (to_block, self._block_hash(to_block), tuple(found))
        return found

    def _block_hash(self, number: int) -> bytes:
        return bytes(self.market.w3.eth.get_block(number)["hash"])

    def _timestamp(self, number: int, block_hash: str) -> int:
        known = self._timestamps.get(block_hash)
        if known is None:
            if len(self._timestamps) > 4096:
                self._timestamps.clear()
            known = int(self.market.w3.eth.get_block(number)["timestamp"])
            self._timestamps[block_hash] = known
        return known

    def view(
        self, info: CeremonyInfo, *, to_block: int, now: int, params: CeremonyParams | None = None
    ) -> CeremonyView:
        """The ceremony as of `now`, from its messages up to `to_block`. A reshare's
        messages are read from the block its current epoch became final: it could take
        none before (its approvals need that epoch), and reading a long chain from block 0
        on every round is what made a reshare slow once the chain had grown."""
        since = self.market.committee_at(info.epoch - 1).start_block if info.is_reshare else 0
        return evaluate(
            params or self.params(info),
            CeremonySchedule(info.opened_at, info.phase_seconds, info.deadline),
            self.messages(info.ceremony_id, to_block, since),
            now,
            recover_signer=result_signer(self.domain),
        )


def _not_approved(market: MarketClient, info: CeremonyInfo) -> list[str]:
    """Current nodes that have not approved a proposed reshare yet."""
    approved = {
        event.node.lower()
        for event in market.events().read(
            0, None, [CommitteeApproved], [info.ceremony_id.to_bytes(32, "big")]
        )
        if isinstance(event, CommitteeApproved)
    }
    current = market.committee_at(info.epoch - 1).nodes
    return [node for node in current if node.lower() not in approved]


def committee_status(market: MarketClient) -> dict[str, Any]:
    """What `datadebit committee status` shows: the current epoch and its committee, and
    the latest ceremony with its phase and whom it waits for (JSON-ready)."""
    epoch = market.current_epoch()
    report: dict[str, Any] = {"epoch": epoch, "committee": None, "ceremony": None}
    if epoch > 0:
        current = market.committee_at(epoch)
        report["committee"] = {
            "threshold": current.threshold,
            "committeeKey": "0x" + current.committee_key.hex(),
            "nodes": list(current.nodes),
            "startBlock": current.start_block,
        }
    latest = market.latest_ceremony()
    if latest == 0:
        return report
    info = market.ceremony(latest)
    block = market.w3.eth.get_block("latest")
    ceremony: dict[str, Any] = {
        "id": latest,
        "epoch": info.epoch,
        "status": info.status.name.lower(),
        "threshold": info.threshold,
        "nodes": list(info.roster.nodes),
        "deadline": info.deadline,
        "approvals": info.approvals if info.is_reshare else None,
        "phase": info.status.name.lower(),
        "waitingFor": [],
        "failure": None,
    }
    if info.status is CeremonyStatus.PENDING and info.opened_at == 0:
        ceremony["phase"] = "approval"
        ceremony["waitingFor"] = _not_approved(market, info)
    elif info.status is CeremonyStatus.PENDING:
        reader = CeremonyReader(market)
        view = reader.view(info, to_block=int(block["number"]), now=int(block["timestamp"]))
        ceremony["phase"] = view.phase.value
        ceremony["waitingFor"] = list(view.missing)
        ceremony["failure"] = view.failure.value if view.failure else None
        if view.qualified is not None:
            ceremony["qualified"] = list(view.qualified)
    report["ceremony"] = ceremony
    return report
