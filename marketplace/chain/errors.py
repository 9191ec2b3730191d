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
    """Only a node of the current (or, to anchor releases, the previous) epoch may do this."""


class ListingClosed(ContractRevert):
    """The listing does not take new debits."""


class ZeroPeriods(ContractRevert, ValueError):
    """A debit must buy at least one period."""


class ZeroPeriodSeconds(ContractRevert, ValueError):
    """A listing's period must last at least one second."""


class ZeroBuyerKey(ContractRevert, ValueError):
    """The buyer's X25519 public key must not be zero."""


class WrongPayment(ContractRevert, ValueError):
    """msg.value must equal pricePerPeriod * periods exactly on an ether listing, and be
    0 on a token listing."""


class NotAToken(ContractRevert, ValueError):
    """A listing's asset must be address(0) (ether) or a contract (an ERC-20)."""


class NotATokenListing(ContractRevert, ValueError):
    """A permit purchase needs a listing priced in an ERC-20 token."""


class TokenTransferMismatch(ContractRevert):
    """The token moved another amount than asked (fee-on-transfer, rebasing or otherwise
    non-standard tokens are refused)."""


class PermitNotApplied(ContractRevert):
    """The permit failed and the allowance does not cover the payment either."""


class InvalidConsentDeadline(ContractRevert, ValueError):
    """A consent deadline must be 0 (none) or in the future (and fit 40 bits)."""


class ConsentDeadlinePassed(ContractRevert):
    """The buyer's consent deadline has passed: the owner can no longer consent."""


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
    """A roster's keys (encryption keys proposed, share keys finalized) must be one per node."""


class InvalidThreshold(ContractRevert, ValueError):
    """The threshold must satisfy 1 <= threshold <= size <= 255."""


class InvalidCommitteeMember(ContractRevert, ValueError):
    """A committee member has a zero or repeated address, or a zero key."""


class EmptyAnchor(ContractRevert, ValueError):
    """An anchor must cover at least one release and have a non-zero root."""


class NotGovernor(ContractRevert, PermissionError):
    """Only the governor may do this."""


class ZeroGovernor(ContractRevert, ValueError):
    """The governor cannot be the zero address."""


class UnknownCeremony(ContractRevert, LookupError):
    """No ceremony has this id."""


class WrongCeremony(ContractRevert):
    """Only the latest ceremony can take approvals, messages or its result."""


class WrongEpoch(ContractRevert):
    """The ceremony's epoch is not the next one (it is already final)."""


class CeremonyInProgress(ContractRevert):
    """The latest ceremony for the next epoch is still pending."""


class CeremonyNotOpen(ContractRevert):
    """The ceremony is not open yet (reshare: too few approvals, or before openedAt)."""


class DeadlinePassed(ContractRevert):
    """The ceremony's deadline has passed: it failed."""


class DeadlineNotInFuture(ContractRevert, ValueError):
    """A proposal's deadline must be after now and after its notBefore."""


class ZeroPhaseSeconds(ContractRevert, ValueError):
    """A ceremony's phases must last at least one second."""


class TooFewSignatures(ContractRevert):
    """Fewer distinct valid signers of the result than the threshold."""


class DuplicateSigner(ContractRevert, ValueError):
    """The same node signed the result twice in one list."""


class UnknownSigner(ContractRevert, ValueError):
    """A result signature recovers to an address outside its roster."""


class CommitteeKeyChanged(ContractRevert, ValueError):
    """A reshare must keep the committee key Y byte-identical."""


class AlreadyApproved(ContractRevert):
    """This node already approved the ceremony."""


class NoCommittee(ContractRevert, LookupError):
    """No committee epoch is final yet."""


class UnknownEpoch(ContractRevert, LookupError):
    """The epoch is not final (0, or after the current one)."""


class InvalidMessageKind(ContractRevert, ValueError):
    """Ceremony message kinds are 1 DEALING, 2 VERDICT, 3 ANSWER, 4 RESULT."""


class NotCeremonyMember(ContractRevert, PermissionError):
    """Only a node of the proposed (or, for a reshare, the current) roster may post."""


class InvalidQualifiedSet(ContractRevert, ValueError):
    """The qualified bitmask names a dealer outside its roster, or too few dealers."""


class DataStoreWriteFailed(ContractRevert):
    """A roster or result data contract could not be created."""


class ECDSAInvalidSignature(ContractRevert, ValueError):
    """OpenZeppelin ECDSA: no signer recovers from the signature."""


class ECDSAInvalidSignatureLength(ContractRevert, ValueError):
    """OpenZeppelin ECDSA: a signature is not 65 bytes."""


class ECDSAInvalidSignatureS(ContractRevert, ValueError):
    """OpenZeppelin ECDSA: s is in the upper half (a malleable signature, EIP-2)."""


class ReentrancyGuardReentrantCall(ContractRevert):
    """OpenZeppelin's guard stopped a re-entrant call."""


class SafeERC20FailedOperation(ContractRevert):
    """A token call failed or returned false (OpenZeppelin SafeERC20)."""


class FailedCall(ContractRevert):
    """OpenZeppelin's Address.sendValue could not pay the recipient."""


class Panic(ContractRevert):
    """A Solidity panic (assert, overflow, division by zero, ...); `fields["code"]`."""


class Error(ContractRevert):
    """A plain `revert("reason")`; `fields["reason"]`."""
