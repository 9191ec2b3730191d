"""Token-priced listings through the application layer (issue 12, item 3): an owner
lists in an ERC-20, a buyer pays with a permit (one transaction) or approve + request
(a token without permit, USDT-style), never more than the quoted total, within a
consent deadline; payouts are per asset."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract

from marketplace.app.buyer import InsufficientTokens, PriceAboveLimit, PriceChanged
from marketplace.app.owner import MixedAssets, OwnerApp
from marketplace.chain.assets import ETHER_INFO, shown_asset
from marketplace.chain.errors import ConsentDeadlinePassed, NotDebitBuyer
from marketplace.chain.tokens import asset_info, token_balance
from marketplace.chain.types import ETHER, DebitState
from marketplace.localnet import LocalNetwork
from tests.app.conftest import buyer_app
from tests.chain.conftest import CompiledContract, helper_contracts  # noqa: F401 - fixture

PRICE = 5_000_000  # 5 TUSD (6 decimals)
HOUR, DAY = 3_600, 86_400


def send(w3: Web3, sender: LocalAccount, fn: Any) -> Any:
    tx = fn.build_transaction({"from": sender.address,
                               "nonce": w3.eth.get_transaction_count(sender.address)})
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction))
    assert receipt["status"] == 1
    return receipt


def deploy(net: LocalNetwork, compiled: CompiledContract) -> Contract:
    w3, deployer = net.market.w3, net.account()
    factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    address = send(w3, deployer, factory.constructor())["contractAddress"]
    return w3.eth.contract(address=address, abi=compiled.abi)


@pytest.fixture(scope="module")
def tusd(net: LocalNetwork, helper_contracts: dict[str, CompiledContract]) -> Contract:  # noqa: F811
    return deploy(net, helper_contracts["PermitToken"])


@pytest.fixture(scope="module")
def usdt(net: LocalNetwork, helper_contracts: dict[str, CompiledContract]) -> Contract:  # noqa: F811
    return deploy(net, helper_contracts["NoReturnToken"])


def funded(net: LocalNetwork, token: Contract, amount: int) -> LocalAccount:
    wallet = net.account()
    send(net.market.w3, wallet, token.functions.mint(wallet.address, amount))
    return wallet


def test_asset_info_reads_symbol_and_decimals_and_refuses_what_it_cannot_show(
    net: LocalNetwork, tusd: Contract, usdt: Contract
) -> None:
    w3 = net.market.w3
    assert asset_info(w3, None) == ETHER_INFO and asset_info(w3, ETHER) == ETHER_INFO
    info = asset_info(w3, tusd.address)
    assert (info.symbol, info.decimals, info.address) == ("TUSD", 6, tusd.address)
    bare = asset_info(w3, usdt.address)  # no symbol() or decimals(): base units only
    assert (bare.symbol, bare.decimals) == (None, 0)


def test_a_token_listing_paid_with_a_permit_in_one_transaction(
    net: LocalNetwork, owner: OwnerApp, tusd: Contract
) -> None:
    created = owner.create_listing(PRICE, DAY, True, None, "", asset=tusd.address)
    assert created.asset == tusd.address
    assert net.market.listing(created.listing_id).asset == tusd.address
    wallet = funded(net, tusd, 10 * PRICE)
    buyer = buyer_app(net, wallet)
    requested = buyer.request(created.listing_id, 2, None, max_price_wei=2 * PRICE)
    assert requested.payment == "permit"
    assert requested.quote.asset == tusd.address and requested.quote.total_wei == 2 * PRICE
    assert requested.debit.amount == 2 * PRICE and requested.debit.state is DebitState.ACTIVE
    assert token_balance(net.market.w3, tusd.address, wallet.address) == 8 * PRICE
    assert net.market.w3.eth.get_transaction_count(wallet.address) == 2  # the mint, the request


def test_a_token_without_permit_is_paid_by_approving_exactly_the_total(
    net: LocalNetwork, owner: OwnerApp, usdt: Contract
) -> None:
    listing = owner.create_listing(7, DAY, True, None, "", asset=usdt.address).listing_id
    wallet = funded(net, usdt, 100)
    # a left-over allowance (USDT refuses non-zero to non-zero: reset to 0 first)
    send(net.market.w3, wallet, usdt.functions.approve(net.market.address, 1))
    requested = buyer_app(net, wallet).request(listing, 3, None)
    assert requested.payment == "approve" and requested.debit.amount == 21
    assert int(usdt.functions.balanceOf(wallet.address).call()) == 79
    assert int(usdt.functions.allowance(wallet.address, net.market.address).call()) == 0


def test_a_token_price_raised_after_the_quote_cannot_pull_more(
    net: LocalNetwork, owner: OwnerApp, usdt: Contract
) -> None:
    """The approval is exactly the quoted total: a price raised between the quote and
    the request makes the pull fail (PriceChanged), it never takes the new price."""
    listing = owner.create_listing(7, DAY, True, None, "", asset=usdt.address).listing_id
    wallet = funded(net, usdt, 100)

    def raise_price(_: object) -> None:
        net.market.update_listing(owner.wallet, listing, price_per_period=9,
                                  auto_approve=True, open=True)

    with pytest.raises(PriceChanged) as e:
        buyer_app(net, wallet).request(listing, 2, None, on_quote=raise_price)
    assert (e.value.seen, e.value.now, e.value.asset) == (7, 9, usdt.address)
    assert int(usdt.functions.balanceOf(wallet.address).call()) == 100


def test_max_price_and_the_buyers_token_balance_are_checked_before_any_transaction(
    net: LocalNetwork, owner: OwnerApp, tusd: Contract
) -> None:
    listing = owner.create_listing(PRICE, DAY, True, None, "", asset=tusd.address).listing_id
    wallet = funded(net, tusd, PRICE)
    buyer = buyer_app(net, wallet)
    with pytest.raises(PriceAboveLimit) as limit:
        buyer.request(listing, 2, None, max_price_wei=2 * PRICE - 1)
    assert (limit.value.total, limit.value.asset) == (2 * PRICE, tusd.address)
    with pytest.raises(InsufficientTokens) as poor:
        buyer.request(listing, 2, None)
    assert (poor.value.balance, poor.value.total) == (PRICE, 2 * PRICE)
    assert net.market.w3.eth.get_transaction_count(wallet.address) == 1  # only the mint


def test_consent_within_bounds_the_owners_consent_and_cancel_refunds_in_the_token(
    net: LocalNetwork, owner: OwnerApp, tusd: Contract
) -> None:
    listing = owner.create_listing(PRICE, DAY, False, None, "", asset=tusd.address).listing_id
    wallet = funded(net, tusd, PRICE)
    buyer = buyer_app(net, wallet)
    requested = buyer.request(listing, 1, None, consent_within=HOUR)
    assert requested.consent_deadline >= net.dev.now() + HOUR - 60
    net.dev.advance(HOUR + 1)
    with pytest.raises(ConsentDeadlinePassed):
        owner.consent(requested.debit.debit_id)
    assert buyer.cancel(requested.debit.debit_id).debit.state is DebitState.CANCELLED
    assert net.market.balance_of(wallet.address, tusd.address) == PRICE
    paid = buyer.withdraw(tusd.address)
    assert (paid.amount, paid.balance, paid.asset) == (PRICE, 0, tusd.address)
    assert token_balance(net.market.w3, tusd.address, wallet.address) == PRICE


def test_owner_claims_per_asset_and_withdraws_the_token(
    net: LocalNetwork, owner: OwnerApp, tusd: Contract
) -> None:
    token_listing = owner.create_listing(PRICE, HOUR, True, None, "",
                                         asset=tusd.address).listing_id
    ether_listing = owner.create_listing(10**15, HOUR, True, None, "").listing_id
    token_debit = buyer_app(net, funded(net, tusd, PRICE)).request(token_listing, 1, None)
    ether_debit = buyer_app(net).request(ether_listing, 1, None)
    net.dev.advance(HOUR + 1)
    ids = [token_debit.debit.debit_id, ether_debit.debit.debit_id]
    with pytest.raises(MixedAssets):
        owner.claim(ids)
    claimed = owner.claim(ids[:1])
    assert (claimed.amount, claimed.balance, claimed.asset) == (PRICE, PRICE, tusd.address)
    paid = owner.withdraw(tusd.address)
    assert (paid.amount, paid.asset) == (PRICE, tusd.address)
    assert token_balance(net.market.w3, tusd.address, owner.address) == PRICE
    with pytest.raises(NotDebitBuyer):  # the debit stays the buyer's
        buyer_app(net).cancel(token_debit.debit.debit_id)


@pytest.mark.parametrize(("symbol", "decimals"), [
    ("USD\nerror: forged", 6), ("\x1b[2JUSD", 6), ("ETH", 18), ("gwei", 9), ("", 6),
    ("A" * 17, 6), (None, 6), ("USDC", 37), ("USDC", None), (b"MKR", 18),
])
def test_a_token_symbol_that_could_forge_output_or_pass_for_ether_is_not_used(
    symbol: object, decimals: object
) -> None:
    shown = shown_asset(ETHER.replace("0x00", "0x11", 1), symbol, decimals)
    assert (shown.symbol, shown.decimals) == (None, 0)
    assert shown_asset("0x" + "11" * 20, "USDC.e", 6).symbol == "USDC.e"
