"""DKG and reshare, simulated in memory: every node's share works, nobody's cheating does.

The ceremonies run through `evaluate` and `CeremonyView.actions_for` as gateways would
(tests/unit/keyrelease/ceremony_support.py); the tests reconstruct s themselves only to
check the shares, which no node ever does.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Sequence
from dataclasses import replace

import nacl.bindings as sodium
import nacl.public
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.keyrelease import (
    CapsuleOpenFailed,
    CommitteeKeys,
    InvalidShareProof,
    MixedEpochShares,
    NodeIndex,
    NodeShare,
    NotEnoughShares,
    Point,
    Scalar,
    SecretScalar,
    combine,
    make_capsule,
    make_key_share,
)
from marketplace.keyrelease.ceremony import CeremonyView, Failure, Phase, my_share
from marketplace.keyrelease.dkg import (
    SEALED_SHARE_SIZE,
    Answer,
    CeremonyParams,
    DealerSecret,
    Dealing,
    Exclusion,
    MessageKind,
    Verdict,
    open_share,
    parse_dealing,
)
from marketplace.keyrelease.errors import (
    CeremonyIncomplete,
    EncryptionKeyMismatch,
    InvalidCeremonyParams,
    InvalidDealing,
    MalformedCeremonyMessage,
    ShareUnavailable,
)
from marketplace.keyrelease.keys import ShareKey
from marketplace.keyrelease.shamir import interpolate, lagrange_coefficients
from storage.keys import DataKey
from tests.unit.keyrelease.ceremony_support import (
    Ceremony,
    Node,
    address,
    dkg,
    new_params,
    reshare,
    silent_answer,
    silent_dealing,
    silent_verdict,
)
from tests.unit.keyrelease.support import DEBIT_ID, SMALL_ORDER, VERSION, make_ctx

# --- helpers -----------------------------------------------------------------------------


def all_shares(ceremony: Ceremony, view: CeremonyView) -> dict[int, NodeShare]:
    return {
        share.index: share for share in (ceremony.share_of(view, n) for n in ceremony.new_nodes)
    }


def reconstruct(shares: Sequence[NodeShare]) -> Scalar:
    """s from shares: what the test does to check them, and what no node ever does."""
    total = Scalar.from_int(0)
    for index, weight in lagrange_coefficients([s.index for s in shares]).items():
        secret = next(s for s in shares if s.index == index).secret
        total = total + weight * Scalar.from_bytes(secret.to_secret_bytes())
    return total


def assert_threshold_behaviour(view: CeremonyView, shares: dict[int, NodeShare]) -> None:
    """Any t shares give Y (scalar and exponent) and open a capsule; t-1 do not."""
    keys = view.committee_keys
    keys.check_consistent()
    t, y = keys.threshold, keys.committee_key
    for share in shares.values():
        assert share.share_key == keys.share_key(share.index)
    subsets = list(itertools.combinations(sorted(shares), t))
    ctx, dek = make_ctx(), DataKey.generate()
    capsule = make_capsule(dek, ctx, y)
    bound = capsule.bind(ctx)
    for subset in subsets[:6]:
        chosen = [shares[i] for i in subset]
        assert Point.base_mul(reconstruct(chosen)) == y
        assert interpolate({i: keys.share_key(i).point for i in subset}) == y
        verified = [
            make_key_share(s, bound, DEBIT_ID, VERSION).verify(keys.share_key(s.index), capsule)
            for s in chosen
        ]
        assert combine(keys, capsule, ctx, verified) == dek
        if t > 1:
            with pytest.raises(NotEnoughShares):
                combine(keys, capsule, ctx, verified[:-1])
            assert Point.base_mul(reconstruct(chosen[:-1])) != y


def replace_sealed(payload: bytes, params: CeremonyParams, recipient: int, box: bytes) -> bytes:
    start = 2 + 32 * params.threshold + 65 + SEALED_SHARE_SIZE * (recipient - 1)
    return payload[:start] + box + payload[start + SEALED_SHARE_SIZE :]


def seal(params: CeremonyParams, recipient: int, plaintext: bytes) -> bytes:
    return sodium.crypto_box_seal(plaintext, params.encryption_keys[recipient - 1])


def trailer(ceremony_id: int, dealer: int, recipient: int) -> bytes:
    return ceremony_id.to_bytes(8, "big") + bytes([dealer, recipient])


# --- honest runs -------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "t"), [(1, 1), (3, 2), (5, 3), (7, 5)])
def test_honest_dkg_gives_every_node_a_share_any_t_of_which_open_a_capsule(n: int, t: int) -> None:
    ceremony = dkg(n, t)
    view = ceremony.run()
    assert view.phase is Phase.RESULT and view.failure is None
    assert view.qualified == tuple(range(1, n + 1))
    assert view.result is not None
    assert view.result.qualified == sum(1 << (j - 1) for j in range(1, n + 1))
    assert len(view.result_signatures) == n and view.missing == ()
    assert_threshold_behaviour(view, all_shares(ceremony, view))


def test_two_dkgs_give_different_keys() -> None:
    a, b = dkg(3, 2).run(), dkg(3, 2).run()
    assert a.result is not None and b.result is not None
    assert a.result.committee_key != b.result.committee_key


def test_a_silent_dealer_is_left_out_and_the_rest_completes() -> None:
    ceremony = dkg(5, 3)
    ceremony.new_nodes[1].dealing = silent_dealing
    view = ceremony.run()
    assert view.failure is None
    assert view.qualified == (1, 3, 4, 5)
    assert view.excluded == {2: Exclusion.NO_DEALING}
    # The silent dealer still receives its share (it is a recipient).
    assert_threshold_behaviour(view, all_shares(ceremony, view))


def test_n_minus_t_silent_dealers_are_tolerated_one_more_is_not() -> None:
    ok = dkg(5, 3)
    for node in ok.new_nodes[3:]:
        node.dealing = silent_dealing
    view = ok.run()
    assert view.failure is None and view.qualified == (1, 2, 3)
    assert_threshold_behaviour(view, all_shares(ok, view))

    too_few = dkg(5, 3)
    for node in too_few.new_nodes[2:]:
        node.dealing = silent_dealing
    failed = too_few.run()
    assert failed.failure is Failure.TOO_FEW_DEALINGS and failed.result is None
    assert failed.actions_for(address(1)).verdict is False
    with pytest.raises(CeremonyIncomplete):
        my_share(failed, 1, too_few.new_nodes[0].x25519)


def test_a_silent_recipient_still_gets_its_share_key_and_its_share_later() -> None:
    ceremony = dkg(5, 3)
    silent = ceremony.new_nodes[3]
    silent.verdict = silent_verdict
    silent.silent_result = True
    view = ceremony.run()
    assert view.failure is None and 4 not in view.verdicts
    assert view.missing == (silent.address,)
    share = ceremony.share_of(view, silent)  # later, from the transcript alone
    assert share.share_key == view.committee_keys.share_key(4)
    assert_threshold_behaviour(view, all_shares(ceremony, view))


# --- a dealer cheating one recipient --------------------------------------------------------


def tampered_box(node: Node, params: CeremonyParams) -> bytes:
    assert node.secret is not None
    payload = node.secret.dealing(params)
    start = 2 + 32 * params.threshold + 65 + SEALED_SHARE_SIZE  # recipient 2's box
    flipped = payload[start + 50] ^ 0x01
    return payload[: start + 50] + bytes([flipped]) + payload[start + 51 :]


def off_polynomial(node: Node, params: CeremonyParams) -> bytes:
    assert node.secret is not None
    value = Scalar.from_bytes(node.secret.share_for(2).to_secret_bytes()) + Scalar.from_int(1)
    box = seal(params, 2, value.to_bytes() + trailer(params.ceremony_id, 1, 2))
    return replace_sealed(node.secret.dealing(params), params, 2, box)


def misbound(node: Node, params: CeremonyParams) -> bytes:
    """The right value, but its trailer names recipient 3 (a box meant for someone else)."""
    assert node.secret is not None
    box = seal(params, 2, node.secret.share_for(2).to_secret_bytes() + trailer(1, 1, 3))
    return replace_sealed(node.secret.dealing(params), params, 2, box)


def wrong_answer(node: Node, accusers: Sequence[int]) -> bytes:
    assert node.secret is not None
    return Answer(
        {
            i: Scalar.from_bytes(node.secret.share_for(i).to_secret_bytes()) + Scalar.from_int(1)
            for i in accusers
        }
    ).to_bytes()


CHEATS = {"tampered box": tampered_box, "off the polynomial": off_polynomial, "misbound": misbound}


@pytest.mark.parametrize("cheat", sorted(CHEATS))
@pytest.mark.parametrize(
    ("answer", "excluded"),
    [(silent_answer, Exclusion.UNANSWERED_COMPLAINT), (wrong_answer, Exclusion.INVALID_ANSWER)],
)
def test_a_dealer_cheating_one_peer_is_disqualified_unless_it_answers_right(
    cheat: str, answer: object, excluded: Exclusion
) -> None:
    ceremony = dkg(5, 3)
    dealer = ceremony.new_nodes[0]
    dealer.dealing = CHEATS[cheat]
    dealer.answer = answer  # type: ignore[assignment]
    view = ceremony.run()
    assert view.verdicts[2].accused == (1,)
    assert view.complaints == {1: (2,)}
    assert view.excluded == {1: excluded}
    assert view.qualified == (2, 3, 4, 5) and view.failure is None
    assert_threshold_behaviour(view, all_shares(ceremony, view))


@pytest.mark.parametrize("cheat", sorted(CHEATS))
def test_a_dealer_that_answers_a_justified_complaint_correctly_stays(cheat: str) -> None:
    ceremony = dkg(5, 3)
    ceremony.new_nodes[0].dealing = CHEATS[cheat]
    view = ceremony.run()
    assert view.complaints == {1: (2,)}
    assert view.qualified == (1, 2, 3, 4, 5) and view.excluded == {}
    assert set(view.revealed[1]) == {2}
    # Node 2 uses the revealed value, since its box is still bad.
    assert open_share(view.dealings[1], view.params, 2, ceremony.new_nodes[1].x25519) is None
    assert_threshold_behaviour(view, all_shares(ceremony, view))


def test_a_false_complaint_cannot_exclude_an_honest_dealer() -> None:
    ceremony = dkg(5, 3)

    def accuse_everyone(_node: Node, view: CeremonyView, _index: int) -> bytes:
        return Verdict(tuple(sorted(view.dealings))).to_bytes()

    ceremony.new_nodes[2].verdict = accuse_everyone
    view = ceremony.run()
    assert view.complaints == {j: (3,) for j in range(1, 6)}
    assert view.qualified == (1, 2, 3, 4, 5) and view.excluded == {}
    assert all(set(view.revealed[j]) == {3} for j in range(1, 6))
    assert_threshold_behaviour(view, all_shares(ceremony, view))


def test_a_silent_node_cannot_use_a_bad_box_nobody_complained_about() -> None:
    """GJKR's limit: a node that stayed silent cannot recover a share it never complained
    about; the error names the dealer instead of returning a wrong share."""
    ceremony = dkg(5, 3)
    ceremony.new_nodes[0].dealing = tampered_box
    ceremony.new_nodes[1].verdict = silent_verdict
    view = ceremony.run()
    assert view.qualified == (1, 2, 3, 4, 5)
    with pytest.raises(ShareUnavailable) as caught:
        ceremony.share_of(view, ceremony.new_nodes[1])
    assert (caught.value.node_index, caught.value.dealer_index) == (2, 1)


# --- publicly invalid dealings ---------------------------------------------------------------


def rewrite(edit: object) -> object:
    def dealing(node: Node, params: CeremonyParams) -> bytes:
        assert node.secret is not None
        return edit(node.secret.dealing(params), params, node)  # type: ignore[operator]

    return dealing


def other_params(params: CeremonyParams, **changes: object) -> CeremonyParams:
    fields = {f: getattr(params, f) for f in CeremonyParams.__dataclass_fields__}
    fields.update(changes)
    return CeremonyParams(**fields)  # type: ignore[arg-type]


def set_point(payload: bytes, k: int, point: bytes) -> bytes:
    return payload[: 2 + 32 * k] + point + payload[34 + 32 * k :]


def bad_pop(payload: bytes, params: CeremonyParams, _node: Node) -> bytes:
    tail = 2 + 32 * params.threshold
    z = Scalar.from_bytes(payload[tail + 32 : tail + 64]) + Scalar.from_int(1)
    return payload[: tail + 32] + z.to_bytes() + payload[tail + 64 :]


def non_canonical_pop(payload: bytes, params: CeremonyParams, _node: Node) -> bytes:
    tail = 2 + 32 * params.threshold
    return payload[: tail + 32] + b"\xff" * 32 + payload[tail + 64 :]


def for_another_ceremony(_payload: bytes, params: CeremonyParams, node: Node) -> bytes:
    assert node.secret is not None
    return node.secret.dealing(other_params(params, ceremony_id=params.ceremony_id + 1))


def for_another_market(_payload: bytes, params: CeremonyParams, node: Node) -> bytes:
    assert node.secret is not None
    return node.secret.dealing(other_params(params, market=bytes(20)))


def wrong_t(_payload: bytes, params: CeremonyParams, node: Node) -> bytes:
    other = other_params(params, threshold=params.threshold + 1)
    return DealerSecret.generate(1, params.threshold + 1).dealing(other)


def wrong_n(_payload: bytes, params: CeremonyParams, node: Node) -> bytes:
    extra = nacl.public.PrivateKey.generate()
    other = other_params(
        params,
        nodes=(*params.nodes, address(99)),
        encryption_keys=(*params.encryption_keys, bytes(extra.public_key)),
    )
    assert node.secret is not None
    return node.secret.dealing(other)


INVALID: dict[str, tuple[object, Exclusion]] = {
    "bad pop": (bad_pop, Exclusion.INVALID_POP),
    "non-canonical pop": (non_canonical_pop, Exclusion.INVALID_POP),
    "pop of another ceremony": (for_another_ceremony, Exclusion.INVALID_POP),
    "pop of another market": (for_another_market, Exclusion.INVALID_POP),
    "wrong t": (wrong_t, Exclusion.WRONG_THRESHOLD),
    "wrong n": (wrong_n, Exclusion.WRONG_SIZE),
    "identity C_0": (
        lambda p, _a, _n: set_point(p, 0, bytes.fromhex(SMALL_ORDER[0])),
        Exclusion.INVALID_POINT,
    ),
    "small-order C_1": (
        lambda p, _a, _n: set_point(p, 1, bytes.fromhex(SMALL_ORDER[5])),
        Exclusion.INVALID_POINT,
    ),
    "not a point C_2": (lambda p, _a, _n: set_point(p, 2, b"\xff" * 32), Exclusion.INVALID_POINT),
    "truncated": (lambda p, _a, _n: p[:-1], Exclusion.MALFORMED),
    "cut before n": (lambda p, a, _n: p[: 2 + 32 * a.threshold + 40], Exclusion.MALFORMED),
    "extra bytes": (lambda p, _a, _n: p + b"\x00", Exclusion.MALFORMED),
    "empty": (lambda _p, _a, _n: b"", Exclusion.MALFORMED),
    "unknown format": (lambda p, _a, _n: b"\x02" + p[1:], Exclusion.MALFORMED),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_a_publicly_invalid_dealing_excludes_its_dealer_with_a_named_reason(case: str) -> None:
    edit, reason = INVALID[case]
    ceremony = dkg(5, 3)
    ceremony.new_nodes[3].dealing = rewrite(edit)  # type: ignore[assignment]
    view = ceremony.run()
    assert view.excluded == {4: reason}
    assert 4 not in view.dealings and view.qualified == (1, 2, 3, 5)
    assert all(4 not in v.accused for v in view.verdicts.values())  # nobody needs to complain
    assert view.failure is None
    assert_threshold_behaviour(view, all_shares(ceremony, view))


def test_a_pop_copied_from_another_dealer_does_not_verify() -> None:
    """Rogue-key defence: dealer 2 reposts dealer 1's commitments and proof as its own."""
    ceremony = dkg(3, 2)
    first = ceremony.new_nodes[0]

    def copy_first(_node: Node, params: CeremonyParams) -> bytes:
        assert first.secret is not None
        return first.secret.dealing(params)

    ceremony.new_nodes[1].dealing = copy_first
    view = ceremony.run()
    assert view.excluded == {2: Exclusion.INVALID_POP}
    with pytest.raises(InvalidDealing) as caught:
        Dealing.from_bytes(view.counted[1].message.payload, view.params, 2)
    assert caught.value.dealer_index == 2 and caught.value.fault == "invalid_pop"


def test_a_rogue_key_dealing_cannot_cancel_the_others() -> None:
    """The classic attack on summed keys: C_0 = x·G - Σ others' C_0 would make Y = x·G.
    Without a_0 the attacker cannot prove possession of C_0, so it is excluded."""
    ceremony = dkg(3, 2)

    def rogue(node: Node, params: CeremonyParams) -> bytes:
        assert node.secret is not None
        others = [n.secret for n in ceremony.new_nodes[:2]]
        c0 = Point.base_mul(Scalar.from_int(7))
        for other in others:
            assert other is not None
            c0 = c0 - other.commitments()[0]
        return set_point(node.secret.dealing(params), 0, c0.to_bytes())

    ceremony.new_nodes[2].dealing = rogue
    view = ceremony.run()
    assert view.excluded == {3: Exclusion.INVALID_POP}


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_as_a_dealing_never_escape_as_an_exception(junk: bytes) -> None:
    nodes = [Node(address(i)) for i in range(1, 4)]
    params = new_params(3, 2, nodes)
    result = parse_dealing(junk, params, 1)
    assert isinstance(result, InvalidDealing)
    assert result.fault in {e.value for e in Exclusion}


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_any_flipped_bit_of_a_dealing_is_excluded_or_complained_about(data: st.DataObject) -> None:
    nodes = [Node(address(i)) for i in range(1, 4)]
    params = new_params(3, 2, nodes)
    payload = DealerSecret.generate(1, 2).dealing(params)
    bit = data.draw(st.integers(0, 8 * len(payload) - 1))
    flipped = bytearray(payload)
    flipped[bit // 8] ^= 1 << (bit % 8)
    parsed = parse_dealing(bytes(flipped), params, 1)
    if isinstance(parsed, InvalidDealing):
        return
    # It still parses: a sealed share was hit (its recipient complains) or a higher
    # commitment (the proof covers C_0 only; then every recipient complains).
    opened = [open_share(parsed, params, i, nodes[i - 1].x25519) for i in (1, 2, 3)]
    assert any(value is None for value in opened)


# --- reshare -----------------------------------------------------------------------------


def run_dkg(n: int, t: int) -> tuple[Ceremony, CeremonyView]:
    ceremony = dkg(n, t)
    view = ceremony.run()
    assert view.failure is None
    return ceremony, view


@pytest.mark.parametrize(
    ("old", "new", "kept", "silent_old"),
    [
        ((3, 2), (5, 3), 3, 2),  # grow; old node 2 down
        ((5, 3), (3, 2), 3, 5),  # shrink; old node 5 down
        ((5, 3), (5, 3), 4, 1),  # replace node 5; old node 1 down
    ],
    ids=["grow", "shrink", "replace"],
)
def test_reshare_keeps_y_and_old_capsules_open_from_new_shares_alone(
    old: tuple[int, int], new: tuple[int, int], kept: int, silent_old: int
) -> None:
    first, first_view = run_dkg(*old)
    old_keys = first_view.committee_keys
    old_shares = all_shares(first, first_view)
    ctx, dek = make_ctx(), DataKey.generate()
    capsule = make_capsule(dek, ctx, old_keys.committee_key)  # published in epoch 1

    newcomers = [Node(address(i, generation=2)) for i in range(kept + 1, new[0] + 1)]
    new_nodes = first.new_nodes[:kept] + newcomers
    second = reshare(first.new_nodes, first_view, new_nodes, new[1])
    second.old_nodes[silent_old - 1].dealing = silent_dealing
    view = second.run()
    assert view.failure is None
    assert view.excluded == {silent_old: Exclusion.NO_DEALING}
    assert view.result is not None
    assert view.result.committee_key == first_view.result.committee_key  # type: ignore[union-attr]
    qualified = [j for j in range(1, old[0] + 1) if j != silent_old]
    assert view.result.qualified == sum(1 << (j - 1) for j in qualified)
    old_only = [n for n in first.new_nodes if n not in new_nodes]
    assert {s.sender for s in view.result_signatures if s.new_index is None} == {
        n.address for n in old_only
    }
    assert len(view.old_signatures) == old[0] and len(view.new_signatures) == new[0]
    new_shares = all_shares(second, view)
    assert_threshold_behaviour(view, new_shares)

    new_keys, bound = view.committee_keys, capsule.bind(ctx)
    picked = [new_shares[i] for i in range(1, new[1] + 1)]
    verified = [
        make_key_share(s, bound, DEBIT_ID, VERSION).verify(new_keys.share_key(s.index), capsule)
        for s in picked
    ]
    assert combine(new_keys, capsule, ctx, verified) == dek

    # Epoch 1 and epoch 2 shares do not mix. Typed: an old share verified under epoch 1
    # is refused by the epoch-2 committee. Untyped (a view that lists the old key in the
    # new committee, so combine cannot tell): the Z it gives does not open the capsule.
    assert old_keys.epoch == 1 and new_keys.epoch == 2
    old_share = old_shares[1]
    assert old_share.epoch == 1 and picked[0].epoch == 2
    old_key_share = make_key_share(old_share, bound, DEBIT_ID, VERSION)
    with pytest.raises(InvalidShareProof):
        old_key_share.verify(new_keys.share_key(1), capsule)
    if new[1] > 1:
        typed = [old_key_share.verify(old_keys.share_key(1), capsule), *verified[1:]]
        with pytest.raises(MixedEpochShares):
            combine(new_keys, capsule, ctx, typed)
        forged_keys = CommitteeKeys(
            new_keys.threshold,
            new_keys.committee_key,
            (replace(old_share.share_key, epoch=2), *new_keys.share_keys[1:]),
            epoch=2,
        )
        mixed = [old_key_share.verify(forged_keys.share_key(1), capsule), *verified[1:]]
        with pytest.raises(CapsuleOpenFailed):
            combine(forged_keys, capsule, ctx, mixed)


def test_reshare_with_fewer_than_t_old_dealers_cannot_complete() -> None:
    first, first_view = run_dkg(5, 3)
    second = reshare(first.new_nodes, first_view, first.new_nodes[:3], 2)
    for node in second.old_nodes[2:]:
        node.dealing = silent_dealing
    view = second.run()
    assert view.failure is Failure.TOO_FEW_DEALINGS


def test_reshare_dealing_of_a_fresh_secret_is_refused() -> None:
    """A reshare dealer must deal its old share: C_0 must be its share key Y_j, else it
    could replace the committee key with its own."""
    first, first_view = run_dkg(3, 2)
    second = reshare(first.new_nodes, first_view, first.new_nodes, 2)

    def fresh(node: Node, params: CeremonyParams) -> bytes:
        dkg_params = other_params(params, previous=None)
        return DealerSecret.generate(2, 2).dealing(dkg_params)

    def anothers_share(node: Node, params: CeremonyParams) -> bytes:
        """Dealer 3 knows node 1's share (collusion) and deals it as its own: C_0 = Y_1."""
        stolen = first.new_nodes[0].old_share
        assert stolen is not None
        as_mine = NodeShare(ShareKey(NodeIndex(3), stolen.share_key.point), stolen.secret)
        return DealerSecret(secrets.token_bytes(32), 3, 2, as_mine).dealing(params)

    second.old_nodes[1].dealing = fresh
    second.old_nodes[2].dealing = anothers_share
    view = second.run()
    assert view.excluded == {2: Exclusion.WRONG_CONSTANT_TERM, 3: Exclusion.WRONG_CONSTANT_TERM}
    assert view.failure is Failure.TOO_FEW_DEALINGS


# --- pieces --------------------------------------------------------------------------------


def test_the_seed_determines_the_polynomial_so_a_restarted_dealer_answers_the_same() -> None:
    nodes = [Node(address(i)) for i in range(1, 4)]
    params = new_params(3, 2, nodes)
    seed = secrets.token_bytes(32)
    a, b = DealerSecret(seed, 1, 2), DealerSecret(seed, 1, 2)
    assert a.commitments() == b.commitments()
    assert a.answer([2, 3]) == b.answer([3, 2])
    dealing = Dealing.from_bytes(a.dealing(params), params, 1)
    assert dealing.commitments == b.commitments()
    for i in (1, 2, 3):
        opened = open_share(dealing, params, i, nodes[i - 1].x25519)
        assert opened == b.share_for(i)
    assert repr(a) == "DealerSecret(<secret>)"
    assert seed.hex() not in repr(a) and seed.hex() not in str(a.__class__.__dict__)


def test_open_share_refuses_a_secret_that_is_not_the_registered_key() -> None:
    nodes = [Node(address(i)) for i in range(1, 4)]
    params = new_params(3, 2, nodes)
    dealing = Dealing.from_bytes(DealerSecret.generate(1, 2).dealing(params), params, 1)
    with pytest.raises(EncryptionKeyMismatch):
        open_share(dealing, params, 1, nodes[1].x25519)
    with pytest.raises(InvalidCeremonyParams):
        open_share(dealing, params, 4, nodes[1].x25519)


def test_dealer_secret_refuses_the_wrong_ceremony() -> None:
    nodes = [Node(address(i)) for i in range(1, 4)]
    params = new_params(3, 2, nodes)
    with pytest.raises(InvalidCeremonyParams):
        DealerSecret.generate(1, 3).dealing(params)
    with pytest.raises(InvalidCeremonyParams):
        DealerSecret.generate(4, 2).dealing(params)
    share = NodeShare.from_secret(2, SecretScalar.random())
    with pytest.raises(InvalidCeremonyParams):
        DealerSecret.generate(1, 2, share)
    with pytest.raises(InvalidCeremonyParams):
        DealerSecret.generate(2, 2, share).dealing(params)  # a reshare secret in a DKG
    with pytest.raises(ValueError, match="32 bytes"):
        DealerSecret(b"short", 1, 2)


@pytest.mark.parametrize(
    "change",
    [
        {"threshold": 0},
        {"threshold": 4},
        {"market": bytes(19)},
        {"ceremony_id": 0},
        {"epoch": 2**64},
        {"encryption_keys": (bytes(32),) * 2},
        {"encryption_keys": (bytes(31),) * 3},
        {"nodes": (address(1), address(1).upper().replace("0X", "0x"), address(3))},
    ],
)
def test_ceremony_params_refuse_inconsistent_values(change: dict[str, object]) -> None:
    nodes = [Node(address(i)) for i in range(1, 4)]
    params = new_params(3, 2, nodes)
    with pytest.raises(InvalidCeremonyParams):
        other_params(params, **change)


def test_verdict_and_answer_round_trip_and_refuse_malformed_payloads() -> None:
    nodes = [Node(address(i)) for i in range(1, 6)]
    params = new_params(5, 3, nodes)
    assert Verdict.from_bytes(Verdict((1, 4)).to_bytes(), params) == Verdict((1, 4))
    assert Verdict.from_bytes(b"\x01\x00", params) == Verdict(())
    answer = Answer({2: Scalar.from_int(5), 4: Scalar.from_int(9)})
    assert Answer.from_bytes(answer.to_bytes(), params) == answer
    for bad in [
        b"",
        b"\x02\x00",
        b"\x01\x01",
        b"\x01\x02\x03\x01",
        b"\x01\x01\x06",
        b"\x01\x01\x00",
        b"\x01\x02\x02\x02",
    ]:
        with pytest.raises(MalformedCeremonyMessage) as caught:
            Verdict.from_bytes(bad, params)
        assert caught.value.kind == MessageKind.VERDICT
    good = answer.to_bytes()
    for bad in [
        b"",
        b"\x01\x01",
        good[:-1],
        good + b"\x00",
        b"\x01\x01\x06" + bytes(32),
        b"\x01\x01\x01" + b"\xff" * 32,
        b"\x01\x02\x02" + bytes(32) + b"\x02" + bytes(32),
    ]:
        with pytest.raises(MalformedCeremonyMessage):
            Answer.from_bytes(bad, params)


def test_no_share_value_leaks_into_reprs_or_errors() -> None:
    ceremony = dkg(3, 2)
    ceremony.new_nodes[0].dealing = tampered_box
    ceremony.new_nodes[1].verdict = silent_verdict
    view = ceremony.run()
    share = ceremony.share_of(view, ceremony.new_nodes[0])
    secret_hex = share.secret.to_secret_bytes().hex()
    texts = [repr(share), repr(view.result)]
    try:
        ceremony.share_of(view, ceremony.new_nodes[1])
    except ShareUnavailable as e:
        texts.append(str(e))
    assert all(secret_hex not in text for text in texts)
