"""`is_small_order` agrees with libsodium (issue 9, item 9): a buyer key libsodium cannot
seal to (its X25519 with it is all zeros) is refused as a `BuyerPublicKey`, in every
encoding X25519 accepts (u + p for u < 19, bit 255 set), and nothing else is.

Before the fix `BuyerPublicKey(bytes(32))` was accepted: the gateway then failed to seal
for that debit and answered its buyer with a 500.
"""

from __future__ import annotations

import nacl.bindings as sodium
import nacl.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.keyrelease.buyer_key import BuyerPublicKey, is_small_order
from marketplace.keyrelease.errors import InvalidBuyerKey

P = 2**255 - 19
#: libsodium's own list (crypto_scalarmult/curve25519/ref10, `has_small_order`): the
#: u-coordinates of the points of order 1, 2, 4 and 8, written here independently of
#: the module under test.
SMALL_ORDER_U = (
    0,
    1,
    0xB8495F16056286FDB1329CEB8D09DA6AC49FF1FAE35616AEB8413B7C7AEBE0,
    0x57119FD0DD4E22D8868E1C58C45C44045BEF839C55B1D0B1248C50A3BC959C5F,
    P - 1,
)


def _encodings(u: int) -> list[bytes]:
    """Every 32-byte string X25519 reads as u: u, u + p (when it fits 255 bits), each
    with and without bit 255, which X25519 ignores."""
    values = [u] + ([u + P] if u + P < 2**255 else [])
    return [(v | high).to_bytes(32, "little") for v in values for high in (0, 1 << 255)]


SMALL_ORDER_KEYS = [key for u in SMALL_ORDER_U for key in _encodings(u)]
scalars = st.binary(min_size=32, max_size=32)


def _libsodium_refuses(key: bytes, scalar: bytes) -> bool:
    try:
        sodium.crypto_scalarmult(scalar, key)
    except nacl.exceptions.CryptoError:
        return True
    return False


def test_the_list_has_every_encoding() -> None:
    # 0 and 1 have a second encoding (p, p + 1); each of the 7 values also with bit 255
    assert len(SMALL_ORDER_KEYS) == 14
    assert len(set(SMALL_ORDER_KEYS)) == 14


@pytest.mark.parametrize("key", SMALL_ORDER_KEYS, ids=lambda k: "0x" + k.hex()[:12])
def test_small_order_keys_are_refused(key: bytes) -> None:
    assert is_small_order(key)
    with pytest.raises(InvalidBuyerKey, match="low-order"):
        BuyerPublicKey(key)


@given(key=st.sampled_from(SMALL_ORDER_KEYS), scalar=scalars)
def test_libsodium_refuses_every_small_order_key(key: bytes, scalar: bytes) -> None:
    assert _libsodium_refuses(key, scalar)


@given(
    key=st.binary(min_size=32, max_size=32).filter(lambda k: k not in SMALL_ORDER_KEYS),
    scalar=scalars,
)
def test_every_other_key_is_accepted_by_both(key: bytes, scalar: bytes) -> None:
    """Any key off the list (hypothesis tries zeros-like and random ones) is accepted
    by `is_small_order`, by libsodium and by `BuyerPublicKey`."""
    assert not is_small_order(key)
    assert not _libsodium_refuses(key, scalar)
    assert BuyerPublicKey(key).key == key


@given(
    base=st.sampled_from((*SMALL_ORDER_U, P, P + 1)),
    delta=st.integers(min_value=-(2**16), max_value=2**16),
    high=st.booleans(),
    scalar=scalars,
)
def test_agrees_with_libsodium_next_to_the_small_order_points(
    base: int, delta: int, high: bool, scalar: bytes
) -> None:
    """Where a wrong list would show: the neighbours of each small-order u (and of its
    second encoding), each reduced to 255 bits as X25519 does."""
    u = (base + delta) % 2**255 | (1 << 255 if high else 0)
    key = u.to_bytes(32, "little")
    assert is_small_order(key) == _libsodium_refuses(key, scalar)
