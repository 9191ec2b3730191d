"""How hard passphrase KDFs work, in its own module: `datadebit wallet`'s and
`committee`'s `--kdf` option needs the enum when the command module loads, and
`marketplace.committee` imports eth_account and the key-release code (~0.6 s), which a
buyer's chain read (`buyer status`, 0.6 s budget) must not pay."""

from __future__ import annotations

from enum import StrEnum

import nacl.pwhash

_argon2id = nacl.pwhash.argon2id


class KdfStrength(StrEnum):
    """How hard the passphrase KDFs work: `moderate` in production, `interactive` for tests
    and demos (fast, weaker against offline guessing)."""

    MODERATE = "moderate"
    INTERACTIVE = "interactive"

    @property
    def argon2id_limits(self) -> tuple[int, int]:
        """(opslimit, memlimit) for libsodium's argon2id."""
        if self is KdfStrength.MODERATE:
            return _argon2id.OPSLIMIT_MODERATE, _argon2id.MEMLIMIT_MODERATE
        return _argon2id.OPSLIMIT_INTERACTIVE, _argon2id.MEMLIMIT_INTERACTIVE

    @property
    def scrypt_n(self) -> int:
        """scrypt's N for the Ethereum keystore (eth-account's default for `moderate`)."""
        return 2**18 if self is KdfStrength.MODERATE else 2**14
