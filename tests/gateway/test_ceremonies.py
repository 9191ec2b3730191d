"""Committee ceremonies run by real gateway services on the embedded chain (DESIGN §9).

Every gateway of a `LocalNetwork` takes its turn in the ceremony on each `net.sync()`;
the chain's clock is the gateways' clock, so phase cutoffs and deadlines pass by
`net.dev.advance(...)` instead of sleeping. Misbehaving nodes are honest gateways whose
ceremony runner is patched (tests/gateway/ceremony_helpers.py).
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from marketplace.audit.auditor import Auditor
from marketplace.audit.ceremonies import CEREMONIES
from marketplace.audit.release_log import HttpReleaseLog
from marketplace.ceremony_chain import committee_status
from marketplace.chain.errors import CeremonyInProgress, NotCeremonyMember
from marketplace.chain.types import CeremonyStatus
from marketplace.eip712 import KeyRequest, sign
from marketplace.keyrelease import CommitteeKeys
from marketplace.keyrelease.dkg import Exclusion, MessageKind
from marketplace.keyrelease.group import Point
from marketplace.localnet import LocalNetwork
from tests.gateway.ceremony_helpers import (
    AnswerMode,
    accuse,
    buy,
    contains_any,
    fetch,
    file_gateway,
    final_view,
    interpolate_secret,
    new_listing,
    publish,
    roster,
    run_until,
    scalar_of,
    secret_encodings,
    settle,
    state_values,
    tamper_dealings,
)

PHASE = 30


def keys_at(net: LocalNetwork, epoch: int) -> CommitteeKeys:
    final = net.market.committee_at(epoch)
    return CommitteeKeys.from_bytes(
        final.threshold, final.committee_key, final.share_keys, epoch=epoch
    )


def messages(net: LocalNetwork, ceremony_id: int, kind: MessageKind) -> list[str]:
    """Senders (lower case) of the ceremony's messages of one kind, in chain order."""
    logs = net.market.ceremony_messages(ceremony_id, 0, net.market.w3.eth.block_number)
    return [m.sender.lower() for m in logs if m.kind == kind]


def address(net: LocalNetwork, number: int) -> str:
    return net.gateways[number].node.address.lower()


@pytest.fixture
def networks(tmp_path: Path) -> Iterator[list[LocalNetwork]]:
    """Networks a test starts (append them); closed afterwards."""
    started: list[LocalNetwork] = []
    yield started
    for net in started:
        net.close()


# ------------------------------------------------------------ 1. DKG


@pytest.mark.parametrize(("threshold", "size"), [(2, 3), (3, 5)])
def test_dkg_keys_open_capsules_and_no_node_stores_the_secret(
    threshold: int, size: int, tmp_path: Path, networks: list[LocalNetwork],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    net = LocalNetwork.start(tmp_path, size=size, threshold=threshold, dkg=True,
                             phase_seconds=PHASE)
    networks.append(net)
    market = net.market
    assert market.current_epoch() == 1
    assert market.ceremony(1).status is CeremonyStatus.FINALIZED
    final = market.committee_at(1)
    assert final.qualified == (1 << size) - 1  # every dealer honest and qualified
    keys = keys_at(net, 1)
    keys.check_consistent()
    assert keys.threshold == threshold and keys.size == size

    # end to end: a buyer recovers a published version's key through the gateways
    owner = net.account()
    listing = new_listing(net, owner)
    published = publish(net, owner, listing)
    fetched = fetch(net, published, listing)
    assert fetched.data_key == published.data_key
    assert fetched.epoch == 1

    # the shares the gateways hold: every t of them give s with s·G == Y; t-1 do not
    shares = []
    for number in range(1, size + 1):
        held = net.gateways[number].share_book.get(1)
        assert held is not None and held.epoch == 1
        assert held.share.share_key.point == keys.share_key(int(held.index)).point
        shares.append(held.share)
    secret = interpolate_secret(shares[:threshold])
    assert Point.base_mul(secret) == keys.committee_key
    for subset in itertools.combinations(shares, threshold):
        assert interpolate_secret(subset) == secret
    for subset in itertools.combinations(shares, threshold - 1):
        assert Point.base_mul(interpolate_secret(subset)) != keys.committee_key

    # nobody wrote s down: not in any row of any gateway's state, not in any log line
    needles = secret_encodings(secret)
    for number, gateway in net.gateways.items():
        values = state_values(gateway)
        assert values, f"gateway {number}'s state is empty?"
        assert not any(contains_any(v, needles) for v in values), f"s in gateway {number}"
        # the shares themselves rest sealed: no row holds a node's own s_i either
        own = secret_encodings(scalar_of(shares[number - 1]))
        public = shares[number - 1].share_key.point.to_bytes().hex().encode()
        assert any(contains_any(v, [public]) for v in values), "the scan sees Y_i's hex"
        assert not any(contains_any(v, own) for v in values), f"s_{number} in the clear"
    assert caplog.records, "the gateways log their ceremony steps"
    assert not any(contains_any(r.getMessage(), needles) for r in caplog.records)


# ------------------------------------------------------------ 2. silent nodes


def test_silent_nodes_do_not_stop_the_ceremony_and_recover_their_shares(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    """3-of-5 with nodes 4 and 5 down from the start: the others deal, the phases close by
    time, 1..3 qualify; back up, 4 and 5 open their shares from the logs."""
    net = LocalNetwork.start(tmp_path, size=5, threshold=3, dkg=True, phase_seconds=PHASE,
                             wait=False)
    networks.append(net)
    market = net.market
    net.down = {4, 5}
    net.sync()
    net.sync()
    assert messages(net, 1, MessageKind.DEALING) == [address(net, i) for i in (1, 2, 3)]
    assert messages(net, 1, MessageKind.VERDICT) == []  # DEAL waits for its cutoff
    status = committee_status(market)["ceremony"]
    assert status["phase"] == "deal" and status["status"] == "pending"
    assert [a.lower() for a in status["waitingFor"]] == [address(net, 4), address(net, 5)]

    skipped = settle(net, 1, phase_seconds=PHASE)
    assert skipped == 2  # DEAL and VERDICT closed by time; ANSWER at once (no complaint)
    final = market.committee_at(1)
    assert final.qualified == 0b00111
    keys = keys_at(net, 1)
    keys.check_consistent()
    assert net.gateways[4].share_book.get(1) is None

    net.down.clear()
    net.sync()
    recovered = []
    for number in (4, 5):
        held = net.gateways[number].share_book.get(1)
        assert held is not None, f"node {number} did not recover its share"
        assert held.share.share_key.point == keys.share_key(number).point
        assert held.share.secret.public_point() == keys.share_key(number).point
        recovered.append(held.share)
    third = net.gateways[1].share_book.get(1)
    assert third is not None
    secret = interpolate_secret([third.share, *recovered])
    assert Point.base_mul(secret) == keys.committee_key

    # the late nodes serve: a fetch from nodes 3, 4 and 5 alone opens a capsule
    owner = net.account()
    listing = new_listing(net, owner)
    published = publish(net, owner, listing)
    net.down = {1, 2}
    assert fetch(net, published, listing).data_key == published.data_key


# ------------------------------------------------------------ 3 and 4. complaints


@pytest.mark.parametrize("mode", ["silent", "wrong", "honest"])
def test_a_dealer_sealing_a_broken_share_is_excluded_unless_it_answers(
    mode: AnswerMode, tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    """Dealer 3 (2-of-3) seals node 1 a share that does not open. Node 1 complains; a
    dealer that does not answer, or reveals a value off its commitments, leaves QUAL and
    the others complete; one that reveals the right value stays, and node 1 uses it."""
    net = LocalNetwork.start(tmp_path, size=3, threshold=2, dkg=True, phase_seconds=PHASE,
                             wait=False)
    networks.append(net)
    tamper_dealings(net.gateways[3].ceremonies, victim=1, mode=mode)
    settle(net, 1, phase_seconds=PHASE)

    view = final_view(net, 1)
    assert dict(view.complaints) == {3: (1,)}
    answers = messages(net, 1, MessageKind.ANSWER)
    final = net.market.committee_at(1)
    if mode == "silent":
        assert answers == []
        assert view.excluded[3] is Exclusion.UNANSWERED_COMPLAINT
    elif mode == "wrong":
        assert answers == [address(net, 3)]
        assert view.excluded[3] is Exclusion.INVALID_ANSWER
    else:
        assert answers == [address(net, 3)]
        assert 3 not in view.excluded and set(view.revealed[3]) == {1}
    expected = 0b111 if mode == "honest" else 0b011
    assert final.qualified == expected and view.qualified == tuple(
        j for j in (1, 2, 3) if expected >> (j - 1) & 1
    )
    keys = keys_at(net, 1)
    keys.check_consistent()
    for number in (1, 2, 3):  # the cheat is still a recipient: it holds a share too
        held = net.gateways[number].share_book.get(1)
        assert held is not None and held.share.share_key.point == keys.share_key(number).point

    owner = net.account()
    listing = new_listing(net, owner)
    published = publish(net, owner, listing)
    assert fetch(net, published, listing).data_key == published.data_key


def test_a_false_complaint_cannot_exclude_an_honest_dealer(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    """Node 2 accuses honest dealer 1: dealer 1 answers with node 2's share, the answer
    checks out, dealer 1 stays in QUAL."""
    net = LocalNetwork.start(tmp_path, size=3, threshold=2, dkg=True, phase_seconds=PHASE,
                             wait=False)
    networks.append(net)
    accuse(net.gateways[2].ceremonies, [1])
    skipped = settle(net, 1, phase_seconds=PHASE)
    assert skipped == 0  # every phase closed early: nobody had to wait for a cutoff

    view = final_view(net, 1)
    assert dict(view.complaints) == {1: (2,)}
    assert messages(net, 1, MessageKind.ANSWER) == [address(net, 1)]
    assert set(view.revealed[1]) == {2} and not view.excluded
    assert net.market.committee_at(1).qualified == 0b111
    keys_at(net, 1).check_consistent()
    held = net.gateways[2].share_book.get(1)
    assert held is not None and held.share.share_key.point == keys_at(net, 1).share_key(2).point


# ------------------------------------------------------------ 5. deadline


def test_a_ceremony_past_its_deadline_fails_and_a_new_proposal_completes(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    net = LocalNetwork.start(tmp_path, size=3, threshold=2, dkg=True, phase_seconds=PHASE,
                             wait=False)
    networks.append(net)
    market, governor = net.market, net.deployer
    assert governor is not None and market.governor() == governor.address
    nodes = list(net.node_accounts)

    # a stranger cannot post into the ceremony
    with pytest.raises(NotCeremonyMember):
        market.post_ceremony_message(net.account(), 1, int(MessageKind.DEALING), b"\x01")

    # only node 1 is up: one dealing of the two needed
    net.down = {2, 3}
    net.sync()
    net.dev.advance(PHASE + 1)
    net.sync()
    status = committee_status(market)
    assert status["epoch"] == 0 and status["committee"] is None
    assert status["ceremony"]["status"] == "pending"
    # one dealing of the two needed: the DEAL phase waits for the late nodes
    assert status["ceremony"]["phase"] == "deal" and status["ceremony"]["failure"] is None
    assert status["ceremony"]["waitingFor"] == [nodes[1].address, nodes[2].address]
    assert net.gateways[1].share_book.seed(1) is not None
    with pytest.raises(CeremonyInProgress):
        market.propose_committee(governor, roster(nodes, 2), phase_seconds=PHASE,
                                 deadline=net.dev.now() + 3_600)

    info = market.ceremony(1)
    net.dev.advance(info.deadline - net.dev.now() + 1)
    assert market.ceremony(1).status is CeremonyStatus.FAILED
    status = committee_status(market)
    assert status["ceremony"]["status"] == "failed" and status["ceremony"]["id"] == 1
    net.down.clear()
    net.sync()  # every node sees the failure; the dealer forgets its polynomial
    assert net.gateways[1].share_book.seed(1) is None
    assert market.current_epoch() == 0 and messages(net, 1, MessageKind.VERDICT) == []

    ceremony_id = market.propose_committee(
        governor, roster(nodes, 2), phase_seconds=PHASE, deadline=net.dev.now() + 3_600
    ).value
    assert ceremony_id == 2 and market.ceremony(2).epoch == 1
    net.await_epoch(1)
    final = market.committee_at(1)
    assert final.ceremony_id == 2 and final.qualified == 0b111
    assert committee_status(market)["ceremony"]["status"] == "finalized"
    keys_at(net, 1).check_consistent()
    owner = net.account()
    listing = new_listing(net, owner)
    published = publish(net, owner, listing)
    assert fetch(net, published, listing).data_key == published.data_key


# ------------------------------------------------------------ 6. reshare


def key_request(net: LocalNetwork, buyer: LocalAccount, debit_id: int, version: int) -> Any:
    request = KeyRequest(debit_id, version, int(net.clock()) + 60, os.urandom(32))
    return {"request": request.to_message(),
            "signature": "0x" + sign(buyer, net.domain, request).hex()}


def test_reshare_keeps_y_and_old_capsules_open_from_new_shares_alone(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    """2-of-3 (A1, A2, A3) → 3-of-5 (A2, A3, B4, B5, B6) with A3 down: A1 and A2 deal
    their old shares; A3 recovers its new share later. A1 leaves the committee."""
    net = LocalNetwork.start(tmp_path, size=3, threshold=2, dkg=True, phase_seconds=PHASE)
    networks.append(net)
    market, governor = net.market, net.deployer
    assert governor is not None
    owner = net.account()
    listing = new_listing(net, owner)
    published = publish(net, owner, listing)  # sealed to epoch 1's Y
    assert fetch(net, published, listing).epoch == 1
    old_shares = {}
    for number in (1, 2, 3):
        held = net.gateways[number].share_book.get(1)
        assert held is not None
        old_shares[number] = held.share

    for _ in range(3):
        net.add_gateway(net.account())
    new_nodes = [net.node_accounts[i - 1] for i in (2, 3, 4, 5, 6)]
    net.down = {3}
    ceremony_id = market.propose_committee(
        governor, roster(new_nodes, 3), phase_seconds=PHASE, deadline=net.dev.now() + 3_600
    ).value
    assert ceremony_id == 2
    settle(net, 2, phase_seconds=PHASE)

    one, two = market.committee_at(1), market.committee_at(2)
    assert two.committee_key == one.committee_key  # Y byte-identical on chain
    assert two.threshold == 3 and [a.lower() for a in two.nodes] == [
        address(net, i) for i in (2, 3, 4, 5, 6)
    ]
    assert two.qualified == 0b011  # old dealers A1 and A2; A3 was down
    keys = keys_at(net, 2)
    keys.check_consistent()
    net.sync()  # every live node has ticked once since the finalization
    assert net.gateways[1].share_book.epochs() == []  # A1 left: epoch 1 erased
    assert net.gateways[2].share_book.epochs() == [2]
    assert net.gateways[3].share_book.epochs() == [1]  # down: it has not heard yet

    net.down.clear()
    net.sync()
    for number in (2, 3, 4, 5, 6):
        assert net.gateways[number].share_book.epochs() == [2], f"node {number}"
    new_shares = {}
    for number, index in zip((2, 3, 4, 5, 6), range(1, 6), strict=True):
        held = net.gateways[number].share_book.get(2)
        assert held is not None and int(held.index) == index
        assert held.share.share_key.point == keys.share_key(index).point
        new_shares[number] = held.share
    secret = interpolate_secret([new_shares[n] for n in (3, 4, 6)])
    assert Point.base_mul(secret) == keys.committee_key
    # shares of different epochs do not interpolate to s
    mixed = interpolate_secret([old_shares[1], new_shares[3], new_shares[4]])
    assert Point.base_mul(mixed) != keys.committee_key

    # the epoch-1 capsule opens from epoch-2 shares alone; the receipts name epoch 2
    fetched = fetch(net, published, listing)
    assert fetched.data_key == published.data_key and fetched.epoch == 2
    assert len(fetched.receipts) >= 3
    assert all(r["receipt"]["epoch"] == 2 for r in fetched.receipts.values()), fetched.receipts

    # the node that left answers not_in_committee
    buyer, _, debit_id = buy(net, listing)
    response = net.clients[1].post("/v1/keys", json=key_request(
        net, buyer, debit_id, published.ctx.version))
    assert (response.status_code, response.json()["code"]) == (503, "not_in_committee")

    # the auditor replays both ceremonies and every release of both epochs
    net.sync()
    sources = {g.node.address: HttpReleaseLog(n, net.clients[n])
               for n, g in net.gateways.items()}
    report = Auditor(market, net.store, sources).run()
    assert report.clean, report.violations
    assert [w.kind for w in report.warnings] == []
    ceremonies = report.check(CEREMONIES)
    assert ceremonies.checked >= 2 and ceremonies.failed == 0


# ------------------------------------------------------------ 7. restart


def test_a_dealer_restarted_between_deal_and_answer_still_answers(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    """Dealer 1 runs on a SQLite file; node 2 accuses it. Its gateway is rebuilt on the
    same file after DEAL and VERDICT: the new process answers from the seed it stored
    (sealed), so its answer matches its commitments and it stays in QUAL. (A dealer that
    drew a new polynomial after the restart would reveal a value off its commitments and
    be excluded: INVALID_ANSWER.)"""
    net = LocalNetwork.start(tmp_path / "store", size=3, threshold=2, dkg=True,
                             phase_seconds=PHASE, wait=False)
    networks.append(net)
    path = tmp_path / "node1.sqlite"
    file_gateway(net, 1, path)  # before its first tick: all its state is in the file
    accuse(net.gateways[2].ceremonies, [1])
    net.sync()
    net.sync()
    status = committee_status(net.market)["ceremony"]
    assert status["phase"] == "answer", status
    assert [a.lower() for a in status["waitingFor"]] == [address(net, 1)]
    assert messages(net, 1, MessageKind.ANSWER) == []
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT ceremony_id, sealed_seed FROM ceremony_seeds").fetchall()
    assert [r[0] for r in rows] == [1]

    restarted = file_gateway(net, 1, path)
    assert restarted.share_book.seed(1) is not None
    settle(net, 1, phase_seconds=PHASE)

    view = final_view(net, 1)
    assert dict(view.complaints) == {1: (2,)}
    assert messages(net, 1, MessageKind.ANSWER) == [address(net, 1)]
    assert not view.excluded and set(view.revealed[1]) == {2}
    assert net.market.committee_at(1).qualified == 0b111
    keys = keys_at(net, 1)
    held = restarted.share_book.get(1)
    assert held is not None and held.share.share_key.point == keys.share_key(1).point
    assert restarted.share_book.seed(1) is None  # erased once the epoch is final


# ------------------------------------------------------------ finalization fallback


def test_when_the_first_signer_goes_down_another_finalizes_a_phase_later(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    """Node 1 signs the result first, then goes down before submitting it. The others
    submit it one phase later by the gateways' clock (the chain's on LocalNetwork).
    Failed before the fix: the fallback waited a phase of `time.monotonic()`, ignoring
    the runner's clock, so moving the chain's clock past the phase did not help."""
    net = LocalNetwork.start(tmp_path, size=3, threshold=2, dkg=True, phase_seconds=PHASE,
                             wait=False)
    networks.append(net)
    run_until(net, lambda: address(net, 1) in messages(net, 1, MessageKind.RESULT))
    net.down = {1}
    net.sync()
    assert len(messages(net, 1, MessageKind.RESULT)) == 3  # all signed, nobody submitted
    net.sync()
    assert net.market.current_epoch() == 0  # the others give the first signer its turn
    net.dev.advance(PHASE + 1)
    net.sync()
    assert net.market.current_epoch() == 1
    assert net.market.committee_at(1).qualified == 0b111


# ------------------------------------------------------------ catching up


def test_a_node_back_after_a_new_proposal_still_adopts_the_epoch_it_missed(
    tmp_path: Path, networks: list[LocalNetwork]
) -> None:
    """Node 3 is down through the DKG of epoch 1 and still down when the governor proposes
    a reshare. Back up, it must first take its epoch-1 share from the DKG's transcript,
    then deal its part of the reshare. Failed before the fix: the runner only looked at
    the latest ceremony, so node 3 never adopted epoch 1 (no share: `not_in_committee`),
    could not deal in the reshare ("no share of epoch 1") and was left out of QUAL."""
    net = LocalNetwork.start(tmp_path, size=3, threshold=2, dkg=True, phase_seconds=PHASE,
                             wait=False)
    networks.append(net)
    governor = net.deployer
    assert governor is not None
    net.down = {3}
    settle(net, 1, phase_seconds=PHASE)
    assert net.market.committee_at(1).qualified == 0b011
    net.market.propose_committee(governor, roster(net.node_accounts, 2),
                                 phase_seconds=PHASE, deadline=net.dev.now() + 3_600)
    net.down.clear()
    net.sync()  # nodes 1 and 2 approve (the reshare opens); node 3 catches up and deals
    held = net.gateways[3].share_book.get(1)
    assert held is not None and held.share.share_key.point == keys_at(net, 1).share_key(3).point
    assert address(net, 3) in messages(net, 2, MessageKind.DEALING)
    assert settle(net, 2, phase_seconds=PHASE) == 0
    assert net.market.committee_at(2).qualified == 0b111
    for number in (1, 2, 3):
        assert net.gateways[number].share_book.epochs() == [2]
