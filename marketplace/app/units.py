"""Amounts and durations as people write them: `0.01eth`, `1000000gwei`, `7d`.

Plain integers keep their old meaning (wei, seconds) so scripts written against the
first CLI still work. Everything is exact integer arithmetic: no float ever touches an
amount, and what `format_eth`/`format_duration` print parses back to the same value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from marketplace.errors import MarketplaceError

if TYPE_CHECKING:  # (chain.types imports eth_utils: kept off the CLI's start-up path)
    from marketplace.chain.assets import AssetInfo

WEI_PER_ETH = 10**18
WEI_PER_GWEI = 10**9
#: The largest amount the contract can hold (uint256).
MAX_WEI = 2**256 - 1

#: Decimals each unit allows before a value would be a fraction of a wei.
_AMOUNT_UNITS = {"eth": 18, "ether": 18, "gwei": 9, "wei": 0}
#: `[0-9]`, not `\d`: `\d` matches other scripts' digits, which int() would accept.
_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]+))?\s*([a-z]*)")
_NUMBER = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
#: The unit a price cap ends with (a symbol may hold digits after its first letter).
_SUFFIX = re.compile(r"[a-z$][a-z0-9$._-]*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
_DURATION = re.compile(r"([0-9]+)\s*([smhd]?)")


class UnitError(MarketplaceError, ValueError):
    """A price or period that is not written in a unit we accept."""

    def __init__(self, text: str, kind: str, expected: str) -> None:
        self.text, self.kind = text, kind
        super().__init__(f"{text[:40]!r} is not {kind}: {expected}")


_AMOUNT_HELP = (
    "give ETH or gwei with the unit (0.01eth, 1000000gwei) or whole wei "
    "(10000000000000000 or 10000000000000000wei)"
)
_DURATION_HELP = "give a whole number of seconds or a duration like 90s, 15m, 2h or 7d"


def parse_wei(text: str) -> int:
    """Wei from `0.01eth` / `0.01 ETH` / `1.5ether`, `1000000gwei`, `5wei` or `5`.

    Refused: negatives, signs, exponents, hex, fractions of a wei (`0.5`, `1.5wei`,
    `0.1gwei` is fine but `0.0000000001gwei` is not), more than a uint256, and junk.
    """
    match = _AMOUNT.fullmatch(text.strip().lower())
    if match is None or match.group(3) not in ("", *_AMOUNT_UNITS):
        raise UnitError(text, "an amount", _AMOUNT_HELP)
    whole: str = match.group(1)
    fraction: str = (match.group(2) or "").rstrip("0")
    decimals = _AMOUNT_UNITS[match.group(3) or "wei"]
    if len(fraction) > decimals:
        raise UnitError(text, "an amount", "that is a fraction of a wei; " + _AMOUNT_HELP)
    wei: int = int(whole) * 10**decimals + int(fraction.ljust(decimals, "0") or "0")
    if wei > MAX_WEI:
        raise UnitError(text, "an amount", "it is more than the contract can hold (2^256-1 wei)")
    return wei


def format_eth(wei: int) -> str:
    """`0.003 ETH`: exact to the wei (`parse_wei` reads it back to the same amount)."""
    if wei < 0:
        raise ValueError("an amount of wei is never negative")
    whole, fraction = divmod(wei, WEI_PER_ETH)
    decimals = f"{fraction:018d}".rstrip("0")
    return f"{whole}{'.' + decimals if decimals else ''} ETH"


def parse_amount(text: str, asset_decimals: int, asset_symbol: str | None) -> int:
    """Base units of a token from `5usdc` / `5.25 USDC` (the suffix is the token's own
    symbol, any case; `asset_decimals` from its `decimals()`) or a plain integer, which is
    base units (`5000000`). A token without a symbol takes plain integers only.

    Refused like `parse_wei`: signs, exponents, fractions of a base unit, more than a
    uint256, another token's symbol, and junk."""
    expected = _token_help(asset_symbol, asset_decimals)
    cleaned = text.strip()
    number, suffix = cleaned, ""
    # the symbol is stripped first: one that starts with a digit (`1INCH`) still parses
    if asset_symbol and cleaned.lower().endswith(asset_symbol.lower()):
        number, suffix = cleaned[: -len(asset_symbol)].rstrip(), asset_symbol
    match = _NUMBER.fullmatch(number)
    if match is None:
        raise UnitError(text, "an amount", expected)
    whole: str = match.group(1)
    fraction: str = (match.group(2) or "").rstrip("0")
    decimals = asset_decimals if suffix else 0
    if len(fraction) > decimals:
        raise UnitError(text, "an amount", "that is a fraction of a base unit; " + expected)
    units: int = int(whole) * 10**decimals + int(fraction.ljust(decimals, "0") or "0")
    if units > MAX_WEI:
        raise UnitError(text, "an amount", "it is more than the contract can hold (2^256-1)")
    return units


def _token_help(symbol: str | None, decimals: int) -> str:
    if symbol is None:
        return "this token has no symbol to write amounts with: give whole base units (5000000)"
    example = f"5{symbol.lower()}" if decimals == 0 else f"5{symbol.lower()} or 2.5 {symbol}"
    return (f"give {symbol} with its symbol ({example}; {decimals} decimals) or whole base "
            f"units as a plain integer")


def format_amount(units: int, decimals: int, symbol: str | None) -> str:
    """`5.25 USDC`: exact to the base unit (`parse_amount` reads it back to the same
    amount); a token without a symbol is shown in base units (`5000000 base units`)."""
    if units < 0:
        raise ValueError("an amount is never negative")
    if symbol is None:
        return f"{units} base units"
    whole, fraction = divmod(units, 10**decimals)
    digits = f"{fraction:0{decimals}d}".rstrip("0") if decimals else ""
    return f"{whole}{'.' + digits if digits else ''} {symbol}"


def parse_in(text: str, decimals: int, symbol: str | None) -> int:
    """An amount of a listing's asset: ether (`ETH`, 18 decimals: `parse_wei`, so `gwei`
    and plain wei still work) or a token (`parse_amount`). No token is shown as `ETH`
    (`marketplace.chain.tokens.asset_info` refuses the symbol), so this is unambiguous."""
    if symbol == "ETH" and decimals == 18:
        return parse_wei(text)
    return parse_amount(text, decimals, symbol)


def format_in(units: int, decimals: int, symbol: str | None) -> str:
    """`format_eth` for ether, `format_amount` for a token (see `parse_in`)."""
    if symbol == "ETH" and decimals == 18:
        return format_eth(units)
    return format_amount(units, decimals, symbol)


def parse_duration(text: str) -> int:
    """Seconds from `90`, `90s`, `15m`, `2h` or `7d`; zero is refused (no period is
    empty)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise UnitError(text, "a duration", _DURATION_HELP)
    return int(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def format_duration(seconds: int) -> str:
    """The largest unit that divides `seconds` exactly: `1d`, `90m`, `45s`."""
    if seconds <= 0:
        raise ValueError("a duration is a positive number of seconds")
    for unit in ("d", "h", "m"):
        count, rest = divmod(seconds, _DURATION_UNITS[unit])
        if rest == 0:
            return f"{count}{unit}"
    return f"{seconds}s"


def price_cap(
    text: str, assets: Sequence[AssetInfo], asset: str | None = None
) -> tuple[str, int]:
    """(asset address, base units) of a search's price cap: `0.01eth`/`gwei`/wei for
    ether; `5tusd` for the catalog's one token whose symbol is TUSD (any case); with
    `asset` (an address), an amount of that asset, its decimals from `assets` (plain
    base units if unknown). A symbol two tokens share is refused: it would compare
    prices in different units, so the caller names the token by `asset`."""
    from marketplace.chain.types import ETHER  # noqa: PLC0415 - see the import above
    by_address = {a.address.lower(): a for a in assets}
    if asset is not None:
        info = by_address.get(asset.lower())
        if info is None or info.address == ETHER:
            return asset, (parse_wei(text) if int(asset, 16) == 0
                           else parse_amount(text, 0, None))
        return info.address, parse_in(text, info.decimals, info.symbol)
    cleaned = text.strip().lower()
    # a symbol may start with a digit (1INCH): match the listed symbols themselves first
    named = [a for a in assets if a.symbol is not None and a.symbol != "ETH"
             and cleaned.endswith(a.symbol.lower())
             and _NUMBER.fullmatch(cleaned[: -len(a.symbol)].rstrip())]
    if not named:
        suffix = _SUFFIX.search(cleaned)
        unit = suffix.group(0) if suffix else ""
        if unit in ("", "eth", "ether", "gwei", "wei"):
            return ETHER, parse_wei(text)
        known = ", ".join(sorted({a.symbol for a in assets if a.symbol})) or "none"
        raise UnitError(text, "a price cap", f"no listed token has the symbol {unit!r} "
                        f"(symbols in the catalog: {known})")
    if len({a.address.lower() for a in named}) > 1:
        raise UnitError(text, "a price cap", f"{len(named)} tokens have the symbol "
                        f"{named[0].symbol}: name one with --asset "
                        f"({', '.join(a.address for a in named)})")
    return named[0].address, parse_amount(text, named[0].decimals, named[0].symbol)
