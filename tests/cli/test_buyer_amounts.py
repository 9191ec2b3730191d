"""`--max-price` amounts and how totals are shown: exact to the wei, no float anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.cli.buyer_commands import BadAmount, eth_amount, parse_amount


@pytest.mark.parametrize(
    ("text", "wei"),
    [
        ("0.003", 3 * 10**15),
        ("0.003eth", 3 * 10**15),
        (" 0.003 ETH ", 3 * 10**15),
        ("1", 10**18),
        ("0.000000000000000001", 1),
        ("123wei", 123),
        ("123 WEI", 123),
        ("0wei", 0),
        ("115792089237316195423570985008687907853269984665640564039457.584007913129639935",
         2**256 - 1),
    ],
)
def test_amounts_parse_exactly(text: str, wei: int) -> None:
    assert parse_amount("--max-price", text) == wei


@pytest.mark.parametrize(
    "text", ["", "abc", "-1", "+1", "1e18", "0x10", "1.", ".5", "1.5wei", "10 gwei",
             "0.0000000000000000001", "1,5", "nan", "inf"],
)
def test_anything_else_is_refused_with_the_units_named(text: str) -> None:
    with pytest.raises(BadAmount) as refused:
        parse_amount("--max-price", text)
    assert "ETH as a decimal" in str(refused.value) and "wei" in str(refused.value)


def test_amounts_are_shown_exactly() -> None:
    assert eth_amount(0) == "0 ETH (0 wei)"
    assert eth_amount(1) == "0.000000000000000001 ETH (1 wei)"
    assert eth_amount(3 * 10**15) == "0.003 ETH (3000000000000000 wei)"
    assert eth_amount(12 * 10**18) == "12 ETH (12000000000000000000 wei)"


@given(st.integers(min_value=0, max_value=2**256))
def test_what_is_shown_parses_back_to_the_same_wei(wei: int) -> None:
    shown = eth_amount(wei)
    assert parse_amount("--max-price", shown.split(" (")[0]) == wei
    assert parse_amount("--max-price", f"{wei}wei") == wei
