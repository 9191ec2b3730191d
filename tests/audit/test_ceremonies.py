"""The auditor's committee-ceremonies check on a real DKG ceremony, posted on eth-tester:
three nodes deal and post their verdicts through `postCeremonyMessage`, sign the result the
logs give, and finalize. The auditor replays the logs and finds the finalized epoch to be
the transcript's; a result that t colluding nodes signed but the transcript does not give
is `ceremony_mismatch`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from marketplace.audit.auditor import Auditor
from marketplace.audit.ceremonies import CEREMONIES
from marketplace.audit.report import AuditReport
from marketplace.ceremony_chain import CeremonyReader, to_typed
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import Roster
from marketplace.committee import node_encryption_key, node_encryption_secret
from marketplace.eip712 import CommitteeResult, sign
from marketplace.keyrelease.ceremony import Phase, my_verdict
from marketplace.keyrelease.dkg import DealerSecret, MessageKind
from storage.stores.local import LocalStore
from tests.audit.forge import ListLog

ETHER = 10**18


def run_dkg(tmp_path: Path, *, tamper: dict[str, object] | None = None) -> AuditReport:
    """A 2-of-3 DKG on chain, finalized with the transcript's result (or with the fields in
    `tamper` changed, every node signing it), then audited."""
    w3 = connect()
    dev = DevChain(w3)
    deployer: LocalAccount = Account.create()
    nodes: list[LocalAccount] = [Account.create() for _ in range(3)]
    for account in (deployer, *nodes):
        dev.fund(account.address, 10 * ETHER)
    roster = Roster(tuple(a.address for a in nodes),
                    tuple(node_encryption_key(a) for a in nodes), 2)
    market = MarketClient.deploy(w3, deployer, roster, phase_seconds=30).value
    reader = CeremonyReader(market)
    info = market.ceremony(1)
    params = reader.params(info)
    for index, account in enumerate(nodes, start=1):
        dealing = DealerSecret.generate(index, 2, None).dealing(params)
        market.post_ceremony_message(account, 1, MessageKind.DEALING, dealing)
    view = reader.view(info, to_block=w3.eth.block_number, now=dev.now())
    assert view.phase is Phase.VERDICT
    for index, account in enumerate(nodes, start=1):
        verdict = my_verdict(view, index, node_encryption_secret(account))
        market.post_ceremony_message(account, 1, MessageKind.VERDICT, verdict)
    view = reader.view(info, to_block=w3.eth.block_number, now=dev.now())
    assert view.phase is Phase.RESULT and view.result is not None
    result: CommitteeResult = to_typed(view.result)
    if tamper:
        result = replace(result, **tamper)  # type: ignore[arg-type]
    market.finalize_committee(deployer, 1, result, [sign(a, market.domain, result)
                                                    for a in nodes], [])
    sources = {a.address: ListLog([], address=a.address) for a in nodes}
    return Auditor(market, LocalStore(tmp_path / "store"), sources).run()  # type: ignore[arg-type]


def test_a_dkg_epoch_replays_to_its_finalized_result(tmp_path: Path) -> None:
    report = run_dkg(tmp_path)
    assert report.clean, [v.detail for v in report.violations]
    check = next(c for c in report.checks if c.name == CEREMONIES)
    assert (check.checked, check.failed) == (1, 0)
    assert not [w for w in report.warnings if w.kind == "trusted_dealer"]


@pytest.mark.parametrize(
    ("tamper", "said"),
    [
        ({"qualified": 0b011}, "qualified set 0x3 recorded"),
        ({"transcript_hash": b"\x01" * 32}, "transcript hash differs"),
    ],
)
def test_a_signed_result_the_transcript_does_not_give_is_ceremony_mismatch(
    tmp_path: Path, tamper: dict[str, object], said: str,
) -> None:
    """All three nodes sign a result with one field changed: the contract accepts it (the
    signatures are there), only a replay of the logs shows it is not the ceremony's."""
    report = run_dkg(tmp_path, tamper=tamper)
    assert {v.kind for v in report.violations} == {"ceremony_mismatch"}
    assert said in report.violations[0].detail
