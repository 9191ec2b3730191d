"""Errors of the key-release crypto: one root, one class per failure, each with its fields.

The messages name node indices, ids and lengths, never key material.
"""

from __future__ import annotations

from marketplace.errors import MarketplaceError


class KeyReleaseError(MarketplaceError):
    """Base of every key-release failure."""


class InvalidPoint(KeyReleaseError, ValueError):
    """Bytes from outside are not a point of the prime-order subgroup (or are the identity)."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what} is not a valid edwards25519 point of the prime-order subgroup")


class InvalidScalar(KeyReleaseError, ValueError):
    """Bytes from outside are not a canonical scalar (32 bytes, little-endian, below L)."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what} is not a canonical scalar modulo L")


class InvalidField(KeyReleaseError, ValueError):
    """An id, version, address or CID is out of its on-chain type's range."""

    def __init__(self, field_name: str, reason: str) -> None:
        self.field_name = field_name
        self.reason = reason
        super().__init__(f"invalid {field_name}: {reason}")


class InvalidThreshold(KeyReleaseError, ValueError):
    """The committee parameters are out of range: 1 <= t <= n <= 255."""

    def __init__(self, threshold: int, size: int) -> None:
        self.threshold = threshold
        self.size = size
        super().__init__(f"threshold {threshold} of {size} nodes: need 1 <= t <= n <= 255")


class InconsistentCommittee(KeyReleaseError, ValueError):
    """The share keys do not lie on one polynomial whose value at 0 is the committee key."""

    def __init__(self, node_index: int | None) -> None:
        self.node_index = node_index
        where = "the committee key" if node_index is None else f"node {node_index}'s share key"
        super().__init__(f"{where} does not match the other share keys")


class UnknownNode(KeyReleaseError, LookupError):
    """A share names a node index that is not in the committee."""

    def __init__(self, node_index: int, size: int) -> None:
        self.node_index = node_index
        self.size = size
        super().__init__(f"node index {node_index} is outside the committee 1..{size}")


class MalformedCapsule(KeyReleaseError, ValueError):
    """A capsule has the wrong length or an invalid R."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed capsule: {reason}")


class CapsuleNotBound(KeyReleaseError):
    """The capsule's proof does not hold for this context: it was made for another chain,
    market, listing, version or CID, or its R was copied from another capsule."""

    def __init__(self) -> None:
        super().__init__(
            "the capsule's proof does not bind it to this chain, market, listing, version "
            "and CID; no node releases shares for it"
        )


class CapsuleOpenFailed(KeyReleaseError):
    """The combined key does not open the capsule under this context."""

    def __init__(self) -> None:
        super().__init__(
            "the capsule does not open: wrong context (chain, market, listing, version, cid) "
            "or shares from another committee"
        )


class InvalidBuyerKey(KeyReleaseError, ValueError):
    """A buyer X25519 public key that libsodium cannot seal to (wrong length or low order)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid buyer key: {reason}")


class SealedShareOpenFailed(KeyReleaseError):
    """The sealed share was not sealed to this buyer key, or was altered in transit."""

    def __init__(self, length: int) -> None:
        self.length = length
        super().__init__(
            f"cannot open a {length}-byte sealed share with this buyer key "
            "(sealed to another buyer, or altered)"
        )


class MalformedKeyShare(KeyReleaseError, ValueError):
    """An opened share does not parse: wrong length, index 0, invalid point or scalar."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed key share: {reason}")


class SealedShareMismatch(KeyReleaseError):
    """The share is for another debit or version than the one requested."""

    def __init__(
        self, expected_debit: int, expected_version: int, found_debit: int, found_version: int
    ) -> None:
        self.expected_debit = expected_debit
        self.expected_version = expected_version
        self.found_debit = found_debit
        self.found_version = found_version
        super().__init__(
            f"sealed share is for debit {found_debit} version {found_version}, "
            f"expected debit {expected_debit} version {expected_version}"
        )


class ShareKeyMismatch(KeyReleaseError, ValueError):
    """A share was checked against the share key of a different node index."""

    def __init__(self, node_index: int, key_index: int) -> None:
        self.node_index = node_index
        self.key_index = key_index
        super().__init__(f"share of node {node_index} checked against node {key_index}'s key")


class InvalidShareProof(KeyReleaseError):
    """Node `node_index` returned a share whose DLEQ proof does not verify."""

    def __init__(self, node_index: int) -> None:
        self.node_index = node_index
        super().__init__(f"node {node_index} returned a share with an invalid proof")


class NotEnoughShares(KeyReleaseError):
    """Fewer verified shares than the threshold."""

    def __init__(self, have: int, need: int) -> None:
        self.have = have
        self.need = need
        super().__init__(f"{have} verified share(s), the threshold is {need}")


class DuplicateShare(KeyReleaseError, ValueError):
    """Two shares from the same node index were given to combine."""

    def __init__(self, node_index: int) -> None:
        self.node_index = node_index
        super().__init__(f"two shares from node {node_index}")


class ShareForAnotherCapsule(KeyReleaseError, ValueError):
    """A verified share was verified against a different capsule or committee."""

    def __init__(self, node_index: int) -> None:
        self.node_index = node_index
        super().__init__(f"node {node_index}'s share was verified for another capsule or committee")


class MixedEpochShares(KeyReleaseError, ValueError):
    """A share verified under one committee epoch was given to combine for another.

    A reshare keeps Y but re-deals every share on a new polynomial (and may renumber the
    nodes), so Lagrange over shares of two epochs gives garbage: refuse before combining.
    """

    def __init__(self, node_index: int, share_epoch: int, committee_epoch: int) -> None:
        self.node_index = node_index
        self.share_epoch = share_epoch
        self.committee_epoch = committee_epoch
        super().__init__(
            f"node {node_index}'s share was verified in committee epoch {share_epoch}, "
            f"not in epoch {committee_epoch} being combined"
        )


class InvalidCeremonyParams(KeyReleaseError, ValueError):
    """The parameters of a ceremony are inconsistent (roster sizes, threshold, ids)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid ceremony parameters: {reason}")


class InvalidDealing(KeyReleaseError, ValueError):
    """A dealing is publicly invalid; its dealer is excluded without any complaint."""

    def __init__(self, dealer_index: int, fault: str, detail: str) -> None:
        self.dealer_index = dealer_index
        self.fault = fault
        self.detail = detail
        super().__init__(f"dealing of dealer {dealer_index} is invalid ({fault}): {detail}")


class MalformedCeremonyMessage(KeyReleaseError, ValueError):
    """A verdict, answer or result payload does not parse."""

    def __init__(self, kind: int, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"malformed ceremony message of kind {kind}: {reason}")


class EncryptionKeyMismatch(KeyReleaseError, ValueError):
    """The X25519 secret given is not the one registered for this roster index."""

    def __init__(self, node_index: int) -> None:
        self.node_index = node_index
        super().__init__(
            f"this X25519 secret does not match node {node_index}'s registered encryption key"
        )


class CeremonyIncomplete(KeyReleaseError):
    """The ceremony has no result (yet): the answer phase is open, or it failed."""

    def __init__(self, phase: str, failure: str | None) -> None:
        self.phase = phase
        self.failure = failure
        why = f"it failed: {failure}" if failure else "the answer phase has not closed"
        super().__init__(f"the ceremony has no result in phase {phase}: {why}")


class ShareUnavailable(KeyReleaseError):
    """A qualified dealer's share for this node neither opens nor was revealed in an answer.

    Happens to a node that stayed silent (did not complain in time) about a bad share."""

    def __init__(self, node_index: int, dealer_index: int) -> None:
        self.node_index = node_index
        self.dealer_index = dealer_index
        super().__init__(
            f"node {node_index} has no valid share from qualified dealer {dealer_index}"
        )


class ShareKeyMismatchAfterCeremony(KeyReleaseError):
    """The share a node computed does not match its share key Y_i from the transcript."""

    def __init__(self, node_index: int) -> None:
        self.node_index = node_index
        super().__init__(f"node {node_index}'s computed share does not match its share key")
