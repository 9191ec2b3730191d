"""The root of every error the marketplace package raises on purpose."""

from __future__ import annotations


class MarketplaceError(Exception):
    """Base of all marketplace errors; catch this to handle any of them."""
