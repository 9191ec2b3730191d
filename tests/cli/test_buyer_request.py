"""`datadebit buyer request` on anvil (issue 9, items 9 and 11): the buyer sees the total
before paying, pays exactly it, can cap it with --max-price, and a price raised in
between, a total above the cap or a low-order buyer key all end in one `error:` line
with no payment made.

Before the fix the command printed what it had paid only after paying, took no cap,
and read the price just before sending, so nothing bounded what the buyer paid.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import marketplace.keyrelease.buyer_key as buyer_key_module
from marketplace.chain.market import MarketClient
from marketplace.chain.types import DebitState
from tests.cli.conftest import Deployment, deploy_market, invoke

pytestmark = pytest.mark.integration

PRICE = 10**15  # 0.001 ETH
HOUR = 3600


@pytest.fixture(scope="module")
def chain(anvil_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A market on anvil; no gateways are needed to pay."""
    yield deploy_market(anvil_url, tmp_path_factory.mktemp("request"), serve=False)


def _listing(d: Deployment, price: int = PRICE) -> int:
    result = d.as_owner(
        "owner", "create-listing", "--price", price, "--period", HOUR, "--auto-approve"
    )
    assert result.exit_code == 0, result.stderr
    return int(result.stdout)


def _sent_nothing(d: Deployment, nonce: int, debits: int) -> bool:
    return (d.market.w3.eth.get_transaction_count(d.buyer.address), d.market.debit_count()) == (
        nonce, debits
    )


def _before(d: Deployment) -> tuple[int, int]:
    return d.market.w3.eth.get_transaction_count(d.buyer.address), d.market.debit_count()


def test_the_total_is_shown_before_paying_and_is_what_is_paid(chain: Deployment) -> None:
    listing = _listing(chain)
    result = chain.as_buyer("buyer", "request", "--listing", listing, "--periods", 3)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "total: 0.003 ETH (3000000000000000 wei) = 3 period(s) x 0.001 ETH "
        f"(1000000000000000 wei) (listing {listing})"
    )
    assert lines[1].startswith("paid 0.003 ETH (3000000000000000 wei)")
    record = chain.market.debit(int(result.stdout))
    assert (record.state, record.amount) == (DebitState.ACTIVE, 3 * PRICE)


@pytest.mark.parametrize(
    "cap", ["0.003eth", "0.0030 ETH", "3000000gwei", "3000000000000000wei", "3000000000000000",
            "1eth"]
)
def test_max_price_at_or_above_the_total_pays(chain: Deployment, cap: str) -> None:
    listing = _listing(chain)
    result = chain.as_buyer(
        "buyer", "request", "--listing", listing, "--periods", 3, "--max-price", cap
    )
    assert result.exit_code == 0, result.stderr
    assert chain.market.debit(int(result.stdout)).amount == 3 * PRICE


@pytest.mark.parametrize(
    "cap", ["0.002999999999999999eth", "2999999999999999wei", "2999999999999999", "0", "1"]
)
def test_a_total_above_max_price_is_refused_before_any_transaction(
    chain: Deployment, cap: str
) -> None:
    listing = _listing(chain)
    before = _before(chain)
    result = chain.as_buyer(
        "buyer", "request", "--listing", listing, "--periods", 3, "--max-price", cap
    )
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"error: listing {listing} costs 0.003 ETH (3000000000000000 wei) in total, "
        "above --max-price "
    )
    assert result.stderr.rstrip().endswith("nothing was paid")
    assert _sent_nothing(chain, *before)


@pytest.mark.parametrize(
    "cap", ["abc", "-1", "0.0000000000000000001eth", "1e18", "0x10", "1.", "10 gwe", "",
            "0.003"]
)
def test_a_malformed_max_price_is_refused(chain: Deployment, cap: str) -> None:
    before = _before(chain)
    result = chain.as_buyer("buyer", "request", "--listing", 1, "--periods", 1, "--max-price", cap)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --max-price ")
    assert "is not an amount" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert _sent_nothing(chain, *before)


def test_a_price_raised_while_paying_is_a_clear_error_and_nothing_is_paid(
    chain: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner doubles the price after the buyer's read, before the payment: the exact
    total the buyer saw no longer matches, the contract refuses it, and the error says
    why instead of a bare WrongPayment."""
    listing = _listing(chain)
    pay = MarketClient.request_debit

    def raise_price_first(self: MarketClient, *args: Any, **kwargs: Any) -> Any:
        self.update_listing(
            chain.owner, listing, price_per_period=2 * PRICE, auto_approve=True, open=True
        )
        return pay(self, *args, **kwargs)

    monkeypatch.setattr(MarketClient, "request_debit", raise_price_first)
    _, debits = _before(chain)
    balance = chain.market.w3.eth.get_balance(chain.buyer.address)
    result = chain.as_buyer("buyer", "request", "--listing", listing, "--periods", 3)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith("total: 0.003 ETH")
    assert result.stderr.splitlines()[-1] == (
        f"error: listing {listing}'s price changed from 0.001 ETH (1000000000000000 wei) to "
        "0.002 ETH (2000000000000000 wei) per period while paying; the payment was refused "
        "and nothing was paid; run the command again to see the new total"
    )
    assert chain.market.debit_count() == debits
    assert chain.market.w3.eth.get_balance(chain.buyer.address) == balance


def test_a_low_order_buyer_key_is_refused_before_any_transaction(
    chain: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the wallet's derivation ever to give a low-order X25519 key (here: forced to
    u = 1), the command stops with one error line and sends nothing: the gateway could
    never seal a share to it, so the payment would buy nothing. u = 1, not 0: the
    contract itself refuses an all-zero key, but took this one before the fix."""
    listing = _listing(chain)
    before = _before(chain)
    u_one = (1).to_bytes(32, "little")
    monkeypatch.setattr(buyer_key_module.sodium, "crypto_scalarmult_base", lambda _: u_one)
    result = chain.as_buyer("buyer", "request", "--listing", listing, "--periods", 1)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "error: invalid buyer key: a low-order X25519 point: nothing can be sealed to it"
    )
    assert _sent_nothing(chain, *before)


def test_help_documents_the_max_price_units() -> None:
    result = invoke("buyer", "request", "--help")
    assert result.exit_code == 0
    flat = " ".join(result.stdout.replace("│", " ").split())
    assert "--max-price" in flat and "wei with the suffix" in flat
