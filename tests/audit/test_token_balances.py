"""The balance invariant per asset (issue 12) on a real chain (eth-tester): a market with an
ether listing and two listings priced in an ERC20Permit stablecoin, with token requests,
a consent, a claim, a cancel and withdrawals in both assets. An honest history audits
clean, and every forged imbalance is found and names the token."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract

from marketplace.audit.balances import NAME, check_balances
from marketplace.audit.chain_view import ChainView, PinnedMarket
from marketplace.audit.history import MarketHistory
from marketplace.audit.report import CheckRun
from marketplace.audit.transitions import check_transitions
from marketplace.chain.events import MarketEvent, Withdrawn
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import ETHER, Committee, Wei
from tests.chain.conftest import CompiledContract, helper_contracts

__all__ = ["helper_contracts"]  # the session fixture compiling tests/chain/contracts

GAS_MONEY = 10**18
ETH_PRICE = 10**15
PRICE = 5_000_000  # 5 TUSD (6 decimals)
HOUR = 3_600
KEY = b"\x09" * 32


@dataclass
class TokenMarket:
    w3: Web3
    market: MarketClient
    token: Contract
    owner: LocalAccount
    buyer: LocalAccount
    #: debits: token auto (claimed), token consent-only (cancelled), token consented, ether
    debits: list[int]

    def history(self) -> MarketHistory:
        head = self.w3.eth.block_number
        return MarketHistory.from_events(self.market.events().read(0, head), head)

    def view(self) -> PinnedMarket:
        return PinnedMarket(self.market, self.w3.eth.block_number)

    def send(self, fn: Any) -> None:
        tx_hash = fn.transact({"from": self.w3.eth.accounts[0]})
        assert self.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1


@pytest.fixture
def token_market(helper_contracts: dict[str, CompiledContract]) -> Iterator[TokenMarket]:
    w3 = connect()
    dev = DevChain(w3)
    deployer, owner, buyer, *nodes = (Account.create() for _ in range(6))
    for account in (deployer, owner, buyer, *nodes):
        dev.fund(account.address, GAS_MONEY)
    committee = Committee(b"\x01" * 32, 2, tuple(n.address for n in nodes),
                          tuple(bytes([i]) * 32 for i in (2, 3, 4)))
    market = MarketClient.deploy_dealt(w3, deployer, committee, nodes).value
    compiled = helper_contracts["PermitToken"]
    factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor().transact({"from": w3.eth.accounts[0]}))
    token = w3.eth.contract(address=receipt["contractAddress"], abi=compiled.abi)
    tm = TokenMarket(w3, market, token, owner, buyer, [])
    tm.send(token.functions.mint(buyer.address, 100 * PRICE))

    def listing(auto: bool, asset: str, price: int) -> int:
        return market.create_listing(owner, price_per_period=price, period_seconds=HOUR,
                                     auto_approve=auto, asset=asset).value

    auto, consent, ether = (listing(True, token.address, PRICE),
                            listing(False, token.address, PRICE),
                            listing(True, ETHER, ETH_PRICE))
    market.approve_payment(buyer, token.address, 7 * PRICE)

    def request(listing_id: int, periods: int) -> int:
        return market.request_debit(buyer, listing_id, periods=periods, buyer_key=KEY).value

    tm.debits = [request(auto, 2), request(consent, 3), request(consent, 2),
                 request(ether, 2)]
    market.cancel(buyer, tm.debits[1])
    market.consent(owner, tm.debits[2])
    dev.advance(HOUR // 2)
    market.claim(owner, [tm.debits[0], tm.debits[2], tm.debits[3]])
    market.withdraw(owner, token.address)
    market.withdraw(buyer, token.address)  # the cancelled debit's refund
    dev.advance(HOUR // 3)
    market.claim(owner, [tm.debits[0]])  # credited, not withdrawn
    yield tm


def audit(view: ChainView, history: MarketHistory) -> CheckRun:
    run = check_balances(history, view)
    assert run.name == NAME
    return run


def test_tokenMarket_auditsClean_perAsset(token_market: TokenMarket) -> None:
    tm = token_market
    token = tm.token.address
    held = tm.market.contract_balance(token)
    # escrow left: debit 1 partly claimed, debit 3 partly claimed; the owner's last claim
    assert 0 < held < 7 * PRICE
    assert tm.market.balance_of(tm.owner.address, token) > 0
    history, view = tm.history(), tm.view()
    run = audit(view, history)
    assert run.violations == [] and run.warnings == []
    # ether: owner's account + holdings; token: owner's and buyer's accounts + holdings;
    # four debits
    assert run.checked == 2 + 3 + 4 and run.failed == 0
    transitions = check_transitions(history, view)
    assert transitions.violations == [] and transitions.checked > 0


def test_tokenMarket_drainedToken_isAViolationNamingTheToken(token_market: TokenMarket) -> None:
    """The market holds a unit less of the token than it owes (a token that burns from its
    holders, or a bug paying out twice): ether still adds up, the token does not."""
    tm = token_market
    real = tm.view()

    class Drained:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def contract_balance(self, asset: str = ETHER) -> Wei:
            held = real.contract_balance(asset)
            return Wei(held - 1 if asset == tm.token.address else held)

    run = audit(Drained(), tm.history())  # type: ignore[arg-type]
    assert [(v.kind, v.fields) for v in run.violations] == [
        ("balance_invariant", {"asset": tm.token.address})]
    assert f"units of {tm.token.address}" in run.violations[0].detail


def test_tokenMarket_withdrawalRelabelledAsEther_isFound(token_market: TokenMarket) -> None:
    """A history whose token withdrawal claims to have paid out ether: the ether ledger
    pays out what was never credited in ether, the token ledger misses a withdrawal."""
    tm = token_market
    history = tm.history()
    forged: list[MarketEvent] = [
        dataclasses.replace(e, asset=ETHER)
        if isinstance(e, Withdrawn) and e.account == tm.buyer.address else e
        for e in history.events
    ]
    run = audit(tm.view(), MarketHistory.from_events(forged, history.head))
    kinds = [(v.kind, v.fields.get("asset", ETHER)) for v in run.violations]
    assert kinds == [
        ("payment_mismatch", ETHER),  # withdrew ether never credited
        ("balance_mismatch", ETHER),  # events credit the buyer a negative ether balance
        ("balance_mismatch", tm.token.address),  # the refund still credited in events
        ("balance_invariant", tm.token.address),  # paid out less than the token left
    ]


def test_tokensSentStraightToTheMarket_areASurplusWarning(token_market: TokenMarket) -> None:
    tm = token_market
    tm.send(tm.token.functions.mint(tm.market.address, 1))
    run = audit(tm.view(), tm.history())
    assert run.violations == []
    assert [(w.kind, w.fields) for w in run.warnings] == [
        ("balance_surplus", {"surplus": 1, "asset": tm.token.address})]
