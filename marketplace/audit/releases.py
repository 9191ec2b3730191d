"""Check 4: every release a node logged was signed by that node as a member of the
committee epoch in force at the receipt's block, sits inside the Merkle roots it anchored
on-chain (in order), went to a debit that was consented and entitled at the receipt's
block, and was asked for by that debit's buyer.

Logs are per node address: a node that served in several epochs keeps one log, its
receipts naming the epoch (and its index in that epoch) each release was made in.

Anchors are `ReleasesAnchored(node, seq, root, count)` events: anchor k covers the node's
next `count` log entries, so the auditor rebuilds each root from the log and compares.
An entry beyond the anchored prefix is *pending* (a warning) until it is older than
`max_pending_age` blocks, then a violation: a node that never anchors hides nothing
for long. Entitlement is the contract's own `isEntitled`, asked at the receipt's block.

The receipt's block is the node's word, so it is pinned from both sides: an anchored
entry cannot be dated after the block that anchored it, an unanchored one not after the
chain's head, and the buyer-signed `KeyRequest` logged with it must be the debit buyer's,
name the same debit, version and digest, and have been live at that block (a gateway takes
a request only while now < expiry <= now + 600 s and releases at its confirmed head, at
most `max_lag` seconds behind): a release dated before a revoke for a request signed after
it is a violation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from eth_utils.address import to_checksum_address

from marketplace.audit.chain_view import ChainView
from marketplace.audit.epochs import EpochHistory
from marketplace.audit.history import MarketHistory
from marketplace.audit.release_log import REQUEST_MISSING, LogEntry, LoggedPartial, LoggedRelease
from marketplace.audit.report import CheckRun
from marketplace.chain.errors import ContractRevert
from marketplace.eip712 import (
    MAX_REQUEST_LIFETIME,
    Eip712Domain,
    KeyRequest,
    MalformedSignature,
    digest,
    recover_signer,
)
from marketplace.merkle import merkle_root, partial_item

SIGNATURES = "release signatures"
ANCHORING = "release anchoring"
ENTITLEMENT = "release entitlement"
REQUESTS = "release requests"

#: Default age (in blocks) after which an unanchored release is a violation.
MAX_PENDING_AGE = 256

#: How far ahead of a gateway's clock a request's expiry may be (DESIGN §5: 10 minutes).
REQUEST_WINDOW = MAX_REQUEST_LIFETIME

#: Default seconds a gateway's confirmed head may trail its clock when it releases (the
#: confirmations' worth of blocks plus the time since the latest one): 12 confirmations of
#: 12 s blocks are 144 s, so 600 s leaves room for missed slots and slow L2 blocks.
MAX_LAG = 600


@dataclass(frozen=True, slots=True)
class ReleaseRuns:
    signatures: CheckRun
    anchoring: CheckRun
    entitlement: CheckRun
    requests: CheckRun

    def all(self) -> list[CheckRun]:
        return [self.signatures, self.anchoring, self.entitlement, self.requests]


class ReleaseChecker:
    """Checks node logs against the history and the chain at the audited block."""

    def __init__(
        self,
        history: MarketHistory,
        chain: ChainView,
        epochs: EpochHistory,
        domain: Eip712Domain,
        *,
        max_pending_age: int = MAX_PENDING_AGE,
        max_lag: int = MAX_LAG,
        latest: int | None = None,
    ) -> None:
        """`latest`: the chain's head once the logs were read (default: the audited head); a
        release made during the audit is dated after `history.head` but not after it."""
        self.history = history
        self.chain = chain
        self.epochs = epochs
        self.domain = domain
        self.max_pending_age = max_pending_age
        self.max_lag = max_lag
        self.latest = max(history.head, history.head if latest is None else latest)
        self.runs = ReleaseRuns(CheckRun(SIGNATURES), CheckRun(ANCHORING), CheckRun(ENTITLEMENT),
                                CheckRun(REQUESTS))
        self._entitled: dict[tuple[int, int, int], bool] = {}

    def check_node(self, address: str, log: list[LogEntry]) -> None:
        """Check the log of the node with Ethereum address `address` (any epoch's). Its
        partial releases (aggregate debits) count in the sequence and the anchors here;
        their own checks are `marketplace.audit.aggregates`'."""
        node = self.epochs.label(address)
        self._check_sequence(node, log)
        keys = [e for e in log if isinstance(e, LoggedRelease)]
        for entry in keys:
            self._check_signature(node, address, entry)
        self._check_anchors(node, address, log)
        for entry in keys:
            if self._check_entitlement(node, entry):
                self._check_request(node, entry)

    # ------------------------------------------------------------ log shape and signatures

    def _check_sequence(self, node: int, log: list[LogEntry]) -> None:
        run = self.runs.signatures
        seen: set[tuple[int, int, bytes]] = set()
        partials: set[tuple[str, int]] = set()
        for position, entry in enumerate(log, start=1):
            if entry.seq != position:
                run.violation("log_malformed", f"node {node}: entry {position} has seq "
                              f"{entry.seq} (a gap or reordering)", node=node, seq=entry.seq)
            if isinstance(entry, LoggedPartial):
                # a node releases one sealed partial per aggregate debit
                debit = (entry.aggregator.lower(), entry.receipt.debit_id)
                if debit in partials:
                    run.violation("log_malformed", f"node {node}: aggregate debit "
                                  f"{entry.receipt.debit_id} has two partial releases",
                                  node=node, seq=entry.seq)
                partials.add(debit)
                continue
            receipt = entry.receipt
            release = (receipt.debit_id, receipt.version, receipt.buyer_key_hash)
            if release in seen:
                run.violation("log_malformed", f"node {node}: debit {receipt.debit_id} version "
                              f"{receipt.version} released twice to the same buyer key",
                              node=node, seq=entry.seq)
            seen.add(release)

    def _check_signature(self, node: int, address: str, entry: LoggedRelease) -> None:
        """The receipt names a finalized epoch, the one in force at its block, and its signer
        is this log's node, at index `receipt.node` of that epoch's roster."""
        run = self.runs.signatures
        receipt = entry.receipt
        ids: dict[str, int | str] = {"node": node, "seq": entry.seq, "debitId": receipt.debit_id}
        where = f"node {node} seq {entry.seq}"
        epoch = self.epochs.get(receipt.epoch)
        if epoch is None:
            known = ", ".join(str(e.epoch) for e in self.epochs.epochs) or "none"
            run.violation("unknown_epoch", f"{where}: receipt for committee epoch "
                          f"{receipt.epoch}, which is not a finalized epoch (finalized: "
                          f"{known})", **ids, epoch=receipt.epoch)
            run.count(False)
            return
        try:
            signer = recover_signer(self.domain, receipt, entry.signature)
        except MalformedSignature as e:
            run.violation("bad_signature", f"{where}: {e}", **ids)
            run.count(False)
            return
        nodes = epoch.nodes
        expected = nodes[receipt.node - 1] if 1 <= receipt.node <= len(nodes) else None
        ok = signer.lower() == address.lower() and (expected or "").lower() == address.lower()
        if not ok:
            run.violation(
                "bad_signature",
                f"{where}: receipt for epoch {receipt.epoch} node {receipt.node} recovers to "
                f"{signer} ({self._who(signer, receipt.epoch)}); this log is {address}'s, "
                f"epoch {receipt.epoch}'s node {receipt.node} is {expected or 'nobody'}",
                **ids, signer=signer,
            )
        ok = self._in_force(node, entry) and ok
        run.count(ok)

    def _in_force(self, node: int, entry: LoggedRelease) -> bool:
        """A node releases with the share of the epoch current at its confirmed head, which
        is the receipt's block: the receipt must name that epoch. A receipt dated after the
        audited block is left to the entitlement check (a later epoch may start by then)."""
        receipt = entry.receipt
        if receipt.block > self.history.head:
            return True
        in_force = self.epochs.in_force_at(receipt.block)
        if in_force is not None and in_force.epoch == receipt.epoch:
            return True
        actual = (f"epoch {in_force.epoch} (from block {in_force.start_block})"
                  if in_force else "no committee (before epoch 1 was final)")
        self.runs.signatures.violation(
            "wrong_epoch", f"node {node} seq {entry.seq}: receipt names committee epoch "
            f"{receipt.epoch}, but at its block {receipt.block} the committee in force was "
            f"{actual}", node=node, seq=entry.seq, debitId=receipt.debit_id,
            block=receipt.block, epoch=receipt.epoch,
            inForce=in_force.epoch if in_force else 0,
        )
        return False

    def _who(self, signer: str, epoch: int) -> str:
        """Who `signer` is, for a message: its index in `epoch`, else in another epoch."""
        claimed = self.epochs.get(epoch)
        index = claimed.index_of(signer) if claimed else None
        if index is not None:
            return f"committee node {index}" if claimed is self.epochs.current else (
                f"epoch {epoch} node {index}")
        others = [f"epoch {e} node {i}" for e, i in self.epochs.memberships(signer)]
        return ", ".join(others) if others else "not a committee node"

    # ------------------------------------------------------------ anchors

    def _item(self, entry: LogEntry) -> bytes:
        """An entry's Merkle item (protocol §13): a key release's receipt digest; a partial
        release's, in its AggregateMarket's domain, after the kind byte."""
        if isinstance(entry, LoggedPartial):
            domain = Eip712Domain(self.domain.chain_id, to_checksum_address(entry.aggregator))
            return partial_item(digest(domain, entry.receipt))
        return digest(self.domain, entry.receipt)

    def _check_anchors(self, node: int, address: str, log: list[LogEntry]) -> None:
        """Compare every on-chain root with the log, and each anchored entry's date with
        its anchor's block; then judge the unanchored rest by age."""
        run = self.runs.anchoring
        leaves = [self._item(e) for e in log]
        first = 0
        for anchor in self.history.anchors_of(address):
            batch = leaves[first:first + anchor.count]
            ids: dict[str, int | str] = {"node": node, "anchorSeq": anchor.seq}
            if len(batch) < anchor.count:
                run.violation("anchor_mismatch", f"node {node} anchor {anchor.seq} covers entries "
                              f"{first + 1}..{first + anchor.count}; the log has {len(leaves)}",
                              **ids)
            elif merkle_root(batch) != anchor.root:
                run.violation("anchor_mismatch", f"node {node} anchor {anchor.seq}: the log's "
                              f"entries {first + 1}..{first + anchor.count} do not hash to the "
                              "anchored root", **ids)
                for _ in batch:
                    run.count(False)
            else:
                for entry in log[first:first + anchor.count]:
                    run.count(self._dated_by_anchor(node, entry, anchor.ref.block_number))
            first += anchor.count
        for entry in log[first:]:
            age = self.history.head - entry.receipt.block
            ids = {"node": node, "seq": entry.seq, "debitId": entry.receipt.debit_id}
            if entry.receipt.block > self.history.head:
                continue  # dated after the audited block: the entitlement check judges it
            if age > self.max_pending_age:
                run.violation("unanchored", f"node {node} seq {entry.seq}: not anchored "
                              f"{age} blocks after its release", **ids)
                run.count(False)
            else:
                run.warning("pending", f"node {node} seq {entry.seq}: not anchored yet", **ids)
                run.pending += 1

    def _dated_by_anchor(self, node: int, entry: LogEntry, anchor_block: int) -> bool:
        """An anchored receipt cannot be dated after the block that anchored it."""
        if entry.receipt.block <= anchor_block:
            return True
        self.runs.anchoring.violation(
            "dated_after_anchor", f"node {node} seq {entry.seq}: receipt dated block "
            f"{entry.receipt.block}, after its anchor at block {anchor_block}",
            node=node, seq=entry.seq, debitId=entry.receipt.debit_id, block=entry.receipt.block,
        )
        return False

    # ------------------------------------------------------------ entitlement

    def _check_entitlement(self, node: int, entry: LoggedRelease) -> bool:
        """Whether the debit was consented and entitled at the receipt's block; False also
        for a receipt dated after the audited block (a violation after the chain's head)."""
        run = self.runs.entitlement
        receipt = entry.receipt
        ids: dict[str, int | str] = {
            "node": node, "seq": entry.seq, "debitId": receipt.debit_id,
            "version": receipt.version, "block": receipt.block,
        }
        where = f"node {node} seq {entry.seq} (debit {receipt.debit_id} v{receipt.version})"
        if receipt.block > self.latest:
            run.violation("dated_after_head", f"{where}: dated block {receipt.block}, after the "
                          f"chain's head ({self.latest}) when the log was read", **ids)
            run.count(False)
            return False
        if receipt.block > self.history.head:
            run.warning("after_head", f"{where}: released at block {receipt.block}, during the "
                        "audit (after the audited block); the next audit checks it", **ids)
            run.pending += 1
            return False
        debit = self.history.debits.get(receipt.debit_id)
        active_since = debit.active_since if debit else None
        ok = True
        if active_since is None or active_since > receipt.block:
            ok = False
            run.violation("not_consented", f"{where}: the debit was not consented or "
                          f"auto-approved by block {receipt.block}", **ids)
        if not self._entitled_at(receipt.debit_id, receipt.version, receipt.block):
            ok = False
            run.violation("not_entitled", f"{where}: isEntitled was false at block "
                          f"{receipt.block}", **ids)
        run.count(ok)
        return True

    # ------------------------------------------------------------ the buyer's request

    def _check_request(self, node: int, entry: LoggedRelease) -> None:
        """The logged `KeyRequest` is the debit buyer's, is the one the receipt names, and
        was live at the receipt's block; the receipt names the debit's buyer and key."""
        run = self.runs.requests
        receipt, request = entry.receipt, entry.request
        ids: dict[str, int | str] = {
            "node": node, "seq": entry.seq, "debitId": receipt.debit_id,
            "version": receipt.version, "block": receipt.block,
        }
        where = f"node {node} seq {entry.seq} (debit {receipt.debit_id} v{receipt.version})"
        findings: list[tuple[str, str]] = []
        debit = self.history.debits.get(receipt.debit_id)
        buyer = debit.requested.buyer if debit else receipt.buyer
        if buyer.lower() != receipt.buyer.lower():
            findings.append(("buyer_mismatch", f"receipt names buyer {receipt.buyer}, the "
                             f"debit's buyer is {buyer}"))
        if debit and hashlib.sha256(debit.requested.buyer_key).digest() != receipt.buyer_key_hash:
            findings.append(("buyer_key_mismatch", "receipt's buyerKeyHash is not SHA-256 of "
                             "the debit's buyerKey"))
        if request is None:
            kind = "request_missing" if entry.request_problem == REQUEST_MISSING else (
                "request_malformed")
            findings.append((kind, f"no readable buyer request logged ({entry.request_problem})"))
        else:
            findings += self._request_findings(entry, request, buyer)
        for kind, detail in findings:
            run.violation(kind, f"{where}: {detail}", **ids)
        run.count(not findings)

    def _request_findings(
        self, entry: LoggedRelease, request: KeyRequest, buyer: str
    ) -> list[tuple[str, str]]:
        receipt = entry.receipt
        findings: list[tuple[str, str]] = []
        if (request.debit_id, request.version) != (receipt.debit_id, receipt.version) or (
            digest(self.domain, request) != receipt.request_digest
        ):
            findings.append(("request_mismatch", f"logged request (debit {request.debit_id} "
                             f"v{request.version}) is not the one the receipt's requestDigest "
                             "names"))
        try:
            signer = recover_signer(self.domain, request, entry.request_signature)
        except MalformedSignature as e:
            findings.append(("request_malformed", f"request signature: {e}"))
        else:
            if signer.lower() != buyer.lower():
                findings.append(("wrong_request_signer", f"request signed by {signer}, not by "
                                 f"the debit's buyer {buyer}"))
        stamp = self.chain.timestamp(receipt.block)
        earliest = request.expiry - REQUEST_WINDOW - self.max_lag
        if not earliest <= stamp < request.expiry:
            findings.append(("outside_request_window", f"block {receipt.block} has timestamp "
                             f"{stamp}, outside the request's window [{earliest}, "
                             f"{request.expiry}) (expiry {request.expiry}, max lag "
                             f"{self.max_lag} s)"))
        return findings

    def _entitled_at(self, debit_id: int, version: int, block: int) -> bool:
        key = (debit_id, version, block)
        if key not in self._entitled:
            try:
                self._entitled[key] = self.chain.is_entitled(debit_id, version, block)
            except ContractRevert:  # an unknown debit or version reverts: not entitled
                self._entitled[key] = False
        return self._entitled[key]


def check_releases(
    history: MarketHistory,
    chain: ChainView,
    epochs: EpochHistory,
    domain: Eip712Domain,
    logs: Mapping[str, list[LogEntry]],
    *,
    max_pending_age: int = MAX_PENDING_AGE,
    max_lag: int = MAX_LAG,
    latest: int | None = None,
) -> ReleaseRuns:
    """Run the four release checks over the logs fetched (node address -> entries)."""
    checker = ReleaseChecker(history, chain, epochs, domain, max_pending_age=max_pending_age,
                             max_lag=max_lag, latest=latest)
    for address, log in sorted(logs.items(), key=lambda item: epochs.label(item[0])):
        checker.check_node(address, log)
    return checker.runs
