"""Committee epochs: proposals, ceremonies, approvals, finalization with EIP-712 signatures,
reshares that keep Y, past epochs, anchors across epochs, the governor.

Signatures are real: `marketplace.eip712.sign` with eth-account keys, recovered by the
contract through OpenZeppelin's ECDSA under the market's EIP-712 domain.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.chain.errors import (
    AlreadyApproved,
    CeremonyInProgress,
    CeremonyNotOpen,
    CommitteeKeyChanged,
    DeadlineNotInFuture,
    DeadlinePassed,
    DuplicateSigner,
    ECDSAInvalidSignatureLength,
    ECDSAInvalidSignatureS,
    InvalidMessageKind,
    InvalidQualifiedSet,
    NoCommittee,
    NotCeremonyMember,
    NotCommitteeNode,
    NotGovernor,
    TooFewSignatures,
    UnknownCeremony,
    UnknownEpoch,
    UnknownSigner,
    WrongCeremony,
    WrongEpoch,
    ZeroGovernor,
    ZeroPhaseSeconds,
)
from marketplace.chain.events import (
    CeremonyMessage,
    CeremonyMessageLog,
    CeremonyOpened,
    CommitteeApproved,
    CommitteeEpochEvent,
    CommitteeFinalized,
    CommitteeProposed,
    GovernorChanged,
    MarketEvent,
)
from marketplace.chain.market import TRUSTED_DEALER_TRANSCRIPT, MarketClient
from marketplace.chain.provider import connect
from marketplace.chain.types import CeremonyStatus, Roster, Sent
from marketplace.committee import node_encryption_key
from marketplace.eip712 import CommitteeResult, sign
from tests.chain.conftest import ETHER, ZERO_ADDRESS, ChainEnv, _env, receipt_of

Y = b"\x11" * 32  # the conftest committee's key
ROOT = b"\xaa" * 32
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HOUR = 3600
E = TypeVar("E", bound=MarketEvent)


def accounts(env: ChainEnv, count: int) -> list[LocalAccount]:
    created = [Account.create() for _ in range(count)]
    for account in created:
        env.dev.fund(account.address, 10 * ETHER)
    return created


def events_of(market: MarketClient, env: ChainEnv, sent: Sent[Any]) -> list[MarketEvent]:
    """Every log of the transaction, decoded by `market` (a foreign log fails the test)."""
    return [market.decoder.decode(log) for log in receipt_of(env, sent)["logs"]]


def only_event(market: MarketClient, env: ChainEnv, sent: Sent[Any], kind: type[E]) -> E:
    (event,) = events_of(market, env, sent)
    assert isinstance(event, kind)
    return event


def roster(nodes: Sequence[LocalAccount], threshold: int) -> Roster:
    return Roster(tuple(n.address for n in nodes),
                  tuple(node_encryption_key(n) for n in nodes), threshold)


def result_for(ceremony: int, epoch: int, size: int, *, key: bytes = Y,
               qualified: int | None = None, tag: bytes = b"") -> CommitteeResult:
    return CommitteeResult(
        ceremony=ceremony, epoch=epoch, committee_key=key,
        share_keys=tuple(keccak(b"share %d %d" % (epoch, i) + tag) for i in range(1, size + 1)),
        qualified=(1 << size) - 1 if qualified is None else qualified,
        transcript_hash=keccak(b"transcript %d" % ceremony),
    )


def sigs(market: MarketClient, signers: Sequence[LocalAccount],
         result: CommitteeResult) -> list[bytes]:
    return [sign(s, market.domain, result) for s in signers]


def pending_market(env: ChainEnv, nodes: Sequence[LocalAccount], threshold: int,
                   *, deadline: int | None = None) -> MarketClient:
    """A market whose epoch-1 ceremony (a DKG among `nodes`) is pending."""
    return MarketClient.deploy(env.w3, env.actors.deployer, roster(nodes, threshold),
                               deadline=deadline).value


# ---------------------------------------------------------------- first epoch


def test_deployDealt_finalizesEpochOneAtOnce(env: ChainEnv) -> None:
    market, nodes = env.market, env.actors.nodes
    assert market.current_epoch() == 1
    assert market.latest_ceremony() == 1
    assert market.committee() == env.committee
    epoch = market.committee_at(1)
    assert epoch.committee == env.committee
    assert epoch.encryption_keys == tuple(node_encryption_key(n) for n in nodes)
    assert (epoch.epoch, epoch.ceremony_id, epoch.qualified) == (1, 1, 0b111)
    assert epoch.transcript_hash == TRUSTED_DEALER_TRANSCRIPT == keccak(
        b"datadebit/trusted-dealer/v1")
    info = market.ceremony(1)
    assert info.status is CeremonyStatus.FINALIZED
    assert info.roster == epoch.roster
    (finalized,) = market.committee_finalized_logs(0)
    assert finalized == CommitteeEpochEvent(1, 1, Y, env.committee.share_keys, 0b111,
                                            TRUSTED_DEALER_TRANSCRIPT, epoch.start_block)


def test_deployDealt_refusesAccountsThatAreNotTheNodesInOrder(env: ChainEnv) -> None:
    nodes = env.actors.nodes
    with pytest.raises(ValueError, match="in order"):
        MarketClient.deploy_dealt(env.w3, env.actors.deployer, env.committee,
                                  [nodes[1], nodes[0], nodes[2]])


def test_deploy_leavesCeremonyOnePendingAndOpen(env: ChainEnv) -> None:
    nodes = accounts(env, 3)
    deadline = env.dev.now() + HOUR
    sent = MarketClient.deploy(env.w3, env.actors.deployer, roster(nodes, 2),
                               phase_seconds=45, deadline=deadline)
    market = sent.value
    assert market.current_epoch() == 0
    assert market.latest_ceremony() == 1
    info = market.ceremony(1)
    assert info.status is CeremonyStatus.PENDING
    assert (info.epoch, info.threshold, info.phase_seconds, info.deadline) == (1, 2, 45, deadline)
    assert info.opened_at == info.proposed_at == info.not_before > 0
    assert info.roster == roster(nodes, 2)
    assert not info.is_reshare
    with pytest.raises(NoCommittee):
        market.committee()
    with pytest.raises(UnknownEpoch) as e:
        market.committee_at(1)
    assert e.value.fields == {"epoch": 1}
    with pytest.raises(UnknownCeremony):
        market.ceremony(2)
    with pytest.raises(NotCommitteeNode):
        market.anchor_releases(nodes[0], ROOT, 1)
    deployed = market.events().read(sent.block_number, sent.block_number)
    assert [type(e) for e in deployed] == [GovernorChanged, CommitteeProposed, CeremonyOpened]
    governor, proposed, opened = deployed
    assert isinstance(governor, GovernorChanged) and isinstance(proposed, CommitteeProposed)
    assert (governor.previous, governor.next) == (ZERO_ADDRESS, env.actors.deployer.address)
    assert proposed.nodes == tuple(n.address for n in nodes)
    assert proposed.encryption_keys == tuple(node_encryption_key(n) for n in nodes)
    assert (proposed.ceremony_id, proposed.epoch, proposed.threshold) == (1, 1, 2)
    assert (proposed.phase_seconds, proposed.deadline) == (45, deadline)
    assert isinstance(opened, CeremonyOpened) and opened.opened_at == info.opened_at


def test_deploy_revertsWhen_badProposal(env: ChainEnv) -> None:
    nodes = accounts(env, 2)
    now = env.dev.now()
    with pytest.raises(DeadlineNotInFuture):
        MarketClient.deploy(env.w3, env.actors.deployer, roster(nodes, 2), deadline=now - 1)
    with pytest.raises(ZeroPhaseSeconds):
        MarketClient.deploy(env.w3, env.actors.deployer, roster(nodes, 2), phase_seconds=0)


def test_deploy_governorMayBeAnotherAddress(env: ChainEnv) -> None:
    nodes = accounts(env, 2)
    market = MarketClient.deploy(env.w3, env.actors.deployer, roster(nodes, 2),
                                 governor=env.actors.stranger.address, reshare_delay=77).value
    assert market.governor() == env.actors.stranger.address
    assert market.reshare_delay() == 77


def test_dkgLifecycle_messagesThenFinalize(env: ChainEnv) -> None:
    nodes = accounts(env, 3)
    market = pending_market(env, nodes, 2)
    start = env.w3.eth.block_number
    sent = market.post_ceremony_message(nodes[0], 1, 1, b"\x01dealing")
    event = only_event(market, env, sent, CeremonyMessage)
    assert (event.ceremony_id, event.sender, event.kind, event.payload) == (
        1, nodes[0].address, 1, b"\x01dealing")
    market.post_ceremony_message(nodes[2], 1, 2, b"\x01\x00")
    logs = market.ceremony_messages(1, start)
    assert [(m.sender, m.kind, m.payload) for m in logs] == [
        (nodes[0].address, 1, b"\x01dealing"), (nodes[2].address, 2, b"\x01\x00")]
    assert logs[0] == CeremonyMessageLog.from_event(event)
    assert logs[0].block_number == sent.block_number
    for kind in (0, 5):
        with pytest.raises(InvalidMessageKind):
            market.post_ceremony_message(nodes[0], 1, kind, b"x")
    with pytest.raises(NotCeremonyMember) as e:
        market.post_ceremony_message(env.actors.stranger, 1, 1, b"x")
    assert e.value.fields == {"sender": env.actors.stranger.address}

    result = result_for(1, 1, 3)
    final = market.finalize_committee(env.actors.stranger, 1, result,
                                      sigs(market, nodes[:2], result), [])
    finalized = only_event(market, env, final, CommitteeFinalized)
    assert (finalized.epoch, finalized.ceremony_id, finalized.committee_key) == (1, 1, Y)
    assert finalized.share_keys == result.share_keys
    assert (finalized.qualified, finalized.transcript_hash) == (0b111, result.transcript_hash)
    assert market.current_epoch() == 1
    assert market.ceremony(1).status is CeremonyStatus.FINALIZED
    epoch = market.committee_at(1)
    assert epoch.start_block == final.block_number
    assert epoch.committee.share_keys == result.share_keys
    assert market.committee() == epoch.committee
    with pytest.raises(WrongEpoch) as e2:
        market.finalize_committee(env.actors.stranger, 1, result,
                                  sigs(market, nodes[:2], result), [])
    assert e2.value.fields == {"epoch": 1, "expected": 2}
    with pytest.raises(WrongEpoch):
        market.post_ceremony_message(nodes[0], 1, 4, b"late")


def test_deadlinePassed_failsThenReproposalWorks(env: ChainEnv) -> None:
    nodes = accounts(env, 3)
    deadline = env.dev.now() + HOUR
    market = pending_market(env, nodes, 2, deadline=deadline)
    result = result_for(1, 1, 3)
    with pytest.raises(CeremonyInProgress) as e:
        market.propose_committee(env.actors.deployer, roster(nodes, 2), phase_seconds=30,
                                 deadline=deadline + HOUR)
    assert e.value.fields == {"ceremonyId": 1}
    env.dev.advance(HOUR + 1)
    assert market.ceremony(1).status is CeremonyStatus.FAILED
    with pytest.raises(DeadlinePassed) as e2:
        market.finalize_committee(env.actors.stranger, 1, result,
                                  sigs(market, nodes, result), [])
    assert e2.value.fields == {"ceremonyId": 1, "deadline": deadline}
    with pytest.raises(DeadlinePassed):
        market.post_ceremony_message(nodes[0], 1, 1, b"late")

    again = market.propose_committee(env.actors.deployer, roster(nodes, 2), phase_seconds=30,
                                     deadline=env.dev.now() + HOUR)
    assert again.value == 2 == market.latest_ceremony()
    info = market.ceremony(2)
    assert (info.epoch, info.status) == (1, CeremonyStatus.PENDING)
    assert info.opened_at > 0
    with pytest.raises(WrongCeremony) as e3:
        market.post_ceremony_message(nodes[0], 1, 1, b"old")
    assert e3.value.fields == {"ceremonyId": 1, "latest": 2}
    second = result_for(2, 1, 3)
    market.finalize_committee(env.actors.stranger, 2, second,
                              sigs(market, nodes[1:], second), [])
    assert market.current_epoch() == 1
    assert market.committee_at(1).ceremony_id == 2
    assert market.ceremony(1).status is CeremonyStatus.FAILED


def test_propose_revertsWhen_notGovernor(env: ChainEnv) -> None:
    for caller in (env.actors.stranger, env.actors.nodes[0]):
        with pytest.raises(NotGovernor) as e:
            env.market.propose_committee(caller, roster(env.actors.nodes, 2), phase_seconds=30,
                                         deadline=env.dev.now() + HOUR)
        assert e.value.fields == {"caller": caller.address}
    assert env.market.latest_ceremony() == 1


# ---------------------------------------------------------------- finalize refusals


@pytest.fixture
def dkg(env: ChainEnv) -> Iterator[tuple[MarketClient, list[LocalAccount], CommitteeResult]]:
    nodes = accounts(env, 4)
    yield pending_market(env, nodes, 3), nodes, result_for(1, 1, 4)


def test_finalize_revertsWhen_tooFewSignatures(
    env: ChainEnv, dkg: tuple[MarketClient, list[LocalAccount], CommitteeResult]
) -> None:
    market, nodes, result = dkg
    for count in (0, 2):
        with pytest.raises(TooFewSignatures) as e:
            market.finalize_committee(env.actors.stranger, 1, result,
                                      sigs(market, nodes[:count], result), [])
        assert e.value.fields == {"needed": 3, "valid": count}


def test_finalize_revertsWhen_duplicateSigner(
    env: ChainEnv, dkg: tuple[MarketClient, list[LocalAccount], CommitteeResult]
) -> None:
    market, nodes, result = dkg
    signatures = sigs(market, [nodes[0], nodes[1], nodes[0]], result)
    with pytest.raises(DuplicateSigner) as e:
        market.finalize_committee(env.actors.stranger, 1, result, signatures, [])
    assert e.value.fields == {"signer": nodes[0].address}


def test_finalize_revertsWhen_unknownSigner(
    env: ChainEnv, dkg: tuple[MarketClient, list[LocalAccount], CommitteeResult]
) -> None:
    market, nodes, result = dkg
    signatures = sigs(market, [*nodes[:2], env.actors.stranger], result)
    with pytest.raises(UnknownSigner) as e:
        market.finalize_committee(env.actors.stranger, 1, result, signatures, [])
    assert e.value.fields == {"signer": env.actors.stranger.address}


def test_finalize_revertsWhen_signaturesAreForAnotherResult(
    env: ChainEnv, dkg: tuple[MarketClient, list[LocalAccount], CommitteeResult]
) -> None:
    """Signatures over other share keys recover to strangers: the result is what is signed."""
    market, nodes, result = dkg
    other = result_for(1, 1, 4, tag=b"other")
    with pytest.raises(UnknownSigner):
        market.finalize_committee(env.actors.stranger, 1, result,
                                  sigs(market, nodes[:3], other), [])


def test_finalize_revertsWhen_malleableOrMalformedSignature(
    env: ChainEnv, dkg: tuple[MarketClient, list[LocalAccount], CommitteeResult]
) -> None:
    market, nodes, result = dkg
    signatures = sigs(market, nodes[:3], result)
    r, s, v = signatures[1][:32], int.from_bytes(signatures[1][32:64], "big"), signatures[1][64]
    high_s = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28
    with pytest.raises(ECDSAInvalidSignatureS):
        market.finalize_committee(env.actors.stranger, 1, result,
                                  [signatures[0], high_s, signatures[2]], [])
    with pytest.raises(ECDSAInvalidSignatureLength):
        market.finalize_committee(env.actors.stranger, 1, result,
                                  [signatures[0], signatures[1][:64], signatures[2]], [])


def test_finalize_revertsWhen_qualifiedSetInvalid(
    env: ChainEnv, dkg: tuple[MarketClient, list[LocalAccount], CommitteeResult]
) -> None:
    market, nodes, _ = dkg
    for qualified in (0b0011, 0b10111):  # two dealers < t = 3; a fifth dealer of four
        result = result_for(1, 1, 4, qualified=qualified)
        with pytest.raises(InvalidQualifiedSet) as e:
            market.finalize_committee(env.actors.stranger, 1, result,
                                      sigs(market, nodes, result), [])
        assert e.value.fields == {"qualified": qualified}


def test_finalize_revertsWhen_unknownCeremony(
    env: ChainEnv, dkg: tuple[MarketClient, list[LocalAccount], CommitteeResult]
) -> None:
    market, nodes, _ = dkg
    result = result_for(7, 1, 4)
    with pytest.raises(UnknownCeremony):
        market.finalize_committee(env.actors.stranger, 7, result, sigs(market, nodes, result), [])


@pytest.fixture(scope="module")
def embedded() -> ChainEnv:
    """A chain of its own for the property test (hypothesis runs many examples per test)."""
    return _env("embedded", connect())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(st.integers(0, 5), max_size=6),
    threshold=st.integers(1, 4),
)
def test_finalize_acceptsExactlyThresholdDistinctMembers(
    embedded: ChainEnv, picks: list[int], threshold: int
) -> None:
    """Signers drawn from 4 members and 2 strangers (indices 4, 5), repeats allowed: the
    first stranger or repeat is refused by name; otherwise it is final iff >= t signed."""
    env = embedded
    snapshot = env.dev.snapshot()
    try:
        members = [Account.from_key(keccak(b"member %d" % i)) for i in range(4)]
        strangers = [Account.from_key(keccak(b"stranger %d" % i)) for i in range(2)]
        pool = members + strangers
        market = pending_market(env, members, threshold)
        result = result_for(1, 1, 4)
        signers = [pool[i] for i in picks]
        signatures = sigs(market, signers, result)
        expected: type[Exception] | None = None
        seen: set[int] = set()
        for i in picks:
            if i >= 4:
                expected = UnknownSigner
                break
            if i in seen:
                expected = DuplicateSigner
                break
            seen.add(i)
        if expected is None and len(seen) < threshold:
            expected = TooFewSignatures
        if expected is None:
            market.finalize_committee(env.actors.stranger, 1, result, signatures, [])
            assert market.current_epoch() == 1
        else:
            with pytest.raises(expected):
                market.finalize_committee(env.actors.stranger, 1, result, signatures, [])
            assert market.current_epoch() == 0
    finally:
        env.dev.revert(snapshot)


# ---------------------------------------------------------------- reshare


@pytest.fixture
def delayed(env: ChainEnv) -> MarketClient:
    """A dealt 2-of-3 market (the conftest committee) whose reshares wait an hour."""
    return MarketClient.deploy_dealt(env.w3, env.actors.deployer, env.committee,
                                     env.actors.nodes, reshare_delay=HOUR).value


def test_reshare_needsApprovalsAndDelayBeforeMessages(env: ChainEnv, delayed: MarketClient) -> None:
    market = delayed
    old = env.actors.nodes
    newcomers = accounts(env, 2)
    new = [old[0], old[1], *newcomers]
    proposed = market.propose_committee(env.actors.deployer, roster(new, 3), phase_seconds=30,
                                        deadline=env.dev.now() + 3 * HOUR)
    ceremony = proposed.value
    assert ceremony == 2
    event = only_event(market, env, proposed, CommitteeProposed)
    info = market.ceremony(ceremony)
    assert (info.epoch, info.threshold, info.approvals, info.opened_at) == (2, 3, 0, 0)
    assert info.not_before == info.proposed_at + HOUR == event.not_before
    assert info.is_reshare and info.status is CeremonyStatus.PENDING
    with pytest.raises(CeremonyNotOpen):
        market.post_ceremony_message(newcomers[0], ceremony, 1, b"too early")
    with pytest.raises(NotCommitteeNode):
        market.approve_committee(newcomers[0], ceremony)  # not a node of the current epoch

    first = market.approve_committee(old[2], ceremony)
    assert [type(e) for e in events_of(market, env, first)] == [CommitteeApproved]
    approved = only_event(market, env, first, CommitteeApproved)
    assert (approved.ceremony_id, approved.node, approved.approvals) == (2, old[2].address, 1)
    with pytest.raises(AlreadyApproved):
        market.approve_committee(old[2], ceremony)
    second = market.approve_committee(old[0], ceremony)
    kinds = [type(e) for e in events_of(market, env, second)]
    assert kinds == [CommitteeApproved, CeremonyOpened]
    opened = events_of(market, env, second)[1]
    assert isinstance(opened, CeremonyOpened)
    assert opened.opened_at == info.not_before  # approved within the delay: opens at notBefore
    assert market.ceremony(ceremony).opened_at == info.not_before
    with pytest.raises(CeremonyNotOpen):
        market.post_ceremony_message(newcomers[0], ceremony, 1, b"before notBefore")

    env.dev.advance(HOUR)
    market.post_ceremony_message(newcomers[0], ceremony, 1, b"new node")
    market.post_ceremony_message(old[2], ceremony, 1, b"old dealer, leaving")
    with pytest.raises(NotCeremonyMember):
        market.post_ceremony_message(env.actors.stranger, ceremony, 1, b"x")


def _open_reshare(env: ChainEnv, market: MarketClient, new: Sequence[LocalAccount],
                  threshold: int, approvers: Sequence[LocalAccount]) -> int:
    ceremony = market.propose_committee(env.actors.deployer, roster(new, threshold),
                                        phase_seconds=30,
                                        deadline=env.dev.now() + 3 * HOUR).value
    for node in approvers:
        market.approve_committee(node, ceremony)
    return ceremony


def test_reshare_finalizeChecksKeyAndBothRosters(env: ChainEnv) -> None:
    market, old = env.market, env.actors.nodes
    newcomers = accounts(env, 2)
    new = [old[1], *newcomers]
    ceremony = _open_reshare(env, market, new, 2, old[:2])
    qualified = 0b101  # old dealers 1 and 3
    changed = result_for(ceremony, 2, 3, key=b"\x12" * 32, qualified=qualified)
    with pytest.raises(CommitteeKeyChanged) as e:
        market.finalize_committee(env.actors.stranger, ceremony, changed,
                                  sigs(market, new, changed), sigs(market, old, changed))
    assert e.value.fields == {"current": Y, "proposed": b"\x12" * 32}
    result = result_for(ceremony, 2, 3, qualified=qualified)
    with pytest.raises(TooFewSignatures) as e2:
        market.finalize_committee(env.actors.stranger, ceremony, result,
                                  sigs(market, new, result), [])
    assert e2.value.fields == {"needed": 2, "valid": 0}
    with pytest.raises(UnknownSigner) as e3:  # a newcomer is not an old node
        market.finalize_committee(env.actors.stranger, ceremony, result,
                                  sigs(market, new, result), sigs(market, newcomers, result))
    assert e3.value.fields == {"signer": newcomers[0].address}
    with pytest.raises(InvalidQualifiedSet):  # one old dealer < t_old = 2
        lone = result_for(ceremony, 2, 3, qualified=0b001)
        market.finalize_committee(env.actors.stranger, ceremony, lone,
                                  sigs(market, new, lone), sigs(market, old, lone))
    with pytest.raises(WrongCeremony):
        stale = result_for(1, 1, 3)  # epoch 1's ceremony is final and no longer the latest
        market.finalize_committee(env.actors.stranger, 1, stale, sigs(market, old, stale), [])

    final = market.finalize_committee(env.actors.stranger, ceremony, result,
                                      sigs(market, new[1:], result),
                                      sigs(market, [old[2], old[1]], result))
    finalized = only_event(market, env, final, CommitteeFinalized)
    assert (finalized.epoch, finalized.committee_key, finalized.qualified) == (2, Y, qualified)
    assert market.current_epoch() == 2
    current = market.committee()
    assert current.committee_key == Y
    assert current.nodes == tuple(n.address for n in new)
    assert current.share_keys == result.share_keys
    assert market.committee_at(1).committee == env.committee  # the past stays readable
    assert market.committee_at(2).committee == current
    assert market.committee_at(2).start_block == final.block_number
    with pytest.raises(UnknownEpoch):
        market.committee_at(3)
    with pytest.raises(UnknownEpoch):
        market.committee_at(0)
    logs = market.committee_finalized_logs(0)
    assert [(log.epoch, log.ceremony_id) for log in logs] == [(1, 1), (2, ceremony)]


def test_anchorReleases_byCurrentAndPreviousEpochOnly(env: ChainEnv) -> None:
    market, old = env.market, env.actors.nodes
    second = accounts(env, 2)
    ceremony = _open_reshare(env, market, second, 2, old[:2])
    result = result_for(ceremony, 2, 2, qualified=0b011)
    market.finalize_committee(env.actors.stranger, ceremony, result,
                              sigs(market, second, result), sigs(market, old[:2], result))
    assert market.anchor_releases(second[0], ROOT, 1).value == 1  # current epoch
    assert market.anchor_releases(old[2], ROOT, 1).value == 1  # previous epoch
    third = accounts(env, 2)
    ceremony = _open_reshare(env, market, third, 2, second)
    result = result_for(ceremony, 3, 2, qualified=0b011)
    market.finalize_committee(env.actors.stranger, ceremony, result,
                              sigs(market, third, result), sigs(market, second, result))
    assert market.current_epoch() == 3
    assert market.anchor_releases(second[1], ROOT, 1).value == 1  # now the previous epoch
    for caller in (old[0], env.actors.stranger):  # epoch 1 is too old; never a node
        with pytest.raises(NotCommitteeNode) as e:
            market.anchor_releases(caller, ROOT, 1)
        assert e.value.fields == {"caller": caller.address}


# ---------------------------------------------------------------- governor


def test_setGovernor_handsOverProposals(env: ChainEnv) -> None:
    market, deployer, stranger = env.market, env.actors.deployer, env.actors.stranger
    with pytest.raises(NotGovernor):
        market.set_governor(stranger, stranger.address)
    with pytest.raises(ZeroGovernor):
        market.set_governor(deployer, ZERO_ADDRESS)
    sent = market.set_governor(deployer, stranger.address)
    changed = only_event(market, env, sent, GovernorChanged)
    assert (changed.previous, changed.next) == (deployer.address, stranger.address)
    assert market.governor() == stranger.address
    deadline = env.dev.now() + HOUR
    with pytest.raises(NotGovernor):
        market.propose_committee(deployer, roster(env.actors.nodes, 2), phase_seconds=30,
                                 deadline=deadline)
    assert market.propose_committee(stranger, roster(env.actors.nodes, 2), phase_seconds=30,
                                    deadline=deadline).value == 2
