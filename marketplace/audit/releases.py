"""Check 4: every release a node logged was signed by that committee node, sits inside the
Merkle roots it anchored on-chain (in order), and went to a debit that was consented and
entitled at the receipt's block.

Anchors are `ReleasesAnchored(node, seq, root, count)` events: anchor k covers the node's
next `count` log entries, so the auditor rebuilds each root from the log and compares.
An entry beyond the anchored prefix is *pending* (a warning) until it is older than
`max_pending_age` blocks, then a violation: a node that never anchors hides nothing
for long. Entitlement is the contract's own `isEntitled`, asked at the receipt's block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from marketplace.audit.chain_view import ChainView
from marketplace.audit.history import MarketHistory
from marketplace.audit.release_log import LoggedRelease
from marketplace.audit.report import CheckRun
from marketplace.chain.errors import ContractRevert
from marketplace.chain.types import Committee
from marketplace.eip712 import Eip712Domain, MalformedSignature, digest, recover_signer
from marketplace.merkle import merkle_root

SIGNATURES = "release signatures"
ANCHORING = "release anchoring"
ENTITLEMENT = "release entitlement"

#: Default age (in blocks) after which an unanchored release is a violation.
MAX_PENDING_AGE = 256


@dataclass(frozen=True, slots=True)
class ReleaseRuns:
    signatures: CheckRun
    anchoring: CheckRun
    entitlement: CheckRun

    def all(self) -> list[CheckRun]:
        return [self.signatures, self.anchoring, self.entitlement]


class ReleaseChecker:
    """Checks node logs against the history and the chain at the audited block."""

    def __init__(
        self,
        history: MarketHistory,
        chain: ChainView,
        committee: Committee,
        domain: Eip712Domain,
        *,
        max_pending_age: int = MAX_PENDING_AGE,
    ) -> None:
        self.history = history
        self.chain = chain
        self.committee = committee
        self.domain = domain
        self.max_pending_age = max_pending_age
        self.runs = ReleaseRuns(CheckRun(SIGNATURES), CheckRun(ANCHORING), CheckRun(ENTITLEMENT))
        self._entitled: dict[tuple[int, int, int], bool] = {}

    def check_node(self, node: int, log: list[LoggedRelease]) -> None:
        self._check_sequence(node, log)
        for entry in log:
            self._check_signature(node, entry)
        anchored = self._check_anchors(node, log)
        for entry in log:
            self._check_entitlement(node, entry, anchored)

    # ------------------------------------------------------------ log shape and signatures

    def _check_sequence(self, node: int, log: list[LoggedRelease]) -> None:
        run = self.runs.signatures
        seen: set[tuple[int, int]] = set()
        for position, entry in enumerate(log, start=1):
            if entry.seq != position:
                run.violation("log_malformed", f"node {node}: entry {position} has seq "
                              f"{entry.seq} (a gap or reordering)", node=node, seq=entry.seq)
            pair = (entry.receipt.debit_id, entry.receipt.version)
            if pair in seen:
                run.violation("log_malformed", f"node {node}: debit {pair[0]} version "
                              f"{pair[1]} released twice", node=node, seq=entry.seq)
            seen.add(pair)

    def _check_signature(self, node: int, entry: LoggedRelease) -> None:
        run = self.runs.signatures
        expected = self.committee.nodes[node - 1]
        receipt = entry.receipt
        ids: dict[str, int | str] = {"node": node, "seq": entry.seq, "debitId": receipt.debit_id}
        try:
            signer = recover_signer(self.domain, receipt, entry.signature)
        except MalformedSignature as e:
            run.violation("bad_signature", f"node {node} seq {entry.seq}: {e}", **ids)
            run.count(False)
            return
        ok = signer.lower() == expected.lower() and receipt.node == node
        if not ok:
            member = self.committee.index_of(signer)
            who = f"committee node {member}" if member else "not a committee node"
            run.violation(
                "bad_signature",
                f"node {node} seq {entry.seq}: receipt for node {receipt.node} recovers to "
                f"{signer} ({who}), not to node {node}'s {expected}",
                **ids, signer=signer,
            )
        run.count(ok)

    # ------------------------------------------------------------ anchors

    def _check_anchors(self, node: int, log: list[LoggedRelease]) -> int:
        """Compare every on-chain root with the log; returns how many entries are anchored."""
        run = self.runs.anchoring
        address = self.committee.nodes[node - 1]
        leaves = [digest(self.domain, e.receipt) for e in log]
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
                for _ in batch:
                    run.count(True)
            first += anchor.count
        for entry in log[first:]:
            age = self.history.head - entry.receipt.block
            ids = {"node": node, "seq": entry.seq, "debitId": entry.receipt.debit_id}
            if age > self.max_pending_age:
                run.violation("unanchored", f"node {node} seq {entry.seq}: not anchored "
                              f"{age} blocks after its release", **ids)
                run.count(False)
            else:
                run.warning("pending", f"node {node} seq {entry.seq}: not anchored yet", **ids)
                run.pending += 1
        return min(first, len(log))

    # ------------------------------------------------------------ entitlement

    def _check_entitlement(self, node: int, entry: LoggedRelease, anchored: int) -> None:
        run = self.runs.entitlement
        receipt = entry.receipt
        ids: dict[str, int | str] = {
            "node": node, "seq": entry.seq, "debitId": receipt.debit_id,
            "version": receipt.version, "block": receipt.block,
        }
        where = f"node {node} seq {entry.seq} (debit {receipt.debit_id} v{receipt.version})"
        if receipt.block > self.history.head:
            run.warning("after_head", f"{where}: released at block {receipt.block}, after the "
                        "audited block", **ids)
            run.pending += 1
            return
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
    committee: Committee,
    domain: Eip712Domain,
    logs: Mapping[int, list[LoggedRelease]],
    *,
    max_pending_age: int = MAX_PENDING_AGE,
) -> ReleaseRuns:
    """Run the three release checks over the logs fetched (node index -> entries)."""
    checker = ReleaseChecker(history, chain, committee, domain, max_pending_age=max_pending_age)
    for node, log in sorted(logs.items()):
        checker.check_node(node, log)
    return checker.runs
