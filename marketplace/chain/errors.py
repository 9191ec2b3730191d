"""Chain errors: the node is unreachable, a transaction failed, or the contract reverted.

Every custom error of `IDataMarket` has a class of the same name here, carrying the
error's arguments in `fields` (by their Solidity names), so callers can write
`except NotListingOwner as e: e.fields["caller"]`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from marketplace.errors import MarketplaceError


class ChainError(MarketplaceError):
    """Anything that went wrong talking to the chain."""


class ChainUnavailable(ChainError, ConnectionError):
    """The JSON-RPC node did not answer (down, refused, timed out)."""

    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"chain node {endpoint} is unavailable: {reason}")


class TransactionFailed(ChainError):
    """A transaction was mined but failed without revert data we could decode."""

    def __init__(self, tx_hash: str, detail: str) -> None:
        self.tx_hash = tx_hash
        super().__init__(f"transaction {tx_hash} failed: {detail}")


class ContractRevert(ChainError):
    """The contract reverted. Subclasses are named after the contract's custom errors."""

    error_name: ClassVar[str] = "revert"
    _by_name: ClassVar[dict[str, type[ContractRevert]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.error_name = cls.__name__
        ContractRevert._by_name[cls.__name__] = cls

    def __init__(self, fields: dict[str, Any] | None = None, *, name: str | None = None) -> None:
        self.fields = dict(fields or {})
        self.name = name or self.error_name
        args = ", ".join(f"{k}={_show(v)}" for k, v in self.fields.items())
        super().__init__(f"contract reverted: {self.name}({args})")

    @classmethod
    def for_error(cls, name: str, fields: dict[str, Any]) -> ContractRevert:
        """The exception for a decoded custom error (a plain ContractRevert if unknown)."""
        error_cls = cls._by_name.get(name)
        if error_cls is None:
            return ContractRevert(fields, name=name)
        return error_cls(fields)


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


# One class per custom error of IDataMarket (docstrings from its NatSpec).
class UnknownListing(ContractRevert, LookupError):
    """No listing has this id."""


class UnknownDebit(ContractRevert, LookupError):
    """No debit has this id."""


class UnknownVersion(ContractRevert, LookupError):
    """The listing has no version with this number."""


class NotListingOwner(ContractRevert, PermissionError):
    """Only the listing's owner may do this."""


class NotDebitBuyer(ContractRevert, PermissionError):
    """Only the debit's buyer may do this."""


class NotCommitteeNode(ContractRevert, PermissionError):
    """Only a committee node may anchor releases."""


class ListingClosed(ContractRevert):
    """The listing does not take new debits."""


class ZeroPeriods(ContractRevert, ValueError):
    """A debit must buy at least one period."""


class ZeroPeriodSeconds(ContractRevert, ValueError):
    """A listing's period must last at least one second."""


class ZeroBuyerKey(ContractRevert, ValueError):
    """The buyer's X25519 public key must not be zero."""


class WrongPayment(ContractRevert, ValueError):
    """msg.value must equal pricePerPeriod * periods exactly."""


class PaymentTooLarge(ContractRevert, ValueError):
    """The debit's price does not fit the contract's 96-bit amounts."""


class DurationTooLong(ContractRevert, ValueError):
    """The debit's duration does not fit the contract's 40-bit timestamps."""


class InvalidDebitState(ContractRevert):
    """The debit is not in a state that allows this."""


class DebitExpired(ContractRevert):
    """The debit's term has ended."""


class MalformedCapsule(ContractRevert, ValueError):
    """A capsule is exactly 104 bytes."""


class MalformedCid(ContractRevert, ValueError):
    """A CID must be a binary CIDv1 of at most 128 bytes."""


class NothingToClaim(ContractRevert):
    """None of the given debits has anything accrued."""


class NothingToWithdraw(ContractRevert):
    """The caller has no credited balance."""


class ZeroCommitteeKey(ContractRevert, ValueError):
    """The committee key must not be zero."""


class CommitteeLengthMismatch(ContractRevert, ValueError):
    """nodes and shareKeys must have the same length."""


class InvalidThreshold(ContractRevert, ValueError):
    """The threshold must satisfy 1 <= threshold <= size <= 255."""


class InvalidCommitteeMember(ContractRevert, ValueError):
    """A committee member has a zero or repeated address, or a zero key."""


class EmptyAnchor(ContractRevert, ValueError):
    """An anchor must cover at least one release and have a non-zero root."""


class ReentrancyGuardReentrantCall(ContractRevert):
    """OpenZeppelin's guard stopped a re-entrant call."""


class FailedCall(ContractRevert):
    """OpenZeppelin's Address.sendValue could not pay the recipient."""


class Panic(ContractRevert):
    """A Solidity panic (assert, overflow, division by zero, ...); `fields["code"]`."""


class Error(ContractRevert):
    """A plain `revert("reason")`; `fields["reason"]`."""
