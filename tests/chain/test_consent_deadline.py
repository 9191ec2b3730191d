"""A buyer's consent deadline (DESIGN §12): after it the owner can no longer consent, and
the buyer's cancel refunds the whole escrow; before it nothing changes."""

from __future__ import annotations

import pytest

from marketplace.chain.errors import ConsentDeadlinePassed, InvalidConsentDeadline
from marketplace.chain.events import DebitRequested
from marketplace.chain.types import DebitState
from tests.chain.conftest import (
    BUYER_KEY,
    PURPOSE,
    ChainEnv,
    assert_escrow_invariant,
    events_of,
    new_listing,
)

PRICE = 1_000_003
WINDOW = 7 * 86_400


def _request(env: ChainEnv, listing_id: int, deadline: int) -> int:
    return env.market.request_debit(env.actors.buyer, listing_id, periods=2,
                                    buyer_key=BUYER_KEY, purpose_hash=PURPOSE,
                                    consent_deadline=deadline).value


def test_requestDebit_recordsConsentDeadline(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, auto=False)
    deadline = env.dev.now() + WINDOW
    sent = env.market.request_debit(env.actors.buyer, listing_id, periods=2,
                                    buyer_key=BUYER_KEY, consent_deadline=deadline)
    (event,) = events_of(env, sent)
    assert isinstance(event, DebitRequested)
    assert event.consent_deadline == deadline
    debit = env.market.debit(sent.value)
    assert (debit.state, debit.consent_deadline, debit.start, debit.end) == (
        DebitState.REQUESTED, deadline, 0, 0)


def test_requestDebit_ignoresConsentDeadlineOnAutoApproveListing(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, auto=True)
    debit_id = _request(env, listing_id, env.dev.now() + WINDOW)
    debit = env.market.debit(debit_id)
    assert (debit.state, debit.consent_deadline) == (DebitState.ACTIVE, 0)


@pytest.mark.parametrize("ahead", [0, -1])
def test_requestDebit_revertsWhen_consentDeadlineNotInFuture(env: ChainEnv, ahead: int) -> None:
    listing_id = new_listing(env, price=PRICE, auto=False)
    deadline = env.dev.now() + ahead
    with pytest.raises(InvalidConsentDeadline):
        _request(env, listing_id, deadline)


def test_requestDebit_revertsWhen_consentDeadlineBeyond40Bits(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, auto=False)
    with pytest.raises(InvalidConsentDeadline) as e:
        _request(env, listing_id, 2**40)
    assert e.value.fields == {"consentDeadline": 2**40}


def test_consent_beforeDeadline_activates(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, auto=False)
    debit_id = _request(env, listing_id, env.dev.now() + WINDOW)
    env.dev.advance(WINDOW - 60)
    env.market.consent(env.actors.owner, debit_id)
    debit = env.market.debit(debit_id)
    assert (debit.state, debit.consent_deadline) == (DebitState.ACTIVE, 0)
    assert debit.end - debit.start == debit.duration


def test_consent_revertsWhen_afterDeadline(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, auto=False)
    deadline = env.dev.now() + WINDOW
    debit_id = _request(env, listing_id, deadline)
    env.dev.advance(WINDOW + 1)
    with pytest.raises(ConsentDeadlinePassed) as e:
        env.market.consent(env.actors.owner, debit_id)
    assert e.value.fields == {"debitId": debit_id, "consentDeadline": deadline}
    assert env.market.debit(debit_id).state is DebitState.REQUESTED


def test_cancel_afterDeadline_refundsWholeEscrow(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, auto=False)
    debit_id = _request(env, listing_id, env.dev.now() + WINDOW)
    env.dev.advance(WINDOW + 1)
    env.market.cancel(env.actors.buyer, debit_id)
    debit = env.market.debit(debit_id)
    assert (debit.state, debit.settled) == (DebitState.CANCELLED, 2 * PRICE)
    assert env.market.balance_of(env.actors.buyer.address) == 2 * PRICE
    assert_escrow_invariant(env, [debit_id], [env.actors.buyer.address])


def test_consent_withoutDeadline_anyTimeLater(env: ChainEnv) -> None:
    listing_id = new_listing(env, price=PRICE, auto=False)
    debit_id = _request(env, listing_id, 0)
    env.dev.advance(365 * 86_400)
    env.market.consent(env.actors.owner, debit_id)
    assert env.market.debit(debit_id).state is DebitState.ACTIVE
