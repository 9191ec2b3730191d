"""Fixtures of the key-release tests: a dealt committee with a published version, buyers."""

from __future__ import annotations

import pytest
from eth_account import Account

from marketplace.eip712 import Eip712Domain
from marketplace.keyrelease import BuyerSecretKey
from tests.unit.keyrelease.support import CHAIN_ID, MARKET, Published, publish


@pytest.fixture(scope="module")
def published() -> Published:
    """A 3-of-5 committee and one version published for it."""
    return publish(5, 3)


@pytest.fixture(scope="session")
def domain() -> Eip712Domain:
    return Eip712Domain(CHAIN_ID, MARKET)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def buyer(domain: Eip712Domain) -> BuyerSecretKey:
    return BuyerSecretKey.from_account(Account.from_key(b"\x07" * 32), domain)


@pytest.fixture(scope="session")
def other_buyer(domain: Eip712Domain) -> BuyerSecretKey:
    return BuyerSecretKey.from_account(Account.from_key(b"\x08" * 32), domain)
