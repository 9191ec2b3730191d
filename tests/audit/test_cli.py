"""`datadebit audit`: JSON schema, exit codes, and errors that stop an audit before it runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from marketplace.cli.audit_commands import emit
from marketplace.cli.config import ConfigError, check_committee_matches
from marketplace.cli.main import app
from marketplace.committee import PublicCommittee
from tests.audit.forge import append_forged, force_ether, forged
from tests.audit.scenario import Scenario

runner = CliRunner()
MARKET = "0x" + "ab" * 20


def test_emit_writesTheJsonSchema_andExitsZero_whenClean(
    scenario: Scenario, tmp_path: Path
) -> None:
    report = scenario.auditor().run()
    target = tmp_path / "audit.json"
    code = emit(report, str(target), Console(file=open(tmp_path / "table.txt", "w")))  # noqa: SIM115
    assert code == 0
    document = json.loads(target.read_text())
    assert set(document) == {"schema", "head", "chainId", "market", "clean", "seconds",
                             "checks", "violations", "warnings"}
    assert document["head"] == report.head and document["clean"] is True
    assert [c["name"] for c in document["checks"]] == [c.name for c in report.checks]
    assert all(set(c) == {"name", "checked", "failed", "pending"} for c in document["checks"])
    assert "audit clean" in (tmp_path / "table.txt").read_text()


def test_emit_exitsOne_andListsViolations(scenario: Scenario, tmp_path: Path) -> None:
    cid = scenario.cids[2]
    (scenario.net.store.root / "blocks" / cid.text[-2:] / cid.text).unlink()
    report = scenario.auditor().run()
    out = tmp_path / "table.txt"
    with out.open("w") as f:
        code = emit(report, None, Console(file=f, width=200))
    assert code == 1
    assert "violation cid_unretrievable" in out.read_text()
    (violation,) = report.to_json()["violations"]
    assert violation["kind"] == "cid_unretrievable" and violation["check"] == "content (CIDs)"
    assert violation["cid"] == cid.text and isinstance(violation["detail"], str)


def test_emit_toStdout_printsOnlyJsonThere(scenario: Scenario, capsys: object) -> None:
    report = scenario.auditor().run()
    assert emit(report, "-", Console()) == 0
    captured = capsys.readouterr()  # type: ignore[attr-defined]
    assert json.loads(captured.out)["clean"] is True
    assert "audit clean" in captured.err


def test_audit_exitsTwo_withoutItsOptions() -> None:
    result = runner.invoke(app, ["audit"], env={})
    assert result.exit_code == 2


def test_audit_exitsTwo_onAMarketThatIsNotAnAddress(tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "--rpc", "http://127.0.0.1:9", "--market", "0x12",
                                 "--store", str(tmp_path), "--committee", "c.json"])
    assert result.exit_code == 2
    assert result.output.startswith("error: --market '0x12' is not an Ethereum address")


def test_audit_exitsTwo_onAMissingCommitteeFile(tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "--rpc", "http://127.0.0.1:9", "--market", MARKET,
                                 "--store", str(tmp_path), "--committee",
                                 str(tmp_path / "none.json")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ")


def test_audit_exitsTwo_whenTheChainDoesNotAnswer(tmp_path: Path, scenario: Scenario) -> None:
    committee = tmp_path / "committee.json"
    committee.write_text(json.dumps(_committee_json(scenario)))
    result = runner.invoke(app, ["audit", "--rpc", "http://127.0.0.1:9", "--market", MARKET,
                                 "--store", str(tmp_path), "--committee", str(committee)])
    assert result.exit_code == 2
    assert "error: " in result.output and "127.0.0.1:9" in result.output


def _committee_json(scenario: Scenario) -> dict[str, object]:
    keys = scenario.net.dealt.keys
    return {
        "threshold": keys.threshold,
        "committeeKey": "0x" + keys.committee_key.to_bytes().hex(),
        "nodes": [
            {"index": i, "address": a.address, "shareKey": "0x" + k.point.to_bytes().hex(),
             "url": f"http://127.0.0.1:{9600 + i}"}
            for i, (a, k) in enumerate(zip(scenario.net.node_accounts, keys.share_keys,
                                           strict=True), start=1)
        ],
    }


def test_a_committee_file_for_another_committee_is_a_config_error(scenario: Scenario) -> None:
    document = _committee_json(scenario)
    public = PublicCommittee.from_json(document)
    check_committee_matches(public, scenario.net.market.committee(), Path("c.json"))  # right one
    nodes = document["nodes"]
    assert isinstance(nodes, list)
    nodes[0]["address"], nodes[1]["address"] = nodes[1]["address"], nodes[0]["address"]
    with pytest.raises(ConfigError):
        check_committee_matches(
            PublicCommittee.from_json(document), scenario.net.market.committee(), Path("c.json")
        )


def test_emit_writesTheNewFindingKinds_withTheirFields(scenario: Scenario, tmp_path: Path) -> None:
    late = scenario.net.market.w3.eth.block_number + 1_000_000
    extra = forged(scenario, 2, scenario.active_debit, 2, block=late)
    sources = append_forged(scenario, 2, [extra], anchored=False)
    force_ether(scenario.net.market.w3, scenario.net.market.address, 1)
    target = tmp_path / "audit.json"
    code = emit(scenario.auditor(sources).run(), str(target),
                Console(file=open(tmp_path / "table.txt", "w")))  # noqa: SIM115
    assert code == 1
    document = json.loads(target.read_text())
    (violation,) = document["violations"]
    assert violation["kind"] == "dated_after_head" and violation["check"] == "release entitlement"
    assert violation["node"] == 2 and violation["block"] == late
    (warning,) = [w for w in document["warnings"] if w["kind"] != "trusted_dealer"]
    assert warning["kind"] == "balance_surplus" and warning["surplus"] == 1


def test_audit_help_lists_the_bounds_it_reads_logs_with() -> None:
    result = runner.invoke(app, ["audit", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--max-lag", "--max-tail", "--max-pending-age", "--timeout"):
        assert option in result.output
