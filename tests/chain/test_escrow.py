"""Streaming escrow: claim, withdraw, claimable, balanceOf and isEntitled over time."""

from __future__ import annotations

import pytest

from marketplace.chain.errors import (
    NothingToClaim,
    NothingToWithdraw,
    NotListingOwner,
    UnknownDebit,
    UnknownVersion,
)
from marketplace.chain.events import EarningsClaimed, Withdrawn
from marketplace.chain.types import DebitState
from tests.chain.conftest import (
    ETHER,
    ChainEnv,
    accrued,
    assert_escrow_invariant,
    block_time,
    eth_balance,
    events_of,
    gas_cost,
    new_debit,
    new_listing,
    only_event,
    publish,
)

PRICE = 1_000_003  # prime-ish amounts make every floor visible
PERIOD = 977


def _accounts(env: ChainEnv) -> list[str]:
    a = env.actors
    return [a.owner.address, a.buyer.address, a.other_buyer.address, a.stranger.address]


# ---------------------------------------------------------------- claim


def test_claim_creditsLinearAccrualAtEachPoint(env: ChainEnv) -> None:
    owner = env.actors.owner
    listing_id = new_listing(env, price=PRICE, period=PERIOD)
    debit_id = new_debit(env, listing_id, periods=3).value
    debit = env.market.debit(debit_id)
    amount, settled = 3 * PRICE, 0
    for step in (1, 13, 400, 977, 1_000):
        env.dev.advance(step)
        expected = accrued(amount, debit.start, debit.end, env.dev.now()) - settled
        assert env.market.claimable(debit_id) == expected
        sent = env.market.claim(owner, [debit_id])
        due = accrued(amount, debit.start, debit.end, block_time(env, sent)) - settled
        assert due > 0
        assert sent.value == due
        event = only_event(env, sent, EarningsClaimed)
        assert event == EarningsClaimed(event.ref, debit_id, owner.address, due)
        settled += due
        assert env.market.debit(debit_id).settled == settled
        assert env.market.balance_of(owner.address) == settled
        assert_escrow_invariant(env, [debit_id], _accounts(env))
    assert settled < amount
    env.dev.advance(3 * PERIOD)  # past the end: the rest, exactly
    sent = env.market.claim(owner, [debit_id])
    assert sent.value == amount - settled
    assert env.market.debit(debit_id).settled == amount
    assert env.market.balance_of(owner.address) == amount
    assert env.market.claimable(debit_id) == 0
    assert env.market.contract_balance() == amount  # all credited, nothing left in escrow


def test_claim_afterEndCreditsFullAmount(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, period=PERIOD)
    debit_id = new_debit(env, listing_id, periods=2).value
    env.dev.advance(2 * PERIOD)
    assert env.market.claimable(debit_id) == 2 * PRICE
    env.dev.advance(10 * PERIOD)
    assert env.market.claimable(debit_id) == 2 * PRICE
    assert env.market.claim(env.actors.owner, [debit_id]).value == 2 * PRICE
    debit = env.market.debit(debit_id)
    assert (debit.state, debit.settled) == (DebitState.ACTIVE, 2 * PRICE)


def test_claim_creditsSeveralDebitsAndSkipsInactiveOnes(env: ChainEnv) -> None:
    owner = env.actors.owner
    auto = new_listing(env, price=PRICE, period=PERIOD, auto=True)
    manual = new_listing(env, price=PRICE, period=PERIOD, auto=False)
    first = new_debit(env, auto, periods=1).value
    second = new_debit(env, auto, buyer=env.actors.other_buyer, periods=4).value
    requested = new_debit(env, manual, periods=1).value
    rejected = new_debit(env, manual, periods=1).value
    env.market.reject(owner, rejected)
    starts = {d: env.market.debit(d) for d in (first, second)}
    env.dev.advance(PERIOD)
    sent = env.market.claim(owner, [requested, first, rejected, second])
    at = block_time(env, sent)
    due_second = accrued(4 * PRICE, starts[second].start, starts[second].end, at)
    events = events_of(env, sent)
    assert [(type(e), e.debit_id, e.owner, e.amount) for e in events] == [  # type: ignore[union-attr]
        (EarningsClaimed, first, owner.address, PRICE),
        (EarningsClaimed, second, owner.address, due_second),
    ]
    assert sent.value == PRICE + due_second
    assert env.market.balance_of(owner.address) == PRICE + due_second
    assert env.market.debit(requested).settled == 0
    assert_escrow_invariant(env, [first, second, requested, rejected], _accounts(env))


def test_claim_ignoresRepeatedIds(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, period=PERIOD)
    debit_id = new_debit(env, listing_id, periods=1).value
    env.dev.advance(2 * PERIOD)
    sent = env.market.claim(env.actors.owner, [debit_id, debit_id, debit_id])
    assert sent.value == PRICE
    assert len(events_of(env, sent)) == 1
    assert env.market.balance_of(env.actors.owner.address) == PRICE


def test_claim_revertsWhen_someoneElsesListing(env: ChainEnv) -> None:
    mine = new_listing(env, owner=env.actors.stranger)
    theirs = new_listing(env)
    own_debit = new_debit(env, mine).value
    their_debit = new_debit(env, theirs).value
    env.dev.advance(100)
    with pytest.raises(NotListingOwner) as e:
        env.market.claim(env.actors.stranger, [own_debit, their_debit])
    assert e.value.fields == {"listingId": theirs, "caller": env.actors.stranger.address}
    assert env.market.balance_of(env.actors.stranger.address) == 0
    with pytest.raises(NotListingOwner) as e:
        env.market.claim(env.actors.buyer, [own_debit])
    assert e.value.fields == {"listingId": mine, "caller": env.actors.buyer.address}


def test_claim_revertsWhen_unknownDebit(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    debit_id = new_debit(env, listing_id).value
    env.dev.advance(100)
    with pytest.raises(UnknownDebit) as e:
        env.market.claim(env.actors.owner, [debit_id, 9])
    assert e.value.fields == {"debitId": 9}
    assert env.market.debit(debit_id).settled == 0


def test_claim_revertsWhen_nothingAccrued(env: ChainEnv) -> None:
    owner = env.actors.owner
    manual = new_listing(env, auto=False)
    requested = new_debit(env, manual).value
    free = new_debit(env, new_listing(env, price=0)).value
    with pytest.raises(NothingToClaim) as e:
        env.market.claim(owner, [])
    assert e.value.fields == {}
    env.dev.advance(200)
    for ids in ([requested], [free], [requested, free]):
        with pytest.raises(NothingToClaim):
            env.market.claim(owner, ids)


def test_claim_revertsWhen_alreadyClaimedInFull(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, period=PERIOD)
    debit_id = new_debit(env, listing_id, periods=1).value
    env.dev.advance(PERIOD)
    env.market.claim(env.actors.owner, [debit_id])
    env.dev.advance(PERIOD)
    with pytest.raises(NothingToClaim):
        env.market.claim(env.actors.owner, [debit_id])
    assert env.market.balance_of(env.actors.owner.address) == PRICE


def test_claim_revertsWhen_revoked(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, period=PERIOD)
    debit_id = new_debit(env, listing_id, periods=2).value
    env.dev.advance(100)
    env.market.revoke(env.actors.owner, debit_id)
    env.dev.advance(3 * PERIOD)
    with pytest.raises(NothingToClaim):
        env.market.claim(env.actors.owner, [debit_id])


def test_claimable_revertsWhen_unknownDebit(env: ChainEnv) -> None:
    with pytest.raises(UnknownDebit) as e:
        env.market.claimable(1)
    assert e.value.fields == {"debitId": 1}
    with pytest.raises(UnknownDebit) as e:
        env.market.debit(1)
    assert e.value.fields == {"debitId": 1}


# ---------------------------------------------------------------- withdraw


def test_withdraw_paysRefundAndZeroesCredit(env: ChainEnv) -> None:
    buyer = env.actors.buyer
    listing_id = new_listing(env, price=PRICE, auto=False)
    debit_id = new_debit(env, listing_id, periods=3).value
    env.market.cancel(buyer, debit_id)
    before = eth_balance(env, buyer.address)
    sent = env.market.withdraw(buyer)
    assert sent.value == 3 * PRICE
    assert eth_balance(env, buyer.address) - before == 3 * PRICE - gas_cost(env, sent)
    event = only_event(env, sent, Withdrawn)
    assert event == Withdrawn(event.ref, buyer.address, 3 * PRICE)
    assert env.market.balance_of(buyer.address) == 0
    assert env.market.contract_balance() == 0


def test_withdraw_paysOwnerEarnings(env: ChainEnv) -> None:
    owner = env.actors.owner
    listing_id = new_listing(env, price=ETHER, period=PERIOD)
    debit_id = new_debit(env, listing_id, periods=2).value
    new_debit(env, listing_id, buyer=env.actors.other_buyer, periods=1)  # stays in escrow
    env.dev.advance(PERIOD)
    claimed = env.market.claim(owner, [debit_id]).value
    before = eth_balance(env, owner.address)
    market_before = env.market.contract_balance()
    sent = env.market.withdraw(owner)
    assert sent.value == claimed
    assert eth_balance(env, owner.address) - before == claimed - gas_cost(env, sent)
    assert env.market.contract_balance() == market_before - claimed
    assert_escrow_invariant(env, [1, 2], [owner.address])


def test_withdraw_revertsWhen_nothingCredited(env: ChainEnv) -> None:
    with pytest.raises(NothingToWithdraw) as e:
        env.market.withdraw(env.actors.stranger)
    assert e.value.fields == {}


def test_withdraw_revertsWhen_alreadyWithdrawn(env: ChainEnv) -> None:
    listing_id = new_listing(env, auto=False)
    debit_id = new_debit(env, listing_id).value
    new_debit(env, listing_id, buyer=env.actors.other_buyer)  # funds a thief could take
    env.market.reject(env.actors.owner, debit_id)
    env.market.withdraw(env.actors.buyer)
    before = env.market.contract_balance()
    with pytest.raises(NothingToWithdraw):
        env.market.withdraw(env.actors.buyer)
    assert env.market.contract_balance() == before > 0


def test_withdraw_revertsWhen_onlyEscrowed(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    new_debit(env, listing_id)
    for account in (env.actors.buyer, env.actors.owner):
        with pytest.raises(NothingToWithdraw):
            env.market.withdraw(account)


# ---------------------------------------------------------------- isEntitled


def test_isEntitled_activeDebitCoversVersionsBeforeAndDuringTerm(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, period=PERIOD)
    publish(env, listing_id)  # before the debit
    env.dev.advance(50)
    debit_id = new_debit(env, listing_id, periods=1).value
    env.dev.advance(PERIOD // 2)
    publish(env, listing_id)  # during the debit
    assert env.market.is_entitled(debit_id, 1) is True
    assert env.market.is_entitled(debit_id, 2) is True


def test_isEntitled_lastSecondOfTermThenExpired(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, period=PERIOD)
    publish(env, listing_id)
    debit = env.market.debit(new_debit(env, listing_id, periods=1).value)
    env.dev.advance(debit.end - 1 - env.dev.now())
    assert env.dev.now() == debit.end - 1
    assert env.market.is_entitled(debit.debit_id, 1) is True
    env.dev.advance(1)
    assert env.dev.now() == debit.end
    assert env.market.is_entitled(debit.debit_id, 1) is False


def test_isEntitled_falseForVersionPublishedAfterEnd(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, period=PERIOD)
    short = new_debit(env, listing_id, periods=1).value
    long = new_debit(env, listing_id, buyer=env.actors.other_buyer, periods=5).value
    env.dev.advance(2 * PERIOD)
    publish(env, listing_id)  # after the short debit's end, during the long one
    assert env.market.is_entitled(short, 1) is False
    assert env.market.is_entitled(long, 1) is True


def test_isEntitled_falseUntilConsent(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, period=PERIOD, auto=False)
    publish(env, listing_id)
    debit_id = new_debit(env, listing_id).value
    assert env.market.is_entitled(debit_id, 1) is False
    env.market.consent(env.actors.owner, debit_id)
    assert env.market.is_entitled(debit_id, 1) is True


@pytest.mark.parametrize("ending", ["reject", "cancel", "revoke"])
def test_isEntitled_falseAfterEnding(env: ChainEnv, ending: str) -> None:
    listing_id = new_listing(env, price=PRICE, period=PERIOD, auto=ending == "revoke")
    publish(env, listing_id)
    debit_id = new_debit(env, listing_id).value
    if ending == "reject":
        env.market.reject(env.actors.owner, debit_id)
    elif ending == "cancel":
        env.market.cancel(env.actors.buyer, debit_id)
    else:
        assert env.market.is_entitled(debit_id, 1) is True
        env.market.revoke(env.actors.owner, debit_id)
    publish(env, listing_id)
    assert env.market.is_entitled(debit_id, 1) is False
    assert env.market.is_entitled(debit_id, 2) is False


def test_isEntitled_revertsWhen_unknownVersion(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    debit_id = new_debit(env, listing_id).value
    for version in (0, 1):
        with pytest.raises(UnknownVersion) as e:
            env.market.is_entitled(debit_id, version)
        assert e.value.fields == {"listingId": listing_id, "version": version}


def test_isEntitled_revertsWhen_versionOfAnotherListing(env: ChainEnv) -> None:
    first = new_listing(env)
    second = new_listing(env)
    publish(env, second)
    debit_id = new_debit(env, first).value
    with pytest.raises(UnknownVersion) as e:
        env.market.is_entitled(debit_id, 1)
    assert e.value.fields == {"listingId": first, "version": 1}


def test_isEntitled_revertsWhen_unknownDebit(env: ChainEnv) -> None:
    listing_id = new_listing(env)
    publish(env, listing_id)
    with pytest.raises(UnknownDebit) as e:
        env.market.is_entitled(1, 1)
    assert e.value.fields == {"debitId": 1}
