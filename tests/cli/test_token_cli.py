"""Token-priced listings through the CLI on anvil (issue 12, item 3): `--asset` and
`--price 5tusd` (the token's symbol and decimals), `buyer request --max-price` in the
listing's asset and `--consent-within`, amounts shown with the token's symbol, and
`owner withdraw --asset`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract

from marketplace.chain.types import DebitState
from tests.chain.conftest import CompiledContract, helper_contracts  # noqa: F401 - fixture
from tests.cli.conftest import Deployment, deploy_market

pytestmark = pytest.mark.integration

TUSD = 10**6  # 6 decimals
HOUR = 3_600


def send(w3: Web3, sender: LocalAccount, fn: Any) -> Any:
    tx = fn.build_transaction({"from": sender.address,
                               "nonce": w3.eth.get_transaction_count(sender.address)})
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction))
    assert receipt["status"] == 1
    return receipt


@dataclass
class TokenMarket:
    d: Deployment
    tusd: Contract  # OpenZeppelin ERC20Permit, symbol TUSD, 6 decimals
    bare: Contract  # USDT-style, no return values, no symbol/decimals, no permit


@pytest.fixture(scope="module")
def chain(
    anvil_url: str, tmp_path_factory: pytest.TempPathFactory,
    helper_contracts: dict[str, CompiledContract],  # noqa: F811
) -> Iterator[TokenMarket]:
    d = deploy_market(anvil_url, tmp_path_factory.mktemp("tokens"), serve=False)
    w3 = d.market.w3
    deployed = []
    for name in ("PermitToken", "NoReturnToken"):
        compiled = helper_contracts[name]
        factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
        address = send(w3, d.owner, factory.constructor())["contractAddress"]
        token = w3.eth.contract(address=address, abi=compiled.abi)
        send(w3, d.owner, token.functions.mint(d.buyer.address, 1_000 * TUSD))
        deployed.append(token)
    yield TokenMarket(d, *deployed)


def listing(chain: TokenMarket, token: Contract, price: str, *flags: str) -> int:
    result = chain.d.as_owner("owner", "create-listing", "--asset", token.address,
                              "--price", price, "--period", "1h", *flags)
    assert result.exit_code == 0, result.stderr
    return int(result.stdout)


def test_a_token_listing_takes_its_price_in_the_tokens_symbol(chain: TokenMarket) -> None:
    result = chain.d.as_owner("owner", "create-listing", "--asset", chain.tusd.address,
                              "--price", "5.25tusd", "--period", "1h", "--auto-approve")
    assert result.exit_code == 0, result.stderr
    created = chain.d.market.listing(int(result.stdout))
    assert (created.asset, created.price_per_period) == (chain.tusd.address, 5_250_000)
    assert "5.25 TUSD (5250000 base units) per 1h" in result.stderr
    shown = chain.d.as_owner("owner", "list", "--json")
    [record] = [r for r in json.loads(shown.stdout) if r["listing"] == created.listing_id]
    assert (record["asset"], record["asset_symbol"], record["asset_decimals"]) == (
        chain.tusd.address, "TUSD", 6)


@pytest.mark.parametrize(("price", "why"), [
    ("5eth", "is not an amount: give TUSD"), ("0.0000001tusd", "fraction of a base unit"),
])
def test_a_price_not_in_the_tokens_units_is_refused(
    chain: TokenMarket, price: str, why: str
) -> None:
    before = chain.d.market.listing_count()
    result = chain.d.as_owner("owner", "create-listing", "--asset", chain.tusd.address,
                              "--price", price, "--period", "1h")
    assert result.exit_code == 1 and why in result.stderr
    assert chain.d.market.listing_count() == before


@pytest.mark.parametrize("asset", ["0x1234", "tusd", "0x" + "g" * 40])
def test_an_asset_that_is_not_an_address_is_refused(chain: TokenMarket, asset: str) -> None:
    result = chain.d.as_owner("owner", "create-listing", "--asset", asset, "--price", "5",
                              "--period", "1h")
    assert result.exit_code == 1 and "is not an address" in result.stderr


def test_an_asset_without_code_is_refused_by_the_chain(chain: TokenMarket) -> None:
    result = chain.d.as_owner("owner", "create-listing", "--asset", chain.d.buyer.address,
                              "--price", "5", "--period", "1h")
    assert result.exit_code == 1 and "NotAToken" in result.stderr


def test_request_caps_the_total_in_the_listings_asset_and_pays_with_a_permit(
    chain: TokenMarket,
) -> None:
    listed = listing(chain, chain.tusd, "5tusd", "--auto-approve")
    nonce = chain.d.market.w3.eth.get_transaction_count(chain.d.buyer.address)
    refused = chain.d.as_buyer("buyer", "request", "--listing", listed, "--periods", 2,
                               "--max-price", "9.99tusd")
    assert refused.exit_code == 1
    assert ("costs 10 TUSD (10000000 base units) in total, above --max-price 9.99 TUSD "
            "(9990000 base units)") in refused.stderr
    wrong_unit = chain.d.as_buyer("buyer", "request", "--listing", listed, "--periods", 2,
                                  "--max-price", "1eth")
    assert wrong_unit.exit_code == 1 and "--max-price '1eth' is not an amount" in wrong_unit.stderr
    assert chain.d.market.w3.eth.get_transaction_count(chain.d.buyer.address) == nonce
    paid = chain.d.as_buyer("buyer", "request", "--listing", listed, "--periods", 2,
                            "--max-price", "10tusd")
    assert paid.exit_code == 0, paid.stderr
    assert "paid 10 TUSD (10000000 base units) for 2 period(s)" in paid.stderr
    assert "with a permit (one transaction)" in paid.stderr
    assert chain.d.market.w3.eth.get_transaction_count(chain.d.buyer.address) == nonce + 1
    assert chain.d.market.debit(int(paid.stdout)).amount == 10 * TUSD


def test_consent_within_sets_a_deadline_after_which_cancel_refunds_in_the_token(
    chain: TokenMarket,
) -> None:
    listed = listing(chain, chain.tusd, "1tusd")
    result = chain.d.as_buyer("buyer", "request", "--listing", listed, "--periods", 1,
                              "--consent-within", "1h")
    assert result.exit_code == 0, result.stderr
    debit = int(result.stdout)
    assert "the owner must consent by" in result.stderr
    chain.d.dev.advance(HOUR + 60)
    late = chain.d.as_owner("owner", "consent", debit)
    assert late.exit_code == 1 and "ConsentDeadlinePassed" in late.stderr
    assert chain.d.as_buyer("buyer", "cancel", debit).exit_code == 0
    held = int(chain.tusd.functions.balanceOf(chain.d.buyer.address).call())
    out = chain.d.as_buyer("buyer", "withdraw", "--asset", chain.tusd.address)
    assert out.exit_code == 0, out.stderr
    assert out.stdout.strip() == str(TUSD) and "withdrew 1 TUSD" in out.stderr
    assert int(chain.tusd.functions.balanceOf(chain.d.buyer.address).call()) == held + TUSD


def test_a_token_without_symbol_or_permit_is_priced_in_base_units_and_paid_by_approval(
    chain: TokenMarket,
) -> None:
    symbolless = chain.d.as_owner("owner", "create-listing", "--asset", chain.bare.address,
                                  "--price", "7usdt", "--period", "1h")
    assert symbolless.exit_code == 1 and "has no symbol" in symbolless.stderr
    listed = listing(chain, chain.bare, "7", "--auto-approve")
    paid = chain.d.as_buyer("buyer", "request", "--listing", listed, "--periods", 3)
    assert paid.exit_code == 0, paid.stderr
    assert "after approving exactly that amount" in paid.stderr
    debit = chain.d.market.debit(int(paid.stdout))
    assert (debit.amount, debit.state) == (21, DebitState.ACTIVE)
    chain.d.dev.advance(3 * HOUR + 60)
    claimed = chain.d.as_owner("owner", "claim", debit.debit_id)
    assert claimed.exit_code == 0, claimed.stderr
    assert claimed.stdout.strip() == "21" and f"--asset {chain.bare.address}" in claimed.stderr
    out = chain.d.as_owner("owner", "withdraw", "--asset", chain.bare.address)
    assert out.exit_code == 0 and out.stdout.strip() == "21", out.stderr
    assert int(chain.bare.functions.balanceOf(chain.d.owner.address).call()) == 21


def test_buyer_status_shows_each_debit_in_its_listings_asset(chain: TokenMarket) -> None:
    """`buyer status` reads without web3 (the light client): each debit's amount is written
    in its own listing's asset, TUSD with 6 decimals, a symbol-less token in base units,
    ether as ETH, in one table."""
    in_tusd = listing(chain, chain.tusd, "2.5tusd", "--auto-approve")
    in_bare = listing(chain, chain.bare, "3", "--auto-approve")
    ids = []
    for listed in (in_tusd, in_bare):
        paid = chain.d.as_buyer("buyer", "request", "--listing", listed, "--periods", 1)
        assert paid.exit_code == 0, paid.stderr
        ids.append(int(paid.stdout))
    shown = chain.d.as_buyer("buyer", "status", "--json")
    assert shown.exit_code == 0, shown.stderr
    records = {r["debit"]: r for r in json.loads(shown.stdout)}
    tusd, bare = records[ids[0]], records[ids[1]]
    assert (tusd["amount"], tusd["asset"], tusd["asset_symbol"], tusd["asset_decimals"]) == (
        2_500_000, chain.tusd.address, "TUSD", 6)
    assert (bare["amount"], bare["asset_symbol"], bare["asset_decimals"]) == (3, None, 0)
    one = chain.d.as_buyer("buyer", "status", ids[0])
    assert one.exit_code == 0, one.stderr
    assert "2.5 TUSD" in one.stdout and "ETH" not in one.stdout
    table = chain.d.as_buyer("buyer", "status").stdout
    assert "2.5 TUSD" in table and "3 units" in table
