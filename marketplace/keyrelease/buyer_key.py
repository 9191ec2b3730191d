"""The buyer's X25519 key pair, derived from one wallet signature (DESIGN §4).

secret = BLAKE2b-256(`datadebit/x25519/v1` || sig), sig = the wallet's 65-byte signature
over `EncryptionKey(purpose="datadebit buyer encryption key v1")` in the market's EIP-712
domain. RFC 6979 makes the signature deterministic, so the wallet alone can always
re-derive the key. The signature is first put in canonical form (low s, v = 27/28), the
only encodings in which wallets differ.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import nacl.bindings as sodium
from eth_account.signers.local import LocalAccount

from marketplace.eip712 import Eip712Domain, EncryptionKey, canonical_signature, sign
from marketplace.keyrelease.errors import InvalidBuyerKey
from marketplace.keyrelease.group import tag

_X25519_TAG = tag("x25519")
_P = 2**255 - 19
#: u-coordinates of the X25519 points of small order (1, 2, 4, 8), the list libsodium's
#: `crypto_scalarmult` refuses by its all-zero output: sealing to one of them fails, and a
#: Diffie-Hellman with one would reveal nothing secret to anyone.
_SMALL_ORDER_U = frozenset((
    0,
    1,
    _P - 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
))


def is_small_order(key: bytes) -> bool:
    """Whether a 32-byte X25519 public key is a point of small order, in any of its
    encodings (bit 255 is ignored by X25519; u and u + p name the same point)."""
    u = int.from_bytes(key, "little") & (2**255 - 1)
    return (u - _P if u >= _P else u) in _SMALL_ORDER_U


@dataclass(frozen=True, slots=True)
class BuyerPublicKey:
    """The 32-byte X25519 key a debit names (`buyerKey`); shares are sealed to it."""

    SIZE = 32

    key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != self.SIZE:
            raise InvalidBuyerKey(f"must be exactly {self.SIZE} bytes")
        if is_small_order(self.key):
            raise InvalidBuyerKey("a low-order X25519 point: nothing can be sealed to it")

    def __repr__(self) -> str:
        return f"BuyerPublicKey(0x{self.key.hex()})"


class BuyerSecretKey:
    """The buyer's X25519 secret: prints as `BuyerSecretKey(<secret>)`, no hash, no bytes
    except through `to_secret_bytes()`."""

    SIZE = 32
    __slots__ = ("_key", "_public")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != self.SIZE:
            raise ValueError(f"an X25519 secret key is exactly {self.SIZE} bytes")
        self._key = key
        self._public = BuyerPublicKey(sodium.crypto_scalarmult_base(key))

    @classmethod
    def from_signature(cls, signature: bytes) -> BuyerSecretKey:
        """From a wallet's signature of `encryption_key_request` (e.g. made by MetaMask)."""
        data = _X25519_TAG + canonical_signature(signature)
        return cls(hashlib.blake2b(data, digest_size=32).digest())

    @classmethod
    def from_account(cls, account: LocalAccount, domain: Eip712Domain) -> BuyerSecretKey:
        """Sign the EncryptionKey message with a local account and derive from that."""
        return cls.from_signature(sign(account, domain, EncryptionKey()))

    def public_key(self) -> BuyerPublicKey:
        return self._public

    def to_secret_bytes(self) -> bytes:
        """The raw X25519 secret. Callers must not log, print or store it unencrypted."""
        return self._key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BuyerSecretKey):
            return NotImplemented
        return sodium.sodium_memcmp(self._key, other._key)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "BuyerSecretKey(<secret>)"
