"""Builders shared by the key-release tests: a context, a published version."""

from __future__ import annotations

from dataclasses import dataclass

from marketplace.keyrelease import (
    BoundCapsule,
    Capsule,
    CapsuleContext,
    DealtCommittee,
    deal,
    make_capsule,
)
from storage.keys import DataKey

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337
DEBIT_ID = 42
VERSION = 3

# The eight points of small order, canonically encoded (order 1, 2, 4, 4, 8, 8, 8, 8).
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
]

# Non-canonical encodings: y >= p, or x = 0 with the sign bit set.
NON_CANONICAL = [
    "0100000000000000000000000000000000000000000000000000000000000080",  # -0 identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # y = -1, sign set
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p + 1
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = 2^255 - 1
]


@dataclass(frozen=True)
class Published:
    """One published version: its committee, context, capsule and the owner's DEK."""

    dealt: DealtCommittee
    ctx: CapsuleContext
    dek: DataKey
    capsule: Capsule

    @property
    def bound(self) -> BoundCapsule:
        """The capsule as a node holds it: proof checked against its context."""
        return self.capsule.bind(self.ctx)


def make_ctx(**changes: object) -> CapsuleContext:
    fields: dict[str, object] = {
        "chain_id": CHAIN_ID,
        "market": MARKET,
        "listing_id": 7,
        "version": VERSION,
        "cid_bytes": bytes.fromhex("01551220") + bytes(range(32)),
    }
    fields.update(changes)
    return CapsuleContext(**fields)  # type: ignore[arg-type]


def publish(size: int, threshold: int) -> Published:
    dealt = deal(size, threshold)
    ctx = make_ctx()
    dek = DataKey.generate()
    return Published(dealt, ctx, dek, make_capsule(dek, ctx, dealt.keys.committee_key))
