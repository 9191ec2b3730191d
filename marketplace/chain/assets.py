"""How a listing's payment asset is shown: ether, or an ERC-20 by its own symbol and
decimals when they are safe to print. Web3-free, so the light client (`chain/light.py`)
and the CLI's start-up path can use it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from marketplace.chain.types import ETHER

__all__ = ["ETHER_INFO", "MAX_DECIMALS", "AssetInfo", "shown_asset"]


#: What a token's symbol may be to be shown and typed as a unit: a token's metadata is
#: whatever its deployer chose, and a symbol with a newline or a terminal escape would
#: forge output; such a token is shown by its base units only.
_SAFE_SYMBOL = re.compile(r"[A-Za-z0-9$._-]{1,16}")
#: A token whose decimals() says more than this is not shown with decimals (10^255 would
#: make every formatted amount a 255-digit fraction).
MAX_DECIMALS = 36


@dataclass(frozen=True, slots=True)
class AssetInfo:
    """How amounts of a listing's asset are written: ether (`ETH`, 18 decimals) or an
    ERC-20's own `symbol()` and `decimals()`. `symbol` is None when the token has none we
    can show safely; its amounts are then whole base units."""

    address: str
    symbol: str | None
    decimals: int

    @property
    def is_ether(self) -> bool:
        return self.address == ETHER


ETHER_INFO = AssetInfo(ETHER, "ETH", 18)


def shown_asset(address: str, symbol: object, decimals: object) -> AssetInfo:
    """How a token is shown, from what its `symbol()` and `decimals()` answered (None:
    nothing): a symbol that could forge output or pass for ether, or an absurd number of
    decimals, leaves base units only."""
    safe = isinstance(symbol, str) and _SAFE_SYMBOL.fullmatch(symbol) is not None \
        and symbol.lower() not in ("eth", "ether", "gwei", "wei")
    if not safe or not isinstance(decimals, int) or not 0 <= decimals <= MAX_DECIMALS:
        return AssetInfo(address, None, 0)
    assert isinstance(symbol, str)
    return AssetInfo(address, symbol, decimals)
