"""The application layer (the Python SDK): owner, buyer and auditor operations as typed
calls with their dependencies passed in. The CLI, the demo and the web app each parse,
call one of these and render; none of them repeats a flow.

    from marketplace.app import BuyerApp, OwnerApp, run_audit

Names are resolved on first use, so `marketplace.app.units` stays cheap to import (the
CLI's start-up budget): importing this package alone imports no web3.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from marketplace.app.audit import run_audit
    from marketplace.app.buyer import BuyerApp
    from marketplace.app.owner import OwnerApp

__all__ = ["BuyerApp", "OwnerApp", "run_audit"]

_HOMES = {
    "BuyerApp": "marketplace.app.buyer",
    "OwnerApp": "marketplace.app.owner",
    "run_audit": "marketplace.app.audit",
}


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
