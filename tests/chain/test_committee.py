"""Deployment (the dealt committee, every constructor and first-finalization error) and
release anchors. Committee epochs themselves: test_committee_epochs.py."""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account

from marketplace.chain.errors import (
    CommitteeLengthMismatch,
    ContractRevert,
    EmptyAnchor,
    InvalidCommitteeMember,
    InvalidThreshold,
    NotCommitteeNode,
    ZeroCommitteeKey,
)
from marketplace.chain.events import ReleasesAnchored
from marketplace.chain.market import MarketClient
from marketplace.chain.types import Committee, Roster
from tests.chain.conftest import ZERO_ADDRESS, ChainEnv, make_committee, only_event

ROOT = b"\xaa" * 32


def _deploy(env: ChainEnv, committee: Committee) -> MarketClient:
    """Deploy with epoch 1 dealt and finalized at once (its nodes are the first actors)."""
    nodes = env.actors.nodes[: committee.size]
    return MarketClient.deploy_dealt(env.w3, env.actors.deployer, committee, nodes).value


def _propose(env: ChainEnv, nodes: tuple[str, ...], keys: tuple[bytes, ...]) -> MarketClient:
    roster = Roster(nodes, keys, 2)  # type: ignore[arg-type]
    return MarketClient.deploy(env.w3, env.actors.deployer, roster).value


KEYS = (b"\x31" * 32, b"\x32" * 32, b"\x33" * 32)


def test_deploy_setsCommitteeAndEmptyMarket(env: ChainEnv) -> None:
    assert env.market.committee() == env.committee
    assert env.market.committee().threshold == 2
    assert env.market.current_epoch() == 1
    assert env.market.governor() == env.actors.deployer.address
    assert env.market.listing_count() == 0
    assert env.market.debit_count() == 0
    assert env.market.contract_balance() == 0
    for node in env.actors.nodes:
        assert env.market.anchor_count(node.address) == 0


def test_deploy_acceptsOneOfOneCommittee(env: ChainEnv) -> None:
    committee = make_committee(env.actors.nodes[:1], threshold=1)
    market = _deploy(env, committee)
    assert market.address != env.market.address
    assert market.committee() == committee


def test_deploy_acceptsThresholdEqualToSize(env: ChainEnv) -> None:
    committee = make_committee(env.actors.nodes, threshold=3)
    assert _deploy(env, committee).committee() == committee


def test_deploy_revertsWhen_zeroCommitteeKey(env: ChainEnv) -> None:
    committee = dataclasses.replace(env.committee, committee_key=bytes(32))
    with pytest.raises(ZeroCommitteeKey) as e:
        _deploy(env, committee)
    assert e.value.fields == {}


def test_deploy_revertsWhen_lengthMismatch(env: ChainEnv) -> None:
    committee = dataclasses.replace(env.committee, share_keys=env.committee.share_keys[:2])
    with pytest.raises(CommitteeLengthMismatch) as e:
        _deploy(env, committee)
    assert e.value.fields == {"nodes": 3, "keys": 2}


@pytest.mark.parametrize(
    ("size", "threshold"),
    [(3, 0), (3, 4), (0, 1), (1, 2)],
    ids=["zero", "aboveSize", "emptyCommittee", "oneNodeTwoShares"],
)
def test_deploy_revertsWhen_invalidThreshold(env: ChainEnv, size: int, threshold: int) -> None:
    committee = make_committee(env.actors.nodes[:size], threshold=threshold)
    with pytest.raises(InvalidThreshold) as e:
        _deploy(env, committee)
    assert e.value.fields == {"threshold": threshold, "size": size}


def test_deploy_revertsWhen_moreThan255Nodes(env: ChainEnv) -> None:
    nodes = [Account.create() for _ in range(256)]
    committee = Committee(
        committee_key=b"\x11" * 32, threshold=1,
        nodes=tuple(n.address for n in nodes), share_keys=(b"\x22" * 32,) * 256,
    )
    with pytest.raises(InvalidThreshold) as e:
        MarketClient.deploy_dealt(env.w3, env.actors.deployer, committee, nodes)
    assert e.value.fields == {"threshold": 1, "size": 256}


def test_deploy_revertsWhen_zeroNodeAddress(env: ChainEnv) -> None:
    nodes = list(env.committee.nodes)
    nodes[1] = ZERO_ADDRESS  # type: ignore[call-overload]
    with pytest.raises(InvalidCommitteeMember) as e:
        _propose(env, tuple(nodes), KEYS)
    assert e.value.fields == {"index": 2}


def test_deploy_revertsWhen_zeroEncryptionKey(env: ChainEnv) -> None:
    with pytest.raises(InvalidCommitteeMember) as e:
        _propose(env, env.committee.nodes, (KEYS[0], bytes(32), KEYS[2]))
    assert e.value.fields == {"index": 2}


def test_deploy_revertsWhen_zeroShareKey(env: ChainEnv) -> None:
    keys = list(env.committee.share_keys)
    keys[2] = bytes(32)
    committee = dataclasses.replace(env.committee, share_keys=tuple(keys))
    with pytest.raises(InvalidCommitteeMember) as e:
        _deploy(env, committee)
    assert e.value.fields == {"index": 3}


def test_deploy_revertsWhen_duplicateNode(env: ChainEnv) -> None:
    a, b, _ = env.committee.nodes
    with pytest.raises(InvalidCommitteeMember) as e:
        _propose(env, (a, b, a), KEYS)
    assert e.value.fields == {"index": 3}


def test_deploy_errorsAreContractReverts(env: ChainEnv) -> None:
    committee = dataclasses.replace(env.committee, committee_key=bytes(32))
    with pytest.raises(ContractRevert) as e:
        _deploy(env, committee)
    assert e.value.name == "ZeroCommitteeKey"
    assert "ZeroCommitteeKey()" in str(e.value)


# ---------------------------------------------------------------- anchorReleases


def test_anchorReleases_emitsReleasesAnchored(env: ChainEnv) -> None:
    node = env.actors.nodes[1]
    sent = env.market.anchor_releases(node, ROOT, 17)
    assert sent.value == 1
    event = only_event(env, sent, ReleasesAnchored)
    assert event == ReleasesAnchored(event.ref, node.address, 1, ROOT, 17)


def test_anchorReleases_numbersAnchorsPerNode(env: ChainEnv) -> None:
    first, second, third = env.actors.nodes
    assert env.market.anchor_releases(first, ROOT, 1).value == 1
    assert env.market.anchor_releases(first, b"\xbb" * 32, 2**32 - 1).value == 2
    sent = env.market.anchor_releases(second, ROOT, 5)
    assert sent.value == 1
    event = only_event(env, sent, ReleasesAnchored)
    assert event == ReleasesAnchored(event.ref, second.address, 1, ROOT, 5)
    assert env.market.anchor_count(first.address) == 2
    assert env.market.anchor_count(second.address) == 1
    assert env.market.anchor_count(third.address) == 0


def test_anchorReleases_revertsWhen_notCommitteeNode(env: ChainEnv) -> None:
    for caller in (env.actors.stranger, env.actors.deployer):
        with pytest.raises(NotCommitteeNode) as e:
            env.market.anchor_releases(caller, ROOT, 1)
        assert e.value.fields == {"caller": caller.address}
    assert env.market.anchor_count(env.actors.stranger.address) == 0


@pytest.mark.parametrize(("root", "count"), [(bytes(32), 1), (ROOT, 0), (bytes(32), 0)],
                         ids=["zeroRoot", "zeroCount", "both"])
def test_anchorReleases_revertsWhen_emptyAnchor(env: ChainEnv, root: bytes, count: int) -> None:
    node = env.actors.nodes[0]
    with pytest.raises(EmptyAnchor) as e:
        env.market.anchor_releases(node, root, count)
    assert e.value.fields == {}
    assert env.market.anchor_count(node.address) == 0
