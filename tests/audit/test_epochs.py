"""The auditor across committee epochs (issue 10): each receipt is checked against the
epoch in force at its block, signed by that epoch's node of its index; logs are read from
the nodes of every epoch; each epoch's ceremony is replayed (or flagged as dealt).

On a real contract (eth-tester) that went through a reshare: tests/audit/two_epochs.py.
Before epochs, the auditor checked every receipt against the committee at the audited block
and required epoch 1: the honest epoch-2 receipts here were `unknown_epoch`, an epoch-1
receipt dated after the reshare was judged against the new roster (a `bad_signature` that
named the wrong cause), and the former nodes' logs were not read at all (reasoned from that
code, not re-run: it took log sources by index only).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.audit.ceremonies import CEREMONIES
from marketplace.audit.release_log import ReleaseLogSource
from marketplace.audit.report import AuditReport
from tests.audit.forge import ListLog
from tests.audit.two_epochs import TwoEpochs, build


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[TwoEpochs]:
    built = build(tmp_path)
    yield built


def kinds(report: AuditReport) -> set[str]:
    return {v.kind for v in report.violations}


def honest_history(chain: TwoEpochs) -> None:
    """Epoch-1 nodes 1 and 2 release, the reshare, epoch-2 nodes 1 and 2 (A3 at its new
    index) release; everyone anchors."""
    a1, a2, _ = chain.one
    b1, a3, _ = chain.two
    chain.release(a1, node=1, epoch=1)
    chain.release(a2, node=2, epoch=1)
    chain.reshare()
    chain.release(b1, node=1, epoch=2)
    chain.release(a3, node=2, epoch=2)


def test_honest_receipts_of_both_epochs_audit_clean(chain: TwoEpochs) -> None:
    honest_history(chain)
    chain.anchor_all()
    report = chain.auditor().run()
    assert report.clean, [v.detail for v in report.violations]
    by_name = {c.name: c for c in report.checks}
    assert by_name["release signatures"].checked == 4
    assert by_name["nodes reachable"].checked == 5  # A1, A2, A3 (once), B1, B3
    assert by_name[CEREMONIES].checked == 2
    dealt = [w for w in report.warnings if w.kind == "trusted_dealer"]
    assert sorted(w.fields["epoch"] for w in dealt) == [1, 2]
    assert "trusted dealer (development)" in dealt[0].detail


def test_an_epoch_1_receipt_dated_after_epoch_2_started_is_wrong_epoch(chain: TwoEpochs) -> None:
    """Old node A1 keeps releasing with its epoch-1 share after the reshare was final."""
    honest_history(chain)
    late = chain.release(chain.one[0], node=1, epoch=1)
    chain.anchor_all()
    report = chain.auditor().run()
    assert kinds(report) == {"wrong_epoch"}
    (violation,) = report.violations
    assert violation.fields["block"] == late.receipt.block > chain.epoch_2_block
    assert (violation.fields["epoch"], violation.fields["inForce"]) == (1, 2)


def test_a_receipt_dated_in_epoch_1_but_naming_epoch_2_is_wrong_epoch(chain: TwoEpochs) -> None:
    early_debit = chain.new_debit()
    honest_history(chain)
    chain.release(chain.two[0], node=1, epoch=2, block=chain.epoch_2_block - 1,
                  debit_id=early_debit)
    chain.anchor_all()
    report = chain.auditor().run()
    assert kinds(report) == {"wrong_epoch"}
    assert report.violations[0].fields["inForce"] == 1


def test_epoch_2_node_1_signing_as_epoch_1_node_1_is_caught(chain: TwoEpochs) -> None:
    """B1 (epoch 2's node 1) logs a receipt claiming epoch 1, where node 1 was A1: not its
    index there (bad_signature) and not the epoch in force at its block (wrong_epoch)."""
    honest_history(chain)
    chain.release(chain.two[0], node=1, epoch=1)
    chain.anchor_all()
    report = chain.auditor().run()
    assert kinds(report) == {"bad_signature", "wrong_epoch"}
    bad = next(v for v in report.violations if v.kind == "bad_signature")
    assert f"epoch 1's node 1 is {chain.one[0].address}" in bad.detail
    assert "(epoch 2 node 1)" in bad.detail


def test_a_node_signing_with_its_old_index_in_the_new_epoch_is_bad_signature(
    chain: TwoEpochs,
) -> None:
    """A3 was node 3 in epoch 1 and is node 2 in epoch 2: an epoch-2 receipt as node 3
    names B3's place."""
    honest_history(chain)
    chain.release(chain.two[1], node=3, epoch=2)
    chain.anchor_all()
    report = chain.auditor().run()
    assert kinds(report) == {"bad_signature"}
    assert chain.two[2].address in report.violations[0].detail


def test_a_receipt_for_an_epoch_never_finalized_is_unknown_epoch(chain: TwoEpochs) -> None:
    honest_history(chain)
    chain.release(chain.two[0], node=1, epoch=3)
    chain.anchor_all()
    report = chain.auditor().run()
    assert kinds(report) == {"unknown_epoch"}
    assert report.violations[0].fields["epoch"] == 3


def test_old_epoch_nodes_logs_are_read_and_required(chain: TwoEpochs) -> None:
    """A2 is in epoch 1 only: its log is still fetched (its releases must be checked); a
    missing source is node_unreachable, and its anchors are not foreign."""
    honest_history(chain)
    chain.anchor_all()
    sources = chain.sources()
    del sources[chain.one[1].address]
    report = chain.auditor(sources).run()
    assert kinds(report) == {"node_unreachable"}
    assert chain.one[1].address in report.violations[0].detail


def test_sources_by_index_name_the_current_epochs_nodes(chain: TwoEpochs) -> None:
    """A committee file numbers the current epoch's nodes: index 2 is A3, not A2."""
    honest_history(chain)
    chain.anchor_all()
    by_address = chain.sources()
    sources: dict[int, ReleaseLogSource] = {
        i: by_address[account.address] for i, account in enumerate(chain.two, start=1)
    }
    report = chain.auditor(sources).run()  # type: ignore[arg-type]
    unreachable = {v.fields["address"] for v in report.violations
                   if v.kind == "node_unreachable"}
    assert unreachable == {chain.one[0].address, chain.one[1].address}
    assert kinds(report) == {"node_unreachable"}


def test_a_node_in_both_epochs_is_fetched_once(chain: TwoEpochs) -> None:
    honest_history(chain)
    chain.anchor_all()
    sources = chain.sources()
    a3 = chain.two[1].address
    pages: list[int] = []

    class Counting(ListLog):
        def page(self, after: int, limit: int):  # type: ignore[no-untyped-def]
            pages.append(after)
            return super().page(after, limit)

    sources[a3] = Counting(chain.logs[a3], address=a3)
    assert chain.auditor(sources).run().clean
    assert pages == [0]


def test_a_finalized_result_the_transcript_does_not_give_is_ceremony_mismatch(
    chain: TwoEpochs,
) -> None:
    """Epoch 2 finalized as if by a ceremony (not the dealer's transcript hash) while no
    ceremony message was ever posted: the replay gives no result."""
    chain.reshare(transcript_hash=b"\x42" * 32)
    report = chain.auditor().run()
    assert kinds(report) == {"ceremony_mismatch"}
    (violation,) = report.violations
    assert violation.fields["epoch"] == 2 and "no result" in violation.detail


def test_a_former_node_that_anchored_nothing_may_be_gone(chain: TwoEpochs) -> None:
    """A2 left at the reshare without a release: no source is a warning, not a violation
    (A1, which anchored, stays required: the test above)."""
    a1, a2, _ = chain.one
    chain.release(a1, node=1, epoch=1)
    chain.reshare()
    chain.release(chain.two[0], node=1, epoch=2)
    chain.anchor_all()
    sources = chain.sources()
    del sources[a2.address]
    report = chain.auditor(sources).run()
    assert report.clean, [v.detail for v in report.violations]
    (gone,) = [w for w in report.warnings if w.kind == "former_node_unreachable"]
    assert gone.fields["address"] == a2.address
