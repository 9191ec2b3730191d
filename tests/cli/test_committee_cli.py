"""The committee commands as an operator and a governor type them, on a real anvil:
`committee init` (DKG roster) → `deploy --roster` → gateways run the ceremony → `committee
status` / `export`; `keygen`, `propose` (governor only), `approve`; and the bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.committee import (
    NODE_ACCOUNT_FORMAT,
    load_node_key,
    node_encryption_key,
    read_public_committee,
    read_roster,
)
from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.service import GatewayService, Timing
from marketplace.gateway.state import GatewayState
from tests.cli.conftest import invoke

PASSPHRASE = "operator passphrase"
ETHER = 10**18


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("committee-cli")
    (out / "pass").write_text(PASSPHRASE)
    return out


def _env(account: object) -> dict[str, str]:
    return {"DATADEBIT_PRIVATE_KEY": "0x" + bytes(account.key).hex()}  # type: ignore[attr-defined]


def test_init_writes_node_keys_without_shares_and_a_roster(folder: Path) -> None:
    made = invoke("committee", "init", "--n", "3", "--t", "2", "--out", folder / "c",
                  "--passphrase-file", folder / "pass", "--kdf", "interactive",
                  "--urls", "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3")
    assert made.exit_code == 0, made.output
    roster = read_roster(folder / "c" / "roster.json")
    assert roster.threshold == 2 and len(roster.nodes) == 3
    for i, node in enumerate(roster.nodes, start=1):
        raw = json.loads((folder / "c" / f"node-{i}.json").read_text())
        assert raw["format"] == NODE_ACCOUNT_FORMAT and "share" not in raw
        key = load_node_key(folder / "c" / f"node-{i}.json", PASSPHRASE)
        assert key.share is None and key.address == node.address
        assert node_encryption_key(key.account) == node.encryption_key
    again = invoke("committee", "init", "--n", "3", "--t", "2", "--out", folder / "c",
                   "--passphrase-file", folder / "pass", "--kdf", "interactive")
    assert again.exit_code == 1 and "refusing to overwrite" in again.output


def test_deploy_needs_a_roster_or_an_explicit_trusted_dealer(folder: Path, anvil_url: str) -> None:
    deployer = Account.create()
    neither = invoke("deploy", "--rpc", anvil_url, env=_env(deployer))
    assert neither.exit_code == 1 and "--roster" in neither.output
    (folder / "bad-roster.json").write_text('{"threshold": 4, "nodes": []}')
    bad = invoke("deploy", "--roster", folder / "bad-roster.json", "--rpc", anvil_url,
                 env=_env(deployer))
    assert bad.exit_code == 1 and "nodes" in bad.output


def test_a_dkg_committee_from_deploy_to_export(folder: Path, anvil_url: str) -> None:
    w3 = connect(anvil_url)
    dev = DevChain(w3)
    deployer, stranger = Account.create(), Account.create()
    roster = read_roster(folder / "c" / "roster.json")
    for address in (deployer.address, stranger.address, *(n.address for n in roster.nodes)):
        dev.fund(address, 10 * ETHER)
    # the chain's clock runs two days ahead of this machine's (a dev chain other tests
    # travelled in time): `--deadline 10m` must count from the chain's time, or the
    # contract refuses it as already past (DeadlineNotInFuture: failed before the fix)
    dev.advance(2 * 86_400)
    deployed = invoke("deploy", "--roster", folder / "c" / "roster.json", "--rpc", anvil_url,
                      "--phase", "3s", "--deadline", "10m", env=_env(deployer))
    assert deployed.exit_code == 0, deployed.output
    address = deployed.stdout.strip()
    status = invoke("committee", "status", "--rpc", anvil_url, "--market", address, "--json")
    report = json.loads(status.stdout)
    assert report["epoch"] == 0 and report["committee"] is None
    assert report["ceremony"]["phase"] == "deal"
    assert report["ceremony"]["waitingFor"] == [n.address for n in roster.nodes]
    early = invoke("committee", "export", "--roster", folder / "c" / "roster.json", "--out",
                   folder / "early.json", "--rpc", anvil_url, "--market", address)
    assert early.exit_code == 1 and "error:" in early.output
    assert not (folder / "early.json").exists()

    gateways = [
        GatewayService(
            market=MarketClient(connect(anvil_url), address),
            state=GatewayState(SqliteDatabase(":memory:")),
            node=load_node_key(folder / "c" / f"node-{i}.json", PASSPHRASE),
            timing=Timing(poll_interval=0.05, anchor_interval=3600),
        )
        for i in (1, 2, 3)
    ]
    for _ in range(20):
        for gateway in gateways:
            gateway.tick(anchor=False)
        if all(g.share_book.get(1) is not None for g in gateways):
            break
    market = MarketClient(w3, address)
    assert market.current_epoch() == 1

    shown = invoke("committee", "status", "--rpc", anvil_url, "--market", address)
    assert shown.exit_code == 0, shown.output
    assert "committee epoch 1" in shown.stdout and "2-of-3" in shown.stdout
    assert "finalized" in shown.stdout
    exported = invoke("committee", "export", "--roster", folder / "c" / "roster.json", "--out",
                      folder / "committee.json", "--rpc", anvil_url, "--market", address)
    assert exported.exit_code == 0, exported.output
    public = read_public_committee(folder / "committee.json")
    assert public.committee_key.to_bytes() == market.committee().committee_key
    assert [n.url for n in public.nodes] == [n.url for n in roster.nodes]

    # a new operator's key, a proposal only the governor may make, an approval
    entry = invoke("committee", "keygen", "--out", folder / "new.json", "--url",
                   "http://127.0.0.1:4", "--passphrase-file", folder / "pass", "--kdf",
                   "interactive")
    assert entry.exit_code == 0, entry.output
    new_node = json.loads(entry.stdout)
    assert load_node_key(folder / "new.json", PASSPHRASE).address == new_node["address"]
    grown = {"threshold": 2, "nodes": [*json.loads((folder / "c" / "roster.json").read_text())
                                       ["nodes"], new_node]}
    (folder / "grown.json").write_text(json.dumps(grown))
    refused = invoke("committee", "propose", "--roster", folder / "grown.json", "--rpc",
                     anvil_url, "--market", address, env=_env(stranger))
    assert refused.exit_code == 1 and "NotGovernor" in refused.output
    proposed = invoke("committee", "propose", "--roster", folder / "grown.json", "--rpc",
                      anvil_url, "--market", address, "--phase", "3s", env=_env(deployer))
    assert proposed.exit_code == 0, proposed.output
    assert "proposed ceremony 2" in proposed.stdout
    approved = invoke("committee", "approve", "2", "--node-key", folder / "c" / "node-1.json",
                      "--passphrase-file", folder / "pass", "--rpc", anvil_url,
                      "--market", address)
    assert approved.exit_code == 0, approved.output
    twice = invoke("committee", "approve", "2", "--node-key", folder / "c" / "node-1.json",
                   "--passphrase-file", folder / "pass", "--rpc", anvil_url,
                   "--market", address)
    assert twice.exit_code == 1 and "AlreadyApproved" in twice.output
    report = json.loads(invoke("committee", "status", "--rpc", anvil_url, "--market", address,
                               "--json").stdout)
    assert report["ceremony"]["id"] == 2 and report["ceremony"]["approvals"] == 1
    assert report["ceremony"]["phase"] == "approval"
    assert report["ceremony"]["waitingFor"] == [n.address for n in roster.nodes[1:]]
    shown = invoke("committee", "status", "--rpc", anvil_url, "--market", address)
    assert "phase approval" in shown.stdout and roster.nodes[2].address in shown.stdout


@pytest.mark.parametrize("bad", ["0", "1y", "-5m", "soon"])
def test_durations_are_checked(bad: str, folder: Path) -> None:
    result = invoke("committee", "propose", "--roster", folder / "c" / "roster.json",
                    "--deadline", bad, "--rpc", "http://127.0.0.1:1", "--market", "0x" + "11" * 20)
    assert result.exit_code == 2 and "duration" in result.output


def test_the_audit_reads_former_nodes_logs_from_their_roster(folder: Path) -> None:
    """After a reshare drops a node, committee.json no longer names it: `audit --roster`
    gives its URL (keyed by address, since indices change between epochs)."""
    from marketplace.cli.audit_commands import node_sources  # noqa: PLC0415
    from marketplace.committee import CommitteeNode, PublicCommittee  # noqa: PLC0415
    from marketplace.keyrelease import NodeIndex, Point, Scalar  # noqa: PLC0415

    old = read_roster(folder / "c" / "roster.json")
    point = Point.base_mul(Scalar.from_int(7))
    current = PublicCommittee(1, point, (
        CommitteeNode(NodeIndex(1), old.nodes[1].address, point, "http://127.0.0.1:9"),
    ))
    sources = node_sources(current, 1.0, [old])
    assert set(sources) == {n.address.lower() for n in old.nodes}
    assert node_sources(current, 1.0).keys() == {old.nodes[1].address.lower()}
