"""Prices and periods as people write them (issue 11, item 4): every accepted and refused
form, exact to the wei, and what is shown parses back to the same value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.app.units import (
    MAX_WEI,
    UnitError,
    format_amount,
    format_duration,
    format_eth,
    format_in,
    parse_amount,
    parse_duration,
    parse_in,
    parse_wei,
)
from marketplace.errors import MarketplaceError


@pytest.mark.parametrize(
    ("text", "wei"),
    [
        ("0", 0),
        ("5", 5),
        ("5wei", 5),
        ("5 WEI", 5),
        (" 12 ", 12),
        ("0.01eth", 10**16),
        ("0.01 ETH", 10**16),
        ("1.5ether", 15 * 10**17),
        ("0.000000000000000001eth", 1),
        ("0.0030eth", 3 * 10**15),
        ("1000000gwei", 10**15),
        ("1.5gwei", 1_500_000_000),
        ("0.000000001gwei", 1),
        ("2.000wei", 2),  # trailing zeros are not a fraction
        (f"{MAX_WEI}", MAX_WEI),
        ("115792089237316195423570985008687907853269984665640564039457.584007913129639935eth",
         MAX_WEI),
    ],
)
def test_amounts_parse_exactly(text: str, wei: int) -> None:
    assert parse_wei(text) == wei


@pytest.mark.parametrize(
    "text",
    ["", " ", "eth", "abc", "-1", "+1", "-0.1eth", "1e18", "0x10", "1.", ".5", "1,5",
     "1_000", "nan", "inf", "0.5", "1.5wei", "0.0000000001gwei", "0.0000000000000000001eth",
     "10 gwe", "5 finney", "1eth2", "١٢", f"{MAX_WEI + 1}", "1 e t h"],
)
def test_anything_else_is_refused_with_the_units_named(text: str) -> None:
    with pytest.raises(UnitError) as refused:
        parse_wei(text)
    assert isinstance(refused.value, MarketplaceError) and isinstance(refused.value, ValueError)
    assert "is not an amount" in str(refused.value)
    assert refused.value.kind == "an amount"


def test_fractions_of_a_wei_say_so() -> None:
    with pytest.raises(UnitError, match="fraction of a wei"):
        parse_wei("0.5")


def test_amounts_are_shown_exactly() -> None:
    assert format_eth(0) == "0 ETH"
    assert format_eth(1) == "0.000000000000000001 ETH"
    assert format_eth(3 * 10**15) == "0.003 ETH"
    assert format_eth(12 * 10**18) == "12 ETH"
    with pytest.raises(ValueError):
        format_eth(-1)


@given(st.integers(min_value=0, max_value=MAX_WEI))
def test_what_is_shown_parses_back_to_the_same_wei(wei: int) -> None:
    assert parse_wei(format_eth(wei)) == wei
    assert parse_wei(f"{wei}wei") == wei == parse_wei(str(wei))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1", 1), ("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604_800),
     ("1D", 86_400), (" 3 h ", 10_800), ("86400", 86_400)],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "0", "0d", "-1", "1.5h", "1w", "h", "1hm", "1d2h", "abc", "1e3", "٣"],
)
def test_other_durations_are_refused(text: str) -> None:
    with pytest.raises(UnitError, match="is not a duration"):
        parse_duration(text)


def test_durations_are_shown_in_the_largest_exact_unit() -> None:
    assert [format_duration(s) for s in (1, 59, 60, 90, 3600, 5400, 86_400, 90_000)] == [
        "1s", "59s", "1m", "90s", "1h", "90m", "1d", "25h"
    ]
    with pytest.raises(ValueError):
        format_duration(0)


@given(st.integers(min_value=1, max_value=2**64))
def test_what_is_shown_parses_back_to_the_same_duration(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# ---------------------------------------------------------------- token amounts


@pytest.mark.parametrize(("text", "units"), [
    ("5usdc", 5_000_000), ("5 USDC", 5_000_000), ("5.25UsDc", 5_250_000),
    ("0.000001usdc", 1), ("5000000", 5_000_000), ("0", 0), (" 7 ", 7),
])
def test_parse_amount_reads_the_tokens_symbol_and_decimals(text: str, units: int) -> None:
    assert parse_amount(text, 6, "USDC") == units


@pytest.mark.parametrize("text", [
    "0.0000001usdc", "5.5", "5eth", "5dai", "-5usdc", "+5", "1e6", "0x10", "", "usdc",
    "5 usdc usdc", "\u0665usdc", f"{2**256}",
])
def test_parse_amount_refuses_what_is_not_an_amount_of_this_token(text: str) -> None:
    with pytest.raises(UnitError):
        parse_amount(text, 6, "USDC")


def test_a_symbol_starting_with_a_digit_still_parses() -> None:
    assert parse_amount("51inch", 18, "1INCH") == 5 * 10**18


def test_a_token_without_symbol_takes_base_units_only() -> None:
    assert parse_amount("42", 0, None) == 42
    with pytest.raises(UnitError, match="no symbol"):
        parse_amount("42usdc", 0, None)
    assert format_amount(42, 0, None) == "42 base units"


@pytest.mark.parametrize("units", [0, 1, 5_000_000, 5_250_000, 123_456_789_012, 2**256 - 1])
def test_format_amount_reads_back_exactly(units: int) -> None:
    shown = format_amount(units, 6, "USDC")
    assert shown.endswith(" USDC")
    assert parse_amount(shown, 6, "USDC") == units


def test_parse_in_and_format_in_keep_ether_units_for_ether() -> None:
    assert parse_in("1gwei", 18, "ETH") == 10**9
    assert format_in(10**15, 18, "ETH") == format_eth(10**15)
    assert parse_in("2tusd", 6, "TUSD") == 2_000_000
    assert format_in(2_000_000, 6, "TUSD") == "2 TUSD"


def test_price_cap_resolves_a_symbol_among_the_catalogs_tokens() -> None:
    """`market search --max-price 5tusd`: the unit names one listed token; ether units stay
    ether; an unknown or shared symbol is refused with what would work."""
    from marketplace.app.units import price_cap  # noqa: PLC0415
    from marketplace.chain.assets import ETHER_INFO, AssetInfo  # noqa: PLC0415
    from marketplace.chain.types import ETHER  # noqa: PLC0415

    tusd = AssetInfo("0x" + "ab" * 20, "TUSD", 6)
    bare = AssetInfo("0x" + "ef" * 20, None, 0)
    assets = [ETHER_INFO, tusd, bare]
    assert price_cap("5tusd", assets) == (tusd.address, 5_000_000)
    assert price_cap("2.5 TUSD", assets) == (tusd.address, 2_500_000)
    assert price_cap("0.01eth", assets) == (ETHER, 10**16)
    assert price_cap("7", assets) == (ETHER, 7)
    assert price_cap("3", assets, bare.address) == (bare.address, 3)
    assert price_cap("1.5tusd", assets, tusd.address.upper().replace("0X", "0x")) == (
        tusd.address, 1_500_000)
    assert price_cap("0.5eth", assets, ETHER) == (ETHER, 5 * 10**17)
    with pytest.raises(UnitError, match=r"no listed token has the symbol 'usdc'.*ETH, TUSD"):
        price_cap("5usdc", assets)
    twin = AssetInfo("0x" + "12" * 20, "TUSD", 18)
    with pytest.raises(UnitError, match="2 tokens have the symbol TUSD: name one with --asset"):
        price_cap("5tusd", [*assets, twin])
    with pytest.raises(UnitError, match="fraction of a base unit"):
        price_cap("0.0000001tusd", assets)
    with pytest.raises(UnitError):
        price_cap("1.5", assets, bare.address)  # a symbol-less token takes base units only
    inch = AssetInfo("0x" + "34" * 20, "1INCH", 18)
    assert price_cap("2 1inch", [*assets, inch]) == (inch.address, 2 * 10**18)
