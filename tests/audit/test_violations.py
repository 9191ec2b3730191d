"""Each kind of cheating the auditor exists for, staged on a real (in-process) network.

Every test asserts the exact violation kinds, so it fails if the check that catches the
cheat is removed (another check noticing something else would not satisfy it).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import replace

import httpx
from eth_account import Account

from marketplace.audit.release_log import (
    HttpReleaseLog,
    LoggedRelease,
    ReleaseLogSource,
    ReleasePage,
)
from tests.audit.forge import append_forged, force_ether, forged, real_log, serve
from tests.audit.scenario import DAY, Scenario, warning_kinds


def test_audit_catches_aReceiptSignedByANonCommitteeKey(scenario: Scenario) -> None:
    # debit and version are entitled and the node anchors the entry: only the signature is off
    extra = forged(scenario, 1, scenario.active_debit, 2, signer=Account.create())
    report = scenario.auditor(append_forged(scenario, 1, [extra])).run()
    assert report.kinds() == {"bad_signature"}
    (violation,) = report.violations
    assert violation.fields["node"] == 1 and "not a committee node" in violation.detail
    assert report.check("release signatures").failed == 1


def test_audit_catches_aReceiptSignedByAnotherCommitteeNode(scenario: Scenario) -> None:
    extra = forged(scenario, 1, scenario.active_debit, 2, signer=scenario.net.node_accounts[1])
    report = scenario.auditor(append_forged(scenario, 1, [extra])).run()
    assert report.kinds() == {"bad_signature"}
    assert "committee node 2" in report.violations[0].detail


class AlteredLog:
    """A node's log source whose first entry has a field changed after signing."""

    def __init__(self, inner: ReleaseLogSource) -> None:
        self.inner = inner

    def page(self, after: int, limit: int) -> ReleasePage:
        page = self.inner.page(after, limit)
        first, *rest = page.releases
        altered = replace(first.receipt, sealed_share_hash=bytes(32))
        return ReleasePage(page.node, page.address, (replace(first, receipt=altered), *rest))


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
    log = real_log(scenario, 3)
    log[1] = forged(scenario, 3, scenario.active_debit, 2)
    report = scenario.auditor(serve(scenario, 3, log)).run()
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
    extra = forged(scenario, 3, scenario.unconsented_debit, 1)
    report = scenario.auditor(append_forged(scenario, 3, [extra])).run()
    assert report.kinds() == {"not_consented", "not_entitled"}
    assert {v.fields["debitId"] for v in report.violations} == {scenario.unconsented_debit}
    assert report.check("release signatures").failed == 0
    assert report.check("release anchoring").failed == 0
    assert report.check("release requests").failed == 0
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
    assert warning_kinds(report) == ["pending"] * 3
    assert report.check("release anchoring").pending == 3
    scenario.net.dev.mine(2)
    late = scenario.auditor(max_pending_age=1).run()
    assert late.kinds() == {"unanchored"} and len(late.violations) == 3


# -- issue 9 item 3: the receipt's block and the buyer's request ---------------------------


def test_audit_catches_aReceiptDatedAfterItsAnchor(scenario: Scenario) -> None:
    """Issue 9 item 3: clean before (an anchored entry's date was never compared with its
    anchor). Entitled debit, live request: only the date gives it away."""
    net = scenario.net
    extra = forged(scenario, 1, scenario.active_debit, 2, block=net.market.w3.eth.block_number + 3)
    sources = append_forged(scenario, 1, [extra])  # anchored in the next block
    net.dev.mine(3)
    report = scenario.auditor(sources).run()
    assert report.kinds() == {"dated_after_anchor"}
    assert report.check("release anchoring").failed == 1


def test_audit_catches_aReceiptDatedFarInTheFuture(scenario: Scenario) -> None:
    """Issue 9 item 3: clean before: a release dated after the head was an `after_head`
    warning and stayed "pending" for ever, whoever it went to."""
    late = scenario.net.market.w3.eth.block_number + 1_000_000
    extra = forged(scenario, 2, scenario.unconsented_debit, 1, block=late)
    report = scenario.auditor(append_forged(scenario, 2, [extra], anchored=False)).run()
    assert report.kinds() == {"dated_after_head"}
    anchored = scenario.auditor(append_forged(scenario, 2, [extra])).run()
    assert anchored.kinds() == {"dated_after_anchor", "dated_after_head"}


def test_audit_catches_aReceiptBackdatedBeforeARevoke(scenario: Scenario) -> None:
    """Issue 9 item 3: clean before. The owner revokes a consented debit; afterwards its
    buyer signs a request and a colluding node releases, dating the receipt at the consent
    block, when `isEntitled` was true. The request was signed half a day after that block."""
    net = scenario.net
    buyer = scenario.buyer()
    debit_id = scenario.request(buyer, scenario.consent_listing)
    consented_at = net.market.consent(scenario.owner, debit_id).block_number
    net.dev.advance(DAY // 2)
    net.market.revoke(scenario.owner, debit_id)
    assert net.market.is_entitled(debit_id, 1, block=consented_at)
    extra = forged(scenario, 1, debit_id, 1, block=consented_at)
    report = scenario.auditor(append_forged(scenario, 1, [extra])).run()
    assert report.kinds() == {"outside_request_window"}
    (violation,) = report.violations
    assert violation.fields["debitId"] == debit_id and violation.fields["block"] == consented_at


def test_audit_catches_aShareReleasedToSomeoneElse(scenario: Scenario) -> None:
    """Clean before: receipts named no buyer, so a node releasing an entitled debit's share
    to a stranger (sealed to the stranger's key, the stranger's signed request) was
    indistinguishable from an honest release."""
    stranger = scenario.buyer()
    extra = forged(scenario, 2, scenario.active_debit, 2, buyer=stranger)
    report = scenario.auditor(append_forged(scenario, 2, [extra])).run()
    assert report.kinds() == {"buyer_mismatch", "wrong_request_signer", "buyer_key_mismatch"}
    assert report.check("release requests").failed == 1


# -- issue 9 item 7: what a node's log may cost the audit -----------------------------------


class EndlessNode:
    """An HTTP transport for a node whose log never ends: every page is full of copies of
    one well-signed entry."""

    def __init__(self, template: LoggedRelease, node: int) -> None:
        self.node = node
        self.entry = {
            "receipt": template.receipt.to_message(),
            "receiptSignature": "0x" + template.signature.hex(),
            "request": template.request.to_message() if template.request else None,
            "requestSignature": "0x" + template.request_signature.hex(),
        }
        self.served = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        after, limit = int(request.url.params["after"]), int(request.url.params["limit"])
        self.served += limit
        rows = [{"seq": after + i, **self.entry} for i in range(1, limit + 1)]
        body = {"node": self.node, "address": "", "releases": rows, "anchors": []}
        return httpx.Response(200, stream=httpx.ByteStream(json.dumps(body).encode()))

    def source(self) -> HttpReleaseLog:
        client = httpx.Client(transport=httpx.MockTransport(self), base_url="http://endless")
        return HttpReleaseLog(self.node, client)


def test_audit_cuts_anEndlessLog_withAWarning(scenario: Scenario) -> None:
    """Issue 9 item 7: before, the auditor read pages until a short one, i.e. for ever."""
    endless = EndlessNode(forged(scenario, 2, scenario.active_debit, 1), 2)
    sources = scenario.sources()
    sources[2] = endless.source()
    report = scenario.auditor(sources, max_tail=1500).run()
    (cut,) = [w for w in report.warnings if w.kind == "log_cut"]
    assert cut.fields["node"] == 2 and "2 anchored + a pending tail of 1500" in cut.detail
    assert endless.served == 2 + 1500 + 1
    # the copies are what they are: the same release logged again and again
    assert report.kinds() == {"log_malformed", "anchor_mismatch"}


def test_audit_readsNoMoreThanTheChainAllows_whenANodeAnchorsBillions(
    scenario: Scenario,
) -> None:
    """An anchor's count is the node's claim (uint32 per anchor): a node anchoring 2^32-1
    entries and serving an endless log would hold the audit for ever even with a pending
    tail; the read stops at one release per (debit, version) on chain plus the tail."""
    net = scenario.net
    net.market.anchor_releases(net.node_accounts[0], b"\x01" * 32, 2**32 - 1)
    endless = EndlessNode(forged(scenario, 1, scenario.active_debit, 1), 1)
    sources = scenario.sources()
    sources[1] = endless.source()
    report = scenario.auditor(sources, max_tail=100).run()
    assert "anchored_too_many" in report.kinds()
    # one debit on the auto listing (2 versions), four on the consent-only one (1 version)
    bound = 1 * 2 + 4 * 1
    assert endless.served == bound + 100 + 1
    assert "log_cut" in {w.kind for w in report.warnings}


def test_audit_refusesAGzipBombNode(scenario: Scenario) -> None:
    """Issue 9 item 7: before, httpx inflated the answer: 509 KiB of gzip became 1 GiB
    in memory (measured with tracemalloc); now it is refused unread (`log_malformed`)."""
    class Bomb(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield gzip.compress(b'{"releases": [' + b" " * (64 * 1024 * 1024) + b"]}")

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=Bomb())

    sources = scenario.sources()
    sources[3] = HttpReleaseLog(3, httpx.Client(transport=httpx.MockTransport(answer),
                                                base_url="http://bomb"))
    report = scenario.auditor(sources).run()
    assert report.kinds() == {"log_malformed"}
    (violation,) = report.violations
    assert violation.fields["node"] == 3 and "'gzip'-encoded" in violation.detail
    assert report.check("nodes reachable").failed == 1


# -- issue 9 item 8 ----------------------------------------------------------------------------


def test_audit_warnsAbout_etherForcedIntoTheMarket(scenario: Scenario) -> None:
    """Issue 9 item 8: a SELFDESTRUCT sending 1 wei failed every audit before."""
    force_ether(scenario.net.market.w3, scenario.net.market.address, 1)
    report = scenario.auditor().run()
    assert report.clean
    assert warning_kinds(report) == ["balance_surplus"]
