"""Each kind of cheating the auditor exists for, staged on a real (in-process) network.

Every test asserts the exact violation kinds, so it fails if the check that catches the
cheat is removed (another check noticing something else would not satisfy it).
"""

from __future__ import annotations

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from marketplace.audit.release_log import HttpReleaseLog, ReleaseLogSource, ReleasePage
from marketplace.eip712 import ReleaseReceipt, sign
from marketplace.gateway.service import GatewayService
from marketplace.gateway.state import Release
from tests.audit.scenario import Scenario


def inject_release(
    scenario: Scenario, node: int, debit_id: int, version: int, signer: LocalAccount
) -> None:
    """Append a release to node `node`'s own log, signed by `signer`, as a cheating or
    compromised node would; the node then anchors it like any other."""
    gateway: GatewayService = scenario.net.gateways[node]
    block = scenario.net.market.w3.eth.block_number
    sealed = b"\x01" * 100

    def build(seq: int) -> Release:
        receipt = ReleaseReceipt.for_sealed_share(debit_id, version, node, sealed, block)
        return Release(seq, debit_id, version, node, sealed, receipt.sealed_share_hash, block,
                       sign(signer, scenario.net.domain, receipt))

    gateway.state.append_release(debit_id, version, build)
    scenario.net.sync()


def test_audit_catches_aReceiptSignedByANonCommitteeKey(scenario: Scenario) -> None:
    # debit and version are entitled and the node anchors the entry: only the signature is off
    inject_release(scenario, 1, scenario.active_debit, 2, Account.create())
    report = scenario.auditor().run()
    assert report.kinds() == {"bad_signature"}
    (violation,) = report.violations
    assert violation.fields["node"] == 1 and "not a committee node" in violation.detail
    assert report.check("release signatures").failed == 1


def test_audit_catches_aReceiptSignedByAnotherCommitteeNode(scenario: Scenario) -> None:
    inject_release(scenario, 1, scenario.active_debit, 2, scenario.net.node_accounts[1])
    report = scenario.auditor().run()
    assert report.kinds() == {"bad_signature"}
    assert "committee node 2" in report.violations[0].detail


class AlteredLog:
    """A node's log source whose first entry has a field changed after signing."""

    def __init__(self, inner: ReleaseLogSource) -> None:
        self.inner = inner

    def page(self, after: int, limit: int) -> ReleasePage:
        page = self.inner.page(after, limit)
        first, *rest = page.releases
        receipt = first.receipt
        altered = ReleaseReceipt(receipt.debit_id, receipt.version, receipt.node,
                                 bytes(32), receipt.block)
        entry = type(first)(first.seq, altered, first.signature)
        return ReleasePage(page.node, page.address, (entry, *rest))


def test_audit_catches_aReceiptFieldAlteredAfterSigning(scenario: Scenario) -> None:
    sources = scenario.sources()
    sources[2] = AlteredLog(sources[2])
    report = scenario.auditor(sources).run()
    # the signature no longer recovers to node 2, and the anchored root no longer matches
    assert report.kinds() == {"bad_signature", "anchor_mismatch"}
    assert {v.fields["node"] for v in report.violations} == {2}


def test_audit_catches_aReleaseMissingFromItsAnchor(scenario: Scenario) -> None:
    # the node quietly drops a release from its log after anchoring it
    with scenario.net.gateways[3].state.db.transaction() as tx:
        tx.execute("DELETE FROM releases WHERE seq = 1")
    report = scenario.auditor().run()
    assert "anchor_mismatch" in report.kinds()
    assert report.kinds() <= {"anchor_mismatch", "log_malformed"}
    assert report.check("release anchoring").failed >= 1


def test_audit_catches_anAnchoredEntryRewrittenInTheLog(scenario: Scenario) -> None:
    # same length, same sequence numbers, well signed: only the anchored root differs
    with scenario.net.gateways[3].state.db.transaction() as tx:
        tx.execute("DELETE FROM releases WHERE seq = 2")
    inject_release(scenario, 3, scenario.active_debit, 2, scenario.net.node_accounts[2])
    with scenario.net.gateways[3].state.db.transaction() as tx:
        tx.execute("UPDATE releases SET seq = 2 WHERE seq = 3")
    scenario.net.sync()
    report = scenario.auditor().run()
    assert report.kinds() == {"anchor_mismatch"}


def test_audit_catches_storedBytesReplaced(scenario: Scenario) -> None:
    cid = scenario.cids[1]  # the single-block version: its one block is the file
    block = scenario.net.store.root / "blocks" / cid.text[-2:] / cid.text
    raw = bytearray(block.read_bytes())
    raw[10] ^= 0x01
    block.write_bytes(bytes(raw))
    report = scenario.auditor().run()
    assert report.kinds() == {"cid_mismatch"}
    assert report.violations[0].fields["cid"] == cid.text
    assert report.check("content (CIDs)").failed == 1


def test_audit_catches_aLeafBlockOfALargeFileReplaced(scenario: Scenario) -> None:
    cid = scenario.cids[0]
    leaves = sorted(p for p in (scenario.net.store.root / "blocks").rglob("bafkrei*"))
    for leaf in leaves:
        leaf.write_bytes(b"\x00" * leaf.stat().st_size)
    report = scenario.auditor().run()
    assert report.kinds() == {"cid_mismatch"}
    assert cid.text in {v.fields["cid"] for v in report.violations}


def test_audit_catches_contentMissingFromTheStore(scenario: Scenario) -> None:
    cid = scenario.cids[2]
    (scenario.net.store.root / "blocks" / cid.text[-2:] / cid.text).unlink()
    report = scenario.auditor().run()
    assert report.kinds() == {"cid_unretrievable"}


def test_audit_catches_aReleaseForADebitNeverConsented(scenario: Scenario) -> None:
    # a real committee node signs and anchors a release the contract never allowed
    node = 3
    inject_release(scenario, node, scenario.unconsented_debit, 1,
                   scenario.net.node_accounts[node - 1])
    report = scenario.auditor().run()
    assert report.kinds() == {"not_consented", "not_entitled"}
    assert {v.fields["debitId"] for v in report.violations} == {scenario.unconsented_debit}
    assert report.check("release signatures").failed == 0
    assert report.check("release anchoring").failed == 0
    assert report.check("release entitlement").failed == 1


def test_audit_reports_anUnreachableNode(scenario: Scenario) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sources = scenario.sources()
    sources[2] = HttpReleaseLog(2, httpx.Client(transport=httpx.MockTransport(refuse),
                                                base_url="http://node-2"))
    del sources[3]
    report = scenario.auditor(sources).run()
    assert report.kinds() == {"node_unreachable"}
    assert sorted(v.fields["node"] for v in report.violations) == [2, 3]
    assert report.check("nodes reachable").failed == 2


def test_audit_warnsAbout_freshUnanchoredReleases_andFailsOldOnes(scenario: Scenario) -> None:
    buyer = scenario.net.account()
    scenario.release(buyer, scenario.request(buyer, scenario.auto_listing), 2)  # not anchored
    report = scenario.auditor().run()
    assert report.clean
    assert {w.kind for w in report.warnings} == {"pending"} and len(report.warnings) == 3
    assert report.check("release anchoring").pending == 3
    scenario.net.dev.mine(2)
    late = scenario.auditor(max_pending_age=1).run()
    assert late.kinds() == {"unanchored"} and len(late.violations) == 3
