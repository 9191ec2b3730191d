"""A receiver that re-enters withdraw from its receive hook cannot drain the market."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from web3.contract import Contract

from marketplace.chain.errors import FailedCall, ReentrancyGuardReentrantCall
from marketplace.chain.events import Withdrawn
from tests.chain.conftest import (
    ETHER,
    ChainEnv,
    CompiledContract,
    assert_escrow_invariant,
    deploy_contract,
    eth_balance,
    new_debit,
    new_listing,
    send_call,
)

BUBBLE, SWALLOW, REFUSE = 0, 1, 2
CREDIT = ETHER


@dataclass
class Attack:
    attacker: Contract
    abi: list[dict[str, object]]
    debits: list[int]
    accounts: list[str]


@pytest.fixture
def attack(env: ChainEnv, helper_contracts: dict[str, CompiledContract]) -> Iterator[Attack]:
    """An attacker contract with 1 ether credited, in a market holding 6 ether in escrow."""
    compiled = helper_contracts["ReentrantReceiver"]
    attacker = deploy_contract(env, compiled, env.market.address)
    listing_id = new_listing(env, price=CREDIT, period=3_600, auto=False)
    victims = [new_debit(env, listing_id, buyer=env.actors.other_buyer, periods=6).value]
    send_call(env, env.actors.stranger, attacker.functions.buy(listing_id, 1), value=CREDIT,
              abi=compiled.abi)
    own = env.market.debit_count()
    assert env.market.debit(own).buyer == attacker.address
    send_call(env, env.actors.stranger, attacker.functions.cancel(own), abi=compiled.abi)
    assert env.market.balance_of(attacker.address) == CREDIT
    assert env.market.contract_balance() == 7 * CREDIT
    accounts = [attacker.address, env.actors.other_buyer.address, env.actors.owner.address]
    yield Attack(attacker, compiled.abi, [*victims, own], accounts)


def _withdraw_as(env: ChainEnv, attack: Attack, mode: int) -> object:
    send_call(env, env.actors.stranger, attack.attacker.functions.setMode(mode), abi=attack.abi)
    return send_call(env, env.actors.stranger, attack.attacker.functions.withdraw(),
                     abi=attack.abi)


def test_withdraw_revertsWhen_receiverReentersAndBubbles(env: ChainEnv, attack: Attack) -> None:
    with pytest.raises(ReentrancyGuardReentrantCall) as e:
        _withdraw_as(env, attack, BUBBLE)
    assert e.value.fields == {}
    assert eth_balance(env, attack.attacker.address) == 0
    assert env.market.balance_of(attack.attacker.address) == CREDIT
    assert env.market.contract_balance() == 7 * CREDIT
    assert_escrow_invariant(env, attack.debits, attack.accounts)


def test_withdraw_paysOnceWhen_receiverSwallowsReentry(env: ChainEnv, attack: Attack) -> None:
    receipt = _withdraw_as(env, attack, SWALLOW)
    assert eth_balance(env, attack.attacker.address) == CREDIT
    assert attack.attacker.functions.reentries().call() == 1
    assert attack.attacker.functions.reentriesSucceeded().call() == 0
    assert env.market.balance_of(attack.attacker.address) == 0
    assert env.market.contract_balance() == 6 * CREDIT
    logs = receipt["logs"]  # type: ignore[index]
    withdrawn = [env.market.decoder.decode(log) for log in logs]
    assert [(type(e), e.account, e.amount) for e in withdrawn] == [  # type: ignore[union-attr]
        (Withdrawn, attack.attacker.address, CREDIT),
    ]
    assert_escrow_invariant(env, attack.debits, attack.accounts)


def test_withdraw_revertsWhen_receiverRefusesPayment(env: ChainEnv, attack: Attack) -> None:
    with pytest.raises(FailedCall) as e:
        _withdraw_as(env, attack, REFUSE)
    assert e.value.fields == {}
    assert env.market.balance_of(attack.attacker.address) == CREDIT
    assert env.market.contract_balance() == 7 * CREDIT
    assert_escrow_invariant(env, attack.debits, attack.accounts)
