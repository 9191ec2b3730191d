"""The buyer's X25519 key: derived from one deterministic wallet signature."""

from __future__ import annotations

import hashlib

import pytest
from eth_account import Account

from marketplace.eip712 import (
    Eip712Domain,
    EncryptionKey,
    MalformedSignature,
    sign,
    typed_data,
)
from marketplace.keyrelease import BuyerSecretKey
from tests.unit.keyrelease.support import CHAIN_ID, MARKET

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
WALLET = Account.from_key(b"\x07" * 32)


def wallet_signature(domain: Eip712Domain) -> bytes:
    """What MetaMask returns for eth_signTypedData_v4 of the EncryptionKey payload."""
    payload = typed_data(domain, EncryptionKey())
    return bytes(WALLET.sign_typed_data(full_message=payload).signature)


def test_derivation_is_deterministic(domain: Eip712Domain) -> None:
    assert BuyerSecretKey.from_account(WALLET, domain) == BuyerSecretKey.from_account(
        WALLET, domain
    )


def test_account_and_raw_signature_paths_agree(domain: Eip712Domain) -> None:
    from_raw = BuyerSecretKey.from_signature(wallet_signature(domain))
    assert from_raw == BuyerSecretKey.from_account(WALLET, domain)
    assert from_raw.public_key() == BuyerSecretKey.from_account(WALLET, domain).public_key()


def test_the_secret_is_blake2b_256_of_tag_and_signature(domain: Eip712Domain) -> None:
    sig = wallet_signature(domain)
    expected = hashlib.blake2b(b"datadebit/x25519/v1" + sig, digest_size=32).digest()
    assert BuyerSecretKey.from_signature(sig).to_secret_bytes() == expected


def test_wallet_encoding_differences_do_not_change_the_key(domain: Eip712Domain) -> None:
    """v as 0/1 (some hardware wallets) or a high s give the same key."""
    sig = wallet_signature(domain)
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    v01 = sig[:64] + bytes([v - 27])
    high_s = r + (N - s).to_bytes(32, "big") + bytes([((v - 27) ^ 1) + 27])
    reference = BuyerSecretKey.from_signature(sig)
    assert BuyerSecretKey.from_signature(v01) == reference
    assert BuyerSecretKey.from_signature(high_s) == reference


def test_other_domain_or_wallet_gives_another_key(domain: Eip712Domain) -> None:
    reference = BuyerSecretKey.from_account(WALLET, domain)
    assert BuyerSecretKey.from_account(WALLET, Eip712Domain(CHAIN_ID + 1, MARKET)) != reference  # type: ignore[arg-type]
    assert BuyerSecretKey.from_account(Account.from_key(b"\x09" * 32), domain) != reference


@pytest.mark.parametrize(
    "signature",
    [b"", bytes(64), bytes(66), bytes(64) + b"\x1b", b"\x01" * 64 + b"\x1d"],
)
def test_a_malformed_signature_is_refused(signature: bytes) -> None:
    with pytest.raises(MalformedSignature):
        BuyerSecretKey.from_signature(signature)


def test_the_secret_guards_itself(domain: Eip712Domain) -> None:
    secret = BuyerSecretKey.from_account(WALLET, domain)
    assert repr(secret) == "BuyerSecretKey(<secret>)"
    assert secret.to_secret_bytes().hex() not in repr(secret)
    with pytest.raises(TypeError):
        hash(secret)
    with pytest.raises(ValueError):
        BuyerSecretKey(bytes(31))


def test_sign_matches_eth_account(domain: Eip712Domain) -> None:
    assert sign(WALLET, domain, EncryptionKey()) == wallet_signature(domain)
