"""Listings priced in ERC-20 tokens (DESIGN §12): exact pulls checked by balance
difference, EIP-2612 permits (front-run tolerant), per-asset escrow and withdrawals, and
every token behaviour we know of: standard, USDT-style no return value, returns false,
fee-on-transfer (refused) and a token that re-enters the market on payout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3.contract import Contract

from marketplace.chain.errors import (
    ContractRevert,
    NotAToken,
    NotATokenListing,
    NothingToWithdraw,
    PermitNotApplied,
    ReentrancyGuardReentrantCall,
    SafeERC20FailedOperation,
    TokenTransferMismatch,
    WrongPayment,
)
from marketplace.chain.events import DebitRequested, ListingCreated, MarketEvent, Withdrawn
from marketplace.chain.tokens import Permit, sign_permit
from marketplace.chain.types import ETHER, DebitState, Sent
from tests.chain.conftest import (
    BUYER_KEY,
    PURPOSE,
    TERMS,
    ChainEnv,
    CompiledContract,
    deploy_contract,
    new_debit,
    new_listing,
    receipt_of,
    send_call,
)

PRICE = 5_000_000  # 5 TUSD (6 decimals)
PERIOD = 3_600
MINTED = 1_000 * PRICE


@dataclass
class Tokens:
    compiled: dict[str, CompiledContract]
    permit: Contract


@pytest.fixture
def tokens(env: ChainEnv, helper_contracts: dict[str, CompiledContract]) -> Tokens:
    permit = deploy_contract(env, helper_contracts["PermitToken"])
    for who in (env.actors.buyer, env.actors.other_buyer):
        send_call(env, env.actors.deployer, permit.functions.mint(who.address, MINTED))
    return Tokens(helper_contracts, permit)


def market_events(env: ChainEnv, sent: Sent[Any]) -> list[MarketEvent]:
    """The market's own events of a transaction (the token's Transfer logs skipped)."""
    logs = receipt_of(env, sent)["logs"]
    return [env.market.decoder.decode(log) for log in logs
            if log["address"] == env.market.address]


def token_listing(env: ChainEnv, token: Contract, *, auto: bool = True,
                  price: int = PRICE) -> int:
    return env.market.create_listing(
        env.actors.owner, price_per_period=price, period_seconds=PERIOD, auto_approve=auto,
        terms_hash=TERMS, metadata_uri="ipfs://token-listing", asset=token.address,
    ).value


def mint_and_approve(env: ChainEnv, token: Contract, buyer: LocalAccount, amount: int) -> None:
    send_call(env, env.actors.deployer, token.functions.mint(buyer.address, amount))
    send_call(env, buyer, token.functions.approve(env.market.address, amount))


def token_balance(token: Contract, address: str) -> int:
    return int(token.functions.balanceOf(address).call())


def test_createListing_namesItsAsset(env: ChainEnv, tokens: Tokens) -> None:
    sent = env.market.create_listing(
        env.actors.owner, price_per_period=PRICE, period_seconds=PERIOD, auto_approve=True,
        asset=tokens.permit.address)
    (event,) = market_events(env, sent)
    assert isinstance(event, ListingCreated)
    assert event.asset == tokens.permit.address
    assert env.market.listing(sent.value).asset == tokens.permit.address
    assert env.market.listing(new_listing(env)).asset == ETHER


def test_createListing_revertsWhen_assetHasNoCode(env: ChainEnv) -> None:
    with pytest.raises(NotAToken) as e:
        env.market.create_listing(env.actors.owner, price_per_period=1, period_seconds=1,
                                  auto_approve=True, asset=env.actors.stranger.address)
    assert e.value.fields == {"asset": env.actors.stranger.address}


def test_requestDebit_pullsExactAmountOfStandardToken(env: ChainEnv, tokens: Tokens) -> None:
    listing_id = token_listing(env, tokens.permit)
    buyer = env.actors.buyer
    env.market.approve_payment(buyer, tokens.permit.address, 3 * PRICE)
    sent = new_debit(env, listing_id, periods=3)
    assert token_balance(tokens.permit, env.market.address) == 3 * PRICE
    assert token_balance(tokens.permit, buyer.address) == MINTED - 3 * PRICE
    assert env.market.contract_balance(tokens.permit.address) == 3 * PRICE
    assert env.market.contract_balance() == 0
    assert int(tokens.permit.functions.allowance(buyer.address, env.market.address).call()) == 0
    assert [type(e) for e in market_events(env, sent)] == [DebitRequested]
    debit = env.market.debit(sent.value)
    assert (debit.state, debit.amount) == (DebitState.ACTIVE, 3 * PRICE)


def test_requestDebit_revertsWhen_etherSentToTokenListing(env: ChainEnv, tokens: Tokens) -> None:
    listing_id = token_listing(env, tokens.permit)
    env.market.approve_payment(env.actors.buyer, tokens.permit.address, PRICE)
    with pytest.raises(WrongPayment) as e:
        env.market.request_debit(env.actors.buyer, listing_id, periods=1, buyer_key=BUYER_KEY,
                                 value=PRICE)
    assert e.value.fields == {"expected": 0, "sent": PRICE}


def test_requestDebit_revertsWhen_notApproved(env: ChainEnv, tokens: Tokens) -> None:
    listing_id = token_listing(env, tokens.permit)
    with pytest.raises(ContractRevert) as e:
        new_debit(env, listing_id, periods=1)
    # the token's own error, ERC20InsufficientAllowance(market, 0, PRICE), bubbled up
    selector = keccak(b"ERC20InsufficientAllowance(address,uint256,uint256)")[:4]
    assert bytes(e.value.fields["data"])[:4] == selector
    assert env.market.debit_count() == 0


def test_tokenEscrow_claimCancelWithdraw_perAsset(env: ChainEnv, tokens: Tokens) -> None:
    """Ether and token escrow side by side: claims, refunds and withdrawals each stay in
    their own asset."""
    owner, buyer = env.actors.owner, env.actors.buyer
    token = tokens.permit.address
    auto, manual = token_listing(env, tokens.permit), token_listing(env, tokens.permit,
                                                                   auto=False)
    ether_listing = new_listing(env, price=PRICE, period=PERIOD)
    env.market.approve_payment(buyer, token, 4 * PRICE)
    streamed = new_debit(env, auto, periods=2).value
    cancelled = new_debit(env, manual, periods=2).value
    ether_debit = new_debit(env, ether_listing, periods=2).value
    env.market.cancel(buyer, cancelled)
    assert env.market.balance_of(buyer.address, token) == 2 * PRICE
    assert env.market.balance_of(buyer.address) == 0
    env.dev.advance(2 * PERIOD)
    assert env.market.claim(owner, [streamed, ether_debit]).value == 4 * PRICE
    assert env.market.balance_of(owner.address, token) == 2 * PRICE
    assert env.market.balance_of(owner.address) == 2 * PRICE
    paid = env.market.withdraw(owner, token)
    (event,) = [e for e in market_events(env, paid) if isinstance(e, Withdrawn)]
    assert (event.account, event.asset, event.amount) == (owner.address, token, 2 * PRICE)
    assert token_balance(tokens.permit, owner.address) == 2 * PRICE
    assert env.market.balance_of(owner.address) == 2 * PRICE  # ether untouched
    env.market.withdraw(buyer, token)
    assert token_balance(tokens.permit, buyer.address) == MINTED - 2 * PRICE
    assert env.market.contract_balance(token) == 0
    with pytest.raises(NothingToWithdraw):
        env.market.withdraw(buyer, token)


def test_requestDebit_acceptsTokenReturningNothing(
    env: ChainEnv, tokens: Tokens
) -> None:
    """USDT-style tokens return no bool; SafeERC20 accepts them (a plain IERC20 call
    would fail to decode the empty return data)."""
    token = deploy_contract(env, tokens.compiled["NoReturnToken"])
    listing_id = token_listing(env, token, auto=False)
    mint_and_approve(env, token, env.actors.buyer, 2 * PRICE)
    debit_id = new_debit(env, listing_id, periods=2).value
    assert token_balance(token, env.market.address) == 2 * PRICE
    env.market.cancel(env.actors.buyer, debit_id)
    assert env.market.withdraw(env.actors.buyer, token.address).value == 2 * PRICE
    assert token_balance(token, env.actors.buyer.address) == 2 * PRICE
    assert token_balance(token, env.market.address) == 0


def test_requestDebit_revertsWhen_tokenReturnsFalse(env: ChainEnv, tokens: Tokens) -> None:
    """A token that answers `false` instead of reverting must not open an unpaid debit."""
    token = deploy_contract(env, tokens.compiled["FalseToken"])
    listing_id = token_listing(env, token)
    with pytest.raises(SafeERC20FailedOperation) as e:
        new_debit(env, listing_id, periods=1)
    assert e.value.fields == {"token": token.address}
    assert env.market.debit_count() == 0


def test_requestDebit_revertsWhen_feeOnTransferToken(env: ChainEnv, tokens: Tokens) -> None:
    """A 1% fee-on-transfer token delivers 99% of the price: refused by balance
    difference, so the escrow can never owe more than it holds."""
    token = deploy_contract(env, tokens.compiled["FeeToken"])
    listing_id = token_listing(env, token)
    mint_and_approve(env, token, env.actors.buyer, 2 * PRICE)
    with pytest.raises(TokenTransferMismatch) as e:
        new_debit(env, listing_id, periods=2)
    assert e.value.fields == {"asset": token.address, "expected": 2 * PRICE,
                              "received": 2 * PRICE - 2 * PRICE // 100}
    assert token_balance(token, env.market.address) == 0
    assert env.market.debit_count() == 0


@pytest.fixture
def reentrant(env: ChainEnv, tokens: Tokens) -> Contract:
    """A token that is its own buyer with PRICE credited (a cancelled request), in a
    market holding 4 * PRICE of it for another buyer's debit."""
    token = deploy_contract(env, tokens.compiled["ReentrantToken"], env.market.address)
    listing_id = token_listing(env, token, auto=False)
    mint_and_approve(env, token, env.actors.other_buyer, 4 * PRICE)
    new_debit(env, listing_id, buyer=env.actors.other_buyer, periods=4)
    send_call(env, env.actors.deployer, token.functions.mint(token.address, PRICE))
    send_call(env, env.actors.stranger, token.functions.buy(listing_id, 1, PRICE),
              abi=token.abi)
    own = env.market.debit_count()
    send_call(env, env.actors.stranger, token.functions.cancel(own), abi=token.abi)
    assert env.market.balance_of(token.address, token.address) == PRICE
    assert token_balance(token, env.market.address) == 5 * PRICE
    return token


def test_withdraw_revertsWhen_tokenReentersAndBubbles(env: ChainEnv, reentrant: Contract) -> None:
    send_call(env, env.actors.stranger, reentrant.functions.setBubble(True), abi=reentrant.abi)
    with pytest.raises(ReentrancyGuardReentrantCall):
        send_call(env, env.actors.stranger, reentrant.functions.withdraw(), abi=reentrant.abi)
    assert env.market.balance_of(reentrant.address, reentrant.address) == PRICE
    assert token_balance(reentrant, env.market.address) == 5 * PRICE


def test_withdraw_paysOnceWhen_tokenReentersAndSwallows(
    env: ChainEnv, reentrant: Contract
) -> None:
    send_call(env, env.actors.stranger, reentrant.functions.withdraw(), abi=reentrant.abi)
    assert reentrant.functions.reentries().call() == 1
    assert reentrant.functions.reentriesSucceeded().call() == 0
    assert env.market.balance_of(reentrant.address, reentrant.address) == 0
    assert token_balance(reentrant, env.market.address) == 4 * PRICE
    assert token_balance(reentrant, reentrant.address) == PRICE


# ---------------------------------------------------------------- permit


def _permit(env: ChainEnv, tokens: Tokens, buyer: LocalAccount, value: int) -> Permit:
    deadline = env.dev.now() + 3_600
    return sign_permit(env.w3, tokens.permit.address, buyer, env.market.address, value, deadline)


def test_requestDebitWithPermit_approvesAndPaysInOneTransaction(
    env: ChainEnv, tokens: Tokens
) -> None:
    listing_id = token_listing(env, tokens.permit, auto=False)
    buyer = env.actors.buyer
    permit = _permit(env, tokens, buyer, 2 * PRICE)
    sent = env.market.request_debit_with_permit(
        buyer, listing_id, permit, periods=2, buyer_key=BUYER_KEY, purpose_hash=PURPOSE)
    assert token_balance(tokens.permit, env.market.address) == 2 * PRICE
    assert int(tokens.permit.functions.nonces(buyer.address).call()) == 1
    assert int(tokens.permit.functions.allowance(buyer.address, env.market.address).call()) == 0
    (event,) = [e for e in market_events(env, sent) if isinstance(e, DebitRequested)]
    assert (event.debit_id, event.amount, event.buyer) == (sent.value, 2 * PRICE, buyer.address)


def test_requestDebitWithPermit_succeedsWhen_permitFrontRun(
    env: ChainEnv, tokens: Tokens
) -> None:
    """A stranger who copies the permit from the mempool and submits it first spends its
    nonce; the purchase still goes through on the allowance the permit set."""
    listing_id = token_listing(env, tokens.permit)
    buyer = env.actors.buyer
    permit = _permit(env, tokens, buyer, PRICE)
    send_call(env, env.actors.stranger, tokens.permit.functions.permit(
        buyer.address, env.market.address, PRICE, permit.deadline, permit.v, permit.r,
        permit.s))
    assert int(tokens.permit.functions.allowance(buyer.address, env.market.address).call()) \
        == PRICE
    sent = env.market.request_debit_with_permit(buyer, listing_id, permit, periods=1,
                                                buyer_key=BUYER_KEY)
    assert env.market.debit(sent.value).state is DebitState.ACTIVE
    assert token_balance(tokens.permit, env.market.address) == PRICE


def test_requestDebitWithPermit_revertsWhen_permitInvalidAndNoAllowance(
    env: ChainEnv, tokens: Tokens
) -> None:
    listing_id = token_listing(env, tokens.permit)
    buyer = env.actors.buyer
    wrong = _permit(env, tokens, env.actors.other_buyer, PRICE)  # signed by someone else
    with pytest.raises(PermitNotApplied) as e:
        env.market.request_debit_with_permit(buyer, listing_id, wrong, periods=1,
                                             buyer_key=BUYER_KEY)
    assert e.value.fields == {"asset": tokens.permit.address, "allowance": 0, "needed": PRICE}


def test_requestDebitWithPermit_revertsWhen_etherListing(env: ChainEnv, tokens: Tokens) -> None:
    listing_id = new_listing(env)
    permit = _permit(env, tokens, env.actors.buyer, PRICE)
    with pytest.raises(NotATokenListing) as e:
        env.market.request_debit_with_permit(env.actors.buyer, listing_id, permit, periods=1,
                                             buyer_key=BUYER_KEY)
    assert e.value.fields == {"listingId": listing_id}
