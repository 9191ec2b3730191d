"""The phase rules: what counts, when each phase closes, what a node must do, the transcript.

Messages are placed by hand into blocks with chosen timestamps (T0 = 1000, P = 30).
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.keyrelease.ceremony import (
    CeremonyMessage,
    CeremonySchedule,
    Failure,
    NodeActions,
    Phase,
    PhaseClose,
    evaluate,
    my_verdict,
)
from marketplace.keyrelease.dkg import (
    Answer,
    CeremonyParams,
    DealerSecret,
    Exclusion,
    MessageKind,
    Verdict,
    encode_result,
    transcript_hash,
)
from marketplace.keyrelease.group import Scalar
from tests.unit.keyrelease.ceremony_support import (
    DEADLINE,
    T0,
    Ceremony,
    Chain,
    Node,
    P,
    address,
    dkg,
    fake_signature,
    new_params,
)

DEAL, VERDICT, ANSWER, RESULT = (
    MessageKind.DEALING,
    MessageKind.VERDICT,
    MessageKind.ANSWER,
    MessageKind.RESULT,
)
EMPTY_VERDICT = Verdict(()).to_bytes()


def setup(n: int = 3, t: int = 2) -> tuple[Chain, list[Node], list[DealerSecret]]:
    nodes = [Node(address(i)) for i in range(1, n + 1)]
    params = new_params(n, t, nodes)
    secrets_ = [DealerSecret.generate(i, t) for i in range(1, n + 1)]
    return Chain(params), nodes, secrets_


def deal(chain: Chain, nodes: list[Node], dealers: list[DealerSecret], which: list[int]) -> None:
    for i in which:
        chain.post(nodes[i - 1].address, DEAL, dealers[i - 1].dealing(chain.params))


# --- DEAL ----------------------------------------------------------------------------------


def test_deal_closes_early_at_the_block_of_the_last_expected_dealing() -> None:
    chain, nodes, dealers = setup()
    chain.clock = T0 + 3
    deal(chain, nodes, dealers, [1, 2])
    view = chain.view()
    assert view.phase is Phase.DEAL and view.missing == (nodes[2].address,)
    assert view.actions_for(nodes[2].address) == NodeActions(deal=True)
    assert view.actions_for(nodes[0].address) == NodeActions()
    deal(chain, nodes, dealers, [3])
    view = chain.view()
    assert view.phase is Phase.VERDICT
    assert view.deal_close == PhaseClose(T0 + 3, chain.block, True)
    assert view.cutoff == T0 + 3 + P
    assert view.missing == tuple(n.address for n in nodes)
    assert all(view.actions_for(n.address) == NodeActions(verdict=True) for n in nodes)


def test_deal_closes_by_time_with_a_silent_dealer() -> None:
    chain, nodes, dealers = setup()
    deal(chain, nodes, dealers, [1, 3])
    assert chain.view(now=T0 + P - 1).phase is Phase.DEAL
    view = chain.view(now=T0 + P)
    assert view.phase is Phase.VERDICT
    assert view.deal_close == PhaseClose(T0 + P, None, False)
    assert view.excluded == {2: Exclusion.NO_DEALING}
    # A dealing stamped at the cutoff is too late, even though the phase looked open.
    chain.clock = T0 + P
    deal(chain, nodes, dealers, [2])
    view = chain.view()
    assert 2 not in view.dealings and view.excluded == {2: Exclusion.NO_DEALING}
    assert view.ignored[-1].reason == "posted after its phase closed"
    assert view.actions_for(nodes[1].address).deal is False


def test_deal_waits_for_a_quorum_of_dealings_from_gateways_started_late() -> None:
    """Gateways started long after the ceremony opened (operators deploy first, then start
    nodes) still deal: with fewer than t usable dealings the phase does not close by time
    (before this rule it closed at T0 + P and the ceremony sat failed until its deadline:
    reproduced with real gateway processes); the t-th dealing, late, restarts the clock."""
    chain, nodes, dealers = setup(5, 3)
    chain.clock = T0 + 1
    deal(chain, nodes, dealers, [2])
    late = chain.view(now=T0 + 5 * P)
    assert late.phase is Phase.DEAL and late.failure is None
    assert late.cutoff == DEADLINE and late.actions_for(nodes[0].address).deal
    chain.clock = T0 + 5 * P
    deal(chain, nodes, dealers, [4, 1])  # the quorum (3) is reached at T0 + 5P
    view = chain.view(now=T0 + 6 * P - 1)
    assert view.phase is Phase.DEAL and view.cutoff == T0 + 6 * P
    assert sorted(view.dealings) == [1, 2, 4]
    view = chain.view(now=T0 + 6 * P)
    assert view.phase is Phase.VERDICT
    assert view.excluded == {3: Exclusion.NO_DEALING, 5: Exclusion.NO_DEALING}
    never = chain.view(now=DEADLINE)
    assert never.failure is Failure.DEADLINE_PASSED  # (the verdicts never came)
    alone, others, secrets_ = setup(5, 3)
    alone.clock = T0 + 1
    deal(alone, others, secrets_, [1, 2])
    assert alone.view(now=DEADLINE).failure is Failure.TOO_FEW_DEALINGS


def test_not_open_until_opened_at() -> None:
    chain, nodes, _ = setup()
    chain.schedule = CeremonySchedule(0, P, DEADLINE)
    assert chain.view().phase is Phase.NOT_OPEN
    chain.schedule = CeremonySchedule(T0, P, DEADLINE)
    assert chain.view(now=T0 - 1).phase is Phase.NOT_OPEN
    view = chain.view(now=T0)
    assert view.phase is Phase.DEAL and view.actions_for(nodes[0].address).deal


# --- VERDICT -------------------------------------------------------------------------------


def test_a_verdict_before_the_deal_closed_does_not_count_but_its_repost_does() -> None:
    chain, nodes, dealers = setup()
    chain.clock = T0 + 1
    deal(chain, nodes, dealers, [1, 2])
    chain.post(nodes[0].address, VERDICT, EMPTY_VERDICT)  # too early: dealer 3 may still deal
    chain.clock = T0 + P
    view = chain.view()
    assert view.phase is Phase.VERDICT and 1 not in view.verdicts
    assert view.ignored[-1].reason == "posted before its phase opened"
    assert view.actions_for(nodes[0].address).verdict is True
    chain.post(nodes[0].address, VERDICT, my_verdict(view, 1, nodes[0].x25519))
    view = chain.view()
    assert view.verdicts == {1: Verdict(())}
    assert view.missing == (nodes[1].address, nodes[2].address)


def test_after_an_early_close_a_verdict_counts_from_the_next_block_even_in_the_same_second() -> (
    None
):
    chain, nodes, dealers = setup()
    chain.clock = T0 + 2
    deal(chain, nodes, dealers, [1, 2, 3])
    chain.post(nodes[0].address, VERDICT, EMPTY_VERDICT, same_block=True)
    chain.post(nodes[1].address, VERDICT, EMPTY_VERDICT)  # next block, same timestamp
    view = chain.view()
    assert set(view.verdicts) == {2}
    assert view.ignored[0].message.sender == nodes[0].address


def test_verdict_closes_early_when_everyone_posted_then_answer_at_once() -> None:
    chain, nodes, dealers = setup()
    chain.clock = T0 + 1
    deal(chain, nodes, dealers, [1, 2, 3])
    chain.clock = T0 + 2
    for node in nodes:
        chain.post(node.address, VERDICT, EMPTY_VERDICT)
    view = chain.view()
    assert view.phase is Phase.RESULT
    assert view.verdict_close == PhaseClose(T0 + 2, chain.block, True)
    assert view.answer_close == view.verdict_close  # nobody accused: closes at once
    assert view.complaints == {} and view.result is not None
    assert view.missing == tuple(n.address for n in nodes)  # nobody signed yet
    assert all(view.actions_for(n.address) == NodeActions(result=True) for n in nodes)


def test_verdict_closes_by_time_with_a_silent_node() -> None:
    chain, nodes, dealers = setup()
    chain.clock = T0 + 1
    deal(chain, nodes, dealers, [1, 2, 3])
    for node in nodes[:2]:
        chain.post(node.address, VERDICT, EMPTY_VERDICT)
    cutoff = T0 + 1 + P
    assert chain.view(now=cutoff - 1).phase is Phase.VERDICT
    assert chain.view(now=cutoff - 1).missing == (nodes[2].address,)
    view = chain.view(now=cutoff)
    assert view.phase is Phase.RESULT and view.verdict_close == PhaseClose(cutoff, None, False)
    assert view.qualified == (1, 2, 3)


def test_a_malformed_verdict_is_ignored_and_a_well_formed_repost_counts() -> None:
    chain, nodes, dealers = setup()
    chain.clock = T0 + 1
    deal(chain, nodes, dealers, [1, 2, 3])
    chain.post(nodes[0].address, VERDICT, b"\x01\x02\x02\x01")
    view = chain.view()
    assert view.verdicts == {} and view.ignored[-1].reason == "accused not strictly increasing"
    chain.post(nodes[0].address, VERDICT, Verdict((2,)).to_bytes())
    assert chain.view().verdicts == {1: Verdict((2,))}


# --- duplicates and strangers ------------------------------------------------------------------


def test_the_first_counted_message_of_a_sender_and_kind_wins() -> None:
    chain, nodes, dealers = setup()
    chain.clock = T0 + 1
    first = dealers[0].dealing(chain.params)
    chain.post(nodes[0].address, DEAL, first)
    chain.post(nodes[0].address, DEAL, DealerSecret.generate(1, 2).dealing(chain.params))
    deal(chain, nodes, dealers, [2, 3])
    chain.post(nodes[1].address, VERDICT, Verdict((3,)).to_bytes())
    chain.post(nodes[1].address, VERDICT, EMPTY_VERDICT)
    view = chain.view()
    assert view.dealings[1].commitments == dealers[0].commitments()
    assert view.verdicts[2] == Verdict((3,))
    reasons = [i.reason for i in view.ignored]
    assert reasons == ["an earlier message of this sender and kind counts"] * 2
    counted = {(c.kind, c.sender_index): c.message.payload for c in view.counted}
    assert counted[(DEAL, 1)] == first


def test_messages_from_outside_the_roster_are_ignored() -> None:
    chain, nodes, dealers = setup()
    stranger = address(77)
    chain.clock = T0 + 1
    chain.post(stranger, DEAL, dealers[0].dealing(chain.params))
    chain.post(nodes[0].address.upper().replace("0X", "0x"), 9, b"\x01")  # unknown kind
    deal(chain, nodes, dealers, [1, 2])
    chain.post(stranger, VERDICT, EMPTY_VERDICT)
    view = chain.view()
    assert view.phase is Phase.DEAL  # the stranger's dealing did not complete the phase
    assert [i.reason for i in view.ignored] == [
        "sender is not in either roster",
        "unknown kind 9",
        "sender is not in either roster",
    ]
    assert all(c.message.sender != stranger for c in view.counted)


def test_addresses_match_case_insensitively() -> None:
    chain, nodes, dealers = setup()
    chain.clock = T0 + 1
    for i, node in enumerate(nodes, start=1):
        chain.post(
            node.address.upper().replace("0X", "0x"), DEAL, dealers[i - 1].dealing(chain.params)
        )
    view = chain.view()
    assert view.phase is Phase.VERDICT and set(view.dealings) == {1, 2, 3}
    assert view.new_index(nodes[1].address.upper()) == 2


# --- ANSWER ---------------------------------------------------------------------------------


def accused_setup() -> tuple[Chain, list[Node], list[DealerSecret]]:
    """5 nodes; node 2 accuses dealers 1 and 3, node 4 accuses dealer 3; the deal of 5 is
    missing (so complaints against 5 are dropped)."""
    chain, nodes, dealers = setup(5, 3)
    chain.clock = T0 + 1
    deal(chain, nodes, dealers, [1, 2, 3, 4])
    chain.clock = T0 + P
    verdicts = {1: (), 2: (1, 3, 5), 3: (), 4: (3,), 5: ()}
    for i, accused in verdicts.items():
        chain.post(nodes[i - 1].address, VERDICT, Verdict(accused).to_bytes())
    return chain, nodes, dealers


def test_answer_phase_waits_for_the_accused_and_lists_them_as_missing() -> None:
    chain, nodes, dealers = accused_setup()
    view = chain.view()
    assert view.phase is Phase.ANSWER
    assert view.complaints == {1: (2,), 3: (2, 4)}
    assert view.missing == (nodes[0].address, nodes[2].address)
    assert view.actions_for(nodes[0].address) == NodeActions(answer_to=(2,))
    assert view.actions_for(nodes[2].address) == NodeActions(answer_to=(2, 4))
    assert view.actions_for(nodes[1].address) == NodeActions()
    assert view.qualified is None and view.result is None
    chain.post(nodes[1].address, ANSWER, dealers[1].answer([1]))  # not accused: ignored
    chain.post(nodes[0].address, ANSWER, dealers[0].answer([2]))
    view = chain.view()
    assert set(view.answers) == {1} and view.missing == (nodes[2].address,)
    assert view.ignored[-1].reason == "sender has no role in phase ANSWER"
    chain.post(nodes[2].address, ANSWER, dealers[2].answer([2, 4]))
    view = chain.view()
    assert view.phase is Phase.RESULT and view.answer_close is not None
    assert view.answer_close.early and view.qualified == (1, 2, 3, 4)
    assert view.excluded == {5: Exclusion.NO_DEALING}


def test_an_answer_that_misses_an_accuser_or_comes_late_disqualifies() -> None:
    chain, nodes, dealers = accused_setup()
    chain.post(nodes[2].address, ANSWER, dealers[2].answer([2]))  # forgot node 4
    cutoff = T0 + P + P
    chain.clock = cutoff
    chain.post(nodes[0].address, ANSWER, dealers[0].answer([2]))  # too late
    view = chain.view()
    assert view.phase is Phase.RESULT
    assert view.excluded == {
        1: Exclusion.UNANSWERED_COMPLAINT,
        3: Exclusion.UNANSWERED_COMPLAINT,
        5: Exclusion.NO_DEALING,
    }
    assert view.qualified == (2, 4)
    assert view.failure is Failure.TOO_FEW_QUALIFIED and view.result is None
    assert view.actions_for(nodes[1].address) == NodeActions()


def test_a_wrong_revealed_value_disqualifies() -> None:
    chain, nodes, dealers = accused_setup()
    chain.post(nodes[0].address, ANSWER, dealers[0].answer([2]))
    good = Answer.from_bytes(dealers[2].answer([2, 4]), chain.params)
    bad = Answer({2: good.revealed[2], 4: good.revealed[4] + Scalar.from_int(1)})
    chain.post(nodes[2].address, ANSWER, bad.to_bytes())
    view = chain.view()
    assert view.excluded[3] is Exclusion.INVALID_ANSWER
    assert view.qualified == (1, 2, 4) and view.result is not None


# --- RESULT, failure, missing --------------------------------------------------------------------


def test_result_signatures_count_only_when_they_recover_to_their_sender() -> None:
    ceremony = dkg(3, 2)
    for node in ceremony.new_nodes:
        node.silent_result = True
    view = ceremony.run()
    assert view.result is not None and view.result_signatures == ()
    chain = ceremony.chain
    a, b = ceremony.new_nodes[0].address, ceremony.new_nodes[1].address
    chain.post(a, RESULT, encode_result(fake_signature(view.result, b)))  # b's signature
    chain.post(b, RESULT, b"\x01" + bytes(10))  # malformed
    view = chain.view()
    assert view.result_signatures == ()
    assert view.missing == tuple(n.address for n in ceremony.new_nodes)
    assert view.actions_for(a).result is True
    chain.post(a, RESULT, encode_result(fake_signature(view.result, a)))
    view = chain.view()
    assert [s.sender for s in view.result_signatures] == [a]
    assert view.result_signatures[0].new_index == 1 and view.result_signatures[0].old_index is None
    assert view.actions_for(a).result is False and view.missing == (
        b,
        ceremony.new_nodes[2].address,
    )
    assert len(view.new_signatures) == 1 and view.old_signatures == ()


def test_a_ceremony_past_its_deadline_has_failed() -> None:
    chain, nodes, dealers = setup()
    chain.clock = T0 + 1
    deal(chain, nodes, dealers, [1, 2, 3])
    view = chain.view(now=DEADLINE)
    assert view.failure is Failure.DEADLINE_PASSED
    assert view.actions_for(nodes[0].address) == NodeActions()


# --- transcript ---------------------------------------------------------------------------------


def finished() -> Ceremony:
    ceremony = dkg(4, 3)
    ceremony.new_nodes[1].verdict = lambda _n, view, _i: Verdict((3,)).to_bytes()
    ceremony.run()
    return ceremony


def test_the_transcript_hash_is_deterministic_and_ignores_uncounted_messages() -> None:
    ceremony = finished()
    chain = ceremony.chain
    view = chain.view()
    assert view.result is not None
    kinds = {c.kind for c in view.counted}
    assert kinds == {DEAL, VERDICT, ANSWER}  # results are not part of the transcript
    assert [(c.kind, c.sender_index) for c in view.counted] == sorted(
        (c.kind, c.sender_index) for c in view.counted
    )
    shuffled = list(chain.messages)
    random.Random(1).shuffle(shuffled)
    again = evaluate(chain.params, chain.schedule, shuffled, chain.clock)
    assert again.result is not None
    assert again.result.transcript_hash == view.result.transcript_hash
    # A duplicate, a stranger's message and a late message change nothing.
    chain.post(ceremony.new_nodes[0].address, VERDICT, Verdict((2,)).to_bytes())
    chain.post(address(50), DEAL, b"junk")
    later = chain.view()
    assert later.result == view.result


def test_the_transcript_hash_changes_when_any_counted_message_changes() -> None:
    view = finished().chain.view()
    assert view.result is not None
    entries = [(c.kind, c.sender_index, c.message.payload) for c in view.counted]
    base = transcript_hash(view.params.ceremony_id, entries)
    assert base == view.result.transcript_hash
    assert transcript_hash(view.params.ceremony_id + 1, entries) != base
    for position, (kind, sender, payload) in enumerate(entries):
        changed = list(entries)
        changed[position] = (kind, sender, payload + b"\x00")
        assert transcript_hash(view.params.ceremony_id, changed) != base
        moved = list(entries)
        moved[position] = (kind, (sender % 4) + 1 if sender != 4 else 1, payload)
        if moved[position][:2] not in {e[:2] for e in entries}:
            assert transcript_hash(view.params.ceremony_id, moved) != base
        assert (
            transcript_hash(view.params.ceremony_id, entries[:position] + entries[position + 1 :])
            != base
        )


def test_a_different_counted_dealing_gives_a_different_result() -> None:
    ceremony = finished()
    chain = ceremony.chain
    view = chain.view()
    index = next(i for i, m in enumerate(chain.messages) if m.kind == DEAL)
    original = chain.messages[index]
    node = ceremony.new_nodes[0]
    assert node.secret is not None
    redealt = replace(original, payload=node.secret.dealing(chain.params))  # new PoP nonce
    chain.messages[index] = redealt
    other = chain.view()
    assert other.result is not None and view.result is not None
    assert other.result.committee_key == view.result.committee_key
    assert other.result.transcript_hash != view.result.transcript_hash


# --- robustness ----------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 4),  # sender (0: a stranger)
            st.integers(0, 5),  # kind
            st.binary(max_size=120),
            st.integers(0, 3 * P),  # timestamp offset
        ),
        max_size=20,
    )
)
def test_evaluate_never_raises_on_arbitrary_messages(
    junk: list[tuple[int, int, bytes, int]],
) -> None:
    nodes = [Node(address(i)) for i in range(1, 4)]
    params: CeremonyParams = new_params(3, 2, nodes)
    messages = [
        CeremonyMessage(
            address(sender) if sender else address(90), kind, payload, 10 + n, 0, T0 + offset
        )
        for n, (sender, kind, payload, offset) in enumerate(sorted(junk, key=lambda j: j[3]))
    ]
    schedule = CeremonySchedule(T0, P, DEADLINE)
    for now in (T0, T0 + P, T0 + 3 * P, DEADLINE):
        view = evaluate(params, schedule, messages, now)
        assert view.result is None or view.failure is None
        for node in nodes:
            view.actions_for(node.address)


@pytest.mark.parametrize("silent", [1, 2, 3])
def test_missing_names_the_silent_node_in_every_phase(silent: int) -> None:
    chain, nodes, dealers = setup()
    chain.clock = T0 + 1
    deal(chain, nodes, dealers, [i for i in (1, 2, 3) if i != silent])
    assert chain.view().missing == (nodes[silent - 1].address,)
    chain.clock = T0 + P
    view = chain.view()
    for i in (1, 2, 3):
        if i != silent:
            chain.post(nodes[i - 1].address, VERDICT, my_verdict(view, i, nodes[i - 1].x25519))
    view = chain.view()
    assert view.phase is Phase.VERDICT and view.missing == (nodes[silent - 1].address,)
    view = chain.view(now=T0 + 2 * P)
    assert view.phase is Phase.RESULT and view.result is not None
    assert view.qualified == tuple(i for i in (1, 2, 3) if i != silent)
