"""Ether forced into the market on a real chain (eth-tester): a contract created with
value whose init code is `PUSH20 <market> SELFDESTRUCT` (0x73 <address> 0xff) sends its
balance to the market without calling it; under cancun a SELFDESTRUCT in the creating
transaction still moves the balance."""

from __future__ import annotations

from eth_account import Account

from marketplace.audit.balances import NAME, check_balances
from marketplace.audit.chain_view import PinnedMarket
from marketplace.audit.history import MarketHistory
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import Committee
from tests.audit.forge import force_ether

ETHER = 10**18
PRICE = 10**15


def test_one_wei_forced_in_is_a_warning_on_the_real_contract() -> None:
    """Issue 9 item 8: failed before (`balance_invariant`, exit 1 for every later audit)."""
    w3 = connect()
    dev = DevChain(w3)
    deployer, owner, buyer, *nodes = (Account.create() for _ in range(6))
    for account in (deployer, owner, buyer, *nodes):
        dev.fund(account.address, ETHER)
    committee = Committee(b"\x01" * 32, 2, tuple(n.address for n in nodes),
                          tuple(bytes([i]) * 32 for i in (2, 3, 4)))
    market = MarketClient.deploy_dealt(w3, deployer, committee, nodes).value
    listing = market.create_listing(owner, price_per_period=PRICE, period_seconds=3600,
                                    auto_approve=True).value
    market.request_debit(buyer, listing, periods=2, buyer_key=b"\x09" * 32)

    def audit() -> tuple[set[str], list[str], int]:
        head = w3.eth.block_number
        run = check_balances(MarketHistory.from_events(market.events().read(0, head), head),
                             PinnedMarket(market, head))
        assert run.name == NAME
        return {v.kind for v in run.violations}, [w.kind for w in run.warnings], run.checked

    assert audit()[:2] == (set(), [])
    force_ether(w3, market.address, 1)
    assert market.contract_balance() == 2 * PRICE + 1
    kinds, warnings, checked = audit()
    assert kinds == set() and warnings == ["balance_surplus"] and checked > 0
