"""Errors of aggregate debits: one root, one class per failure, each with its fields.

Messages name node indices, lengths and reasons, never shares, contributions or noise.
"""

from __future__ import annotations

from marketplace.errors import MarketplaceError


class AggregateError(MarketplaceError):
    """Base of every aggregate-debit failure."""


class InvalidParameters(AggregateError, ValueError):
    """Committee or field parameters out of range (t, n, prime, dimension, index)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid aggregation parameters: {reason}")


class InvalidQuery(AggregateError, ValueError):
    """A query document that no honest owner or node should act on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid query: {reason}")


class NotEnoughShares(AggregateError):
    """Fewer shares (or partials, or openings) than the reconstruction needs."""

    def __init__(self, what: str, have: int, need: int) -> None:
        self.what = what
        self.have = have
        self.need = need
        super().__init__(f"{have} {what}, at least {need} needed")


class InconsistentShares(AggregateError):
    """Values that should lie on one low-degree polynomial do not.

    `culprit` is the node whose value is off when that is identifiable (one bad node
    among at least degree + 3 values), else None (detected, not attributable).
    """

    def __init__(self, what: str, culprit: int | None) -> None:
        self.what = what
        self.culprit = culprit
        who = f"node {culprit}'s value is off" if culprit is not None else "culprit unknown"
        super().__init__(f"inconsistent {what}: {who}")


class MalformedBundle(AggregateError, ValueError):
    """A contribution bundle or round message that does not parse or has the wrong shape."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed aggregate message: {reason}")


class BundleMismatch(AggregateError, ValueError):
    """A well-formed bundle or round message made for another debit, owner, node or size."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"aggregate message does not match what was expected: {reason}")


class OpenFailed(AggregateError):
    """A sealed share does not open with this node's key (sealed to another key, or altered)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot open sealed aggregate share: {reason}")


class FieldOverflow(AggregateError, ValueError):
    """The aggregate could wrap around the field: too many contributors for the range."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the field cannot hold this aggregate: {reason}")
