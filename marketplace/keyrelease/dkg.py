"""Committee ceremonies (DKG and reshare), the cryptography: dealings, verdicts, answers.

A Pedersen/Feldman DKG of the Gennaro-Jarecki-Krawczyk-Rabin family over edwards25519
(docs/protocol.md, "Committee ceremonies"). Each dealer j shares a polynomial f_j of degree
t-1 with Feldman commitments C_jk = a_jk·G and a Schnorr proof of possession of a_j0 bound
to the chain, market, ceremony and dealer index; recipient i's value f_j(i) travels in a
libsodium sealed box to i's X25519 key. In a reshare the dealers are the current committee
and a_j0 is the dealer's own share, so C_j0 must equal its share key Y_j.

Pure: no I/O, no clock. The phase rules (what counts, when) are in `ceremony.py`.
Nobody ever adds up the a_j0: no function here computes s.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
from eth_hash.auto import keccak

from marketplace.keyrelease.errors import (
    EncryptionKeyMismatch,
    InvalidCeremonyParams,
    InvalidDealing,
    InvalidPoint,
    InvalidScalar,
    MalformedCeremonyMessage,
)
from marketplace.keyrelease.group import (
    IDENTITY,
    Point,
    Scalar,
    SecretScalar,
    hash_to_scalar,
    tag,
)
from marketplace.keyrelease.keys import MAX_NODES, CommitteeKeys, NodeShare
from marketplace.keyrelease.shamir import evaluate, lagrange_coefficients

_POP_TAG = tag("dkg-pop")
_COEFFICIENT_TAG = tag("dkg-coefficient")
TRANSCRIPT_TAG = tag("dkg-transcript")

FORMAT = 0x01
"""First byte of every ceremony payload."""
SEED_SIZE = 32
SHARE_PLAINTEXT_SIZE = 32 + 8 + 1 + 1
"""f_j(i) (32 LE) || ceremonyId (8 BE) || dealer (1) || recipient (1)."""
SEALED_SHARE_SIZE = SHARE_PLAINTEXT_SIZE + sodium.crypto_box_SEALBYTES
"""90 bytes: the plaintext plus the sealed box's ephemeral key and tag."""
SIGNATURE_SIZE = 65
_UINT64_MAX = 2**64 - 1


class MessageKind(IntEnum):
    """The `kind` of a `CeremonyMessage` event."""

    DEALING = 1
    VERDICT = 2
    ANSWER = 3
    RESULT = 4


class Exclusion(StrEnum):
    """Why a dealer is not in QUAL: the named reasons a status display and an auditor show."""

    NO_DEALING = "no_dealing"
    MALFORMED = "malformed"
    WRONG_THRESHOLD = "wrong_threshold"
    WRONG_SIZE = "wrong_size"
    INVALID_POINT = "invalid_point"
    INVALID_POP = "invalid_pop"
    WRONG_CONSTANT_TERM = "wrong_constant_term"
    UNANSWERED_COMPLAINT = "unanswered_complaint"
    INVALID_ANSWER = "invalid_answer"


@dataclass(frozen=True, slots=True)
class PreviousCommittee:
    """The committee in force, for a reshare: its public keys and node addresses (1..n)."""

    keys: CommitteeKeys
    nodes: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.nodes) != self.keys.size:
            raise InvalidCeremonyParams(
                f"{len(self.nodes)} previous nodes for {self.keys.size} share keys"
            )


@dataclass(frozen=True, slots=True)
class CeremonyParams:
    """One ceremony as proposed on-chain. Recipients are the new roster (1..n); dealers are
    the new roster for a DKG and the previous committee for a reshare.

    `market` is the contract's 20-byte address; `nodes` and `encryption_keys` list the new
    roster in index order (node i at i-1).
    """

    chain_id: int
    market: bytes
    ceremony_id: int
    epoch: int
    threshold: int
    encryption_keys: tuple[bytes, ...]
    nodes: tuple[str, ...]
    previous: PreviousCommittee | None = None

    def __post_init__(self) -> None:
        n = len(self.nodes)
        if not 1 <= self.threshold <= n <= MAX_NODES:
            raise InvalidCeremonyParams(f"threshold {self.threshold} of {n} nodes")
        if len(self.encryption_keys) != n:
            raise InvalidCeremonyParams(f"{len(self.encryption_keys)} encryption keys, {n} nodes")
        if any(len(key) != 32 for key in self.encryption_keys):
            raise InvalidCeremonyParams("encryption keys must be 32 bytes")
        if len(self.market) != 20:
            raise InvalidCeremonyParams("market must be the 20-byte contract address")
        if not 0 < self.ceremony_id <= _UINT64_MAX or not 0 < self.epoch <= _UINT64_MAX:
            raise InvalidCeremonyParams("ceremony id and epoch must be in 1..2^64-1")
        for roster in (self.nodes, self.dealer_nodes):
            if len({node.lower() for node in roster}) != len(roster):
                raise InvalidCeremonyParams("a roster lists a node twice")

    @property
    def size(self) -> int:
        """n: the number of recipients (the new roster)."""
        return len(self.nodes)

    @property
    def is_reshare(self) -> bool:
        return self.previous is not None

    @property
    def dealer_nodes(self) -> tuple[str, ...]:
        return self.nodes if self.previous is None else self.previous.nodes

    @property
    def dealer_count(self) -> int:
        return len(self.dealer_nodes)

    @property
    def required_qualified(self) -> int:
        """|QUAL| needed: t_new for a DKG, t_old for a reshare (to interpolate the old s)."""
        return self.threshold if self.previous is None else self.previous.keys.threshold


def public_share(commitments: Sequence[Point], x: int) -> Point:
    """F(x) = Σ_k C_k·x^k, the commitment to f(x) (Horner's rule in the exponent)."""
    x_scalar = Scalar.from_int(x)
    result = IDENTITY
    for commitment in reversed(commitments):
        result = result * x_scalar + commitment
    return result


def _pop_challenge(params: CeremonyParams, dealer: int, c0: Point, a_point: Point) -> Scalar:
    return hash_to_scalar(
        _POP_TAG,
        params.chain_id.to_bytes(32, "big"),
        params.market,
        params.ceremony_id.to_bytes(8, "big"),
        bytes([dealer]),
        c0.to_bytes(),
        a_point.to_bytes(),
    )


def _share_trailer(params: CeremonyParams, dealer: int, recipient: int) -> bytes:
    return params.ceremony_id.to_bytes(8, "big") + bytes([dealer, recipient])


class DealerSecret:
    """A dealer's polynomial, derived from a 32-byte seed the node stores for the ceremony
    (so it can still answer complaints after a restart). For a reshare, a_0 is the dealer's
    own share and only the higher coefficients come from the seed.

    Prints as `DealerSecret(<secret>)`; the seed leaves only through `to_secret_bytes()`.
    """

    __slots__ = ("_coefficients", "_is_reshare", "_seed", "dealer_index", "threshold")

    def __init__(
        self, seed: bytes, dealer_index: int, threshold: int, old_share: NodeShare | None = None
    ) -> None:
        if len(seed) != SEED_SIZE:
            raise ValueError(f"a dealer seed is {SEED_SIZE} bytes")
        if not 1 <= dealer_index <= MAX_NODES or not 1 <= threshold <= MAX_NODES:
            raise InvalidCeremonyParams("dealer index and threshold must be in 1..255")
        if old_share is not None and old_share.index != dealer_index:
            raise InvalidCeremonyParams(
                f"dealer {dealer_index} reshares the share of node {old_share.index}"
            )
        self._seed = bytes(seed)
        self.dealer_index = dealer_index
        self.threshold = threshold
        coefficients = [
            hash_to_scalar(_COEFFICIENT_TAG, self._seed, bytes([k])) for k in range(threshold)
        ]
        if old_share is not None:
            coefficients[0] = old_share.secret._scalar
        self._coefficients: tuple[Scalar, ...] = tuple(coefficients)
        self._is_reshare = old_share is not None

    @classmethod
    def generate(
        cls, dealer_index: int, threshold: int, old_share: NodeShare | None = None
    ) -> DealerSecret:
        """A fresh seed from `secrets`."""
        return cls(secrets.token_bytes(SEED_SIZE), dealer_index, threshold, old_share)

    def to_secret_bytes(self) -> bytes:
        """The seed. Callers must not log or print it; store it only where the share goes."""
        return self._seed

    def share_for(self, recipient: int) -> SecretScalar:
        """f(recipient): the value sealed to that recipient (or revealed in an answer)."""
        return SecretScalar(evaluate(self._coefficients, recipient))

    def commitments(self) -> tuple[Point, ...]:
        return tuple(Point.base_mul(a) for a in self._coefficients)

    def dealing(self, params: CeremonyParams) -> bytes:
        """The DEALING payload: format, t, commitments, proof of possession, sealed shares."""
        self._check_params(params)
        commitments = self.commitments()
        k = SecretScalar.random()
        a_point = k.public_point()
        c = _pop_challenge(params, self.dealer_index, commitments[0], a_point)
        z = k._scalar + c * self._coefficients[0]
        sealed = [
            sodium.crypto_box_seal(
                self.share_for(i).to_secret_bytes() + _share_trailer(params, self.dealer_index, i),
                params.encryption_keys[i - 1],
            )
            for i in range(1, params.size + 1)
        ]
        return b"".join(
            (
                bytes([FORMAT, self.threshold]),
                *(c.to_bytes() for c in commitments),
                c.to_bytes(),
                z.to_bytes(),
                bytes([params.size]),
                *sealed,
            )
        )

    def answer(self, accusers: Iterable[int]) -> bytes:
        """The ANSWER payload: reveal f(i) for every accuser i (anyone checks it)."""
        ordered = sorted(set(accusers))
        if not ordered or len(ordered) > MAX_NODES or not 1 <= ordered[0] <= ordered[-1] <= 255:
            raise ValueError("an answer names 1..255 distinct accusers in 1..255")
        return bytes([FORMAT, len(ordered)]) + b"".join(
            bytes([i]) + self.share_for(i).to_secret_bytes() for i in ordered
        )

    def _check_params(self, params: CeremonyParams) -> None:
        if params.threshold != self.threshold:
            raise InvalidCeremonyParams(
                f"dealer secret for t={self.threshold}, ceremony has t={params.threshold}"
            )
        if self._is_reshare != params.is_reshare:
            raise InvalidCeremonyParams("a reshare dealer needs its old share, a DKG dealer none")
        if not 1 <= self.dealer_index <= params.dealer_count:
            raise InvalidCeremonyParams(f"dealer {self.dealer_index} is not in the dealer roster")

    def __repr__(self) -> str:
        return "DealerSecret(<secret>)"


@dataclass(frozen=True, slots=True)
class Dealing:
    """A publicly valid dealing: only `Dealing.from_bytes` makes one from a payload."""

    dealer: int
    commitments: tuple[Point, ...]
    sealed: tuple[bytes, ...]

    @classmethod
    def from_bytes(cls, payload: bytes, params: CeremonyParams, dealer_index: int) -> Dealing:
        """Parse and check everything anyone can check; raise `InvalidDealing(fault)`."""

        def fail(fault: Exclusion, detail: str) -> InvalidDealing:
            return InvalidDealing(dealer_index, fault.value, detail)

        t, n = params.threshold, params.size
        if len(payload) < 2 or payload[0] != FORMAT:
            raise fail(Exclusion.MALFORMED, "missing or unknown format byte")
        if payload[1] != t:
            raise fail(Exclusion.WRONG_THRESHOLD, f"t = {payload[1]}, expected {t}")
        tail = 2 + 32 * t
        if len(payload) < tail + 65:
            raise fail(Exclusion.MALFORMED, f"truncated at {len(payload)} bytes")
        if payload[tail + 64] != n:
            raise fail(Exclusion.WRONG_SIZE, f"n = {payload[tail + 64]}, expected {n}")
        expected = tail + 65 + n * SEALED_SHARE_SIZE
        if len(payload) != expected:
            raise fail(Exclusion.MALFORMED, f"{len(payload)} bytes, expected {expected}")
        try:
            commitments = tuple(
                Point.from_bytes(payload[2 + 32 * k : 34 + 32 * k], f"C_{k}") for k in range(t)
            )
        except InvalidPoint as e:
            raise fail(
                Exclusion.INVALID_POINT, f"{e.what} is not a valid non-identity point"
            ) from e
        try:
            c = Scalar.from_bytes(payload[tail : tail + 32])
            z = Scalar.from_bytes(payload[tail + 32 : tail + 64])
        except InvalidScalar as e:
            raise fail(Exclusion.INVALID_POP, "non-canonical proof scalar") from e
        a_point = Point.base_mul(z) - commitments[0] * c
        if _pop_challenge(params, dealer_index, commitments[0], a_point) != c:
            raise fail(Exclusion.INVALID_POP, "the proof of possession does not verify")
        if params.previous is not None:
            old = params.previous.keys.share_key(dealer_index).point
            if commitments[0] != old:
                raise fail(Exclusion.WRONG_CONSTANT_TERM, "C_0 is not the dealer's share key")
        start = tail + 65
        sealed = tuple(
            payload[start + SEALED_SHARE_SIZE * i : start + SEALED_SHARE_SIZE * (i + 1)]
            for i in range(n)
        )
        return cls(dealer_index, commitments, sealed)

    def public_share(self, x: int) -> Point:
        """F_j(x): what f_j(x)·G must equal."""
        return public_share(self.commitments, x)

    def check_value(self, x: int, value: Scalar) -> bool:
        """Does `value` equal f_j(x)? (Used for revealed answers.)"""
        return Point.base_mul(value) == self.public_share(x)


def parse_dealing(
    payload: bytes, params: CeremonyParams, dealer_index: int
) -> Dealing | InvalidDealing:
    """`Dealing.from_bytes` returning the error instead of raising it."""
    try:
        return Dealing.from_bytes(payload, params, dealer_index)
    except InvalidDealing as e:
        return e


def check_encryption_key(
    params: CeremonyParams, recipient_index: int, x25519_secret: nacl.public.PrivateKey
) -> None:
    """Raise `EncryptionKeyMismatch` unless the secret belongs to this roster index."""
    if not 1 <= recipient_index <= params.size:
        raise InvalidCeremonyParams(f"node {recipient_index} is not in the new roster")
    if bytes(x25519_secret.public_key) != params.encryption_keys[recipient_index - 1]:
        raise EncryptionKeyMismatch(recipient_index)


def open_share(
    dealing: Dealing,
    params: CeremonyParams,
    recipient_index: int,
    x25519_secret: nacl.public.PrivateKey,
) -> SecretScalar | None:
    """Open my sealed share and check it; None means "complain about this dealer".

    Valid iff the box opens, its trailer names this ceremony, dealer and recipient, the
    value is a canonical non-zero scalar, and value·G == F_j(recipient).
    """
    check_encryption_key(params, recipient_index, x25519_secret)
    box = dealing.sealed[recipient_index - 1]
    try:
        plain = sodium.crypto_box_seal_open(
            box, bytes(x25519_secret.public_key), bytes(x25519_secret)
        )
    except nacl.exceptions.CryptoError:
        return None
    if len(plain) != SHARE_PLAINTEXT_SIZE:
        return None
    if plain[32:] != _share_trailer(params, dealing.dealer, recipient_index):
        return None
    try:
        value = Scalar.from_bytes(plain[:32])
    except InvalidScalar:
        return None
    if value.is_zero or not dealing.check_value(recipient_index, value):
        return None
    return SecretScalar(value)


@dataclass(frozen=True, slots=True)
class Verdict:
    """VERDICT payload: the dealers this recipient accuses (empty: all shares verified)."""

    accused: tuple[int, ...]

    def to_bytes(self) -> bytes:
        return bytes([FORMAT, len(self.accused), *self.accused])

    @classmethod
    def from_bytes(cls, payload: bytes, params: CeremonyParams) -> Verdict:
        if len(payload) < 2 or payload[0] != FORMAT:
            raise MalformedCeremonyMessage(MessageKind.VERDICT, "missing or unknown format byte")
        m = payload[1]
        if len(payload) != 2 + m:
            raise MalformedCeremonyMessage(MessageKind.VERDICT, f"{len(payload)} bytes for m={m}")
        accused = tuple(payload[2:])
        if any(a >= b for a, b in itertools.pairwise(accused)):
            raise MalformedCeremonyMessage(MessageKind.VERDICT, "accused not strictly increasing")
        if accused and not 1 <= accused[0] <= accused[-1] <= params.dealer_count:
            raise MalformedCeremonyMessage(MessageKind.VERDICT, "accused index out of range")
        return cls(accused)


@dataclass(frozen=True, slots=True)
class Answer:
    """ANSWER payload: accuser → f_j(accuser), revealed so anyone can check it."""

    revealed: Mapping[int, Scalar]

    def to_bytes(self) -> bytes:
        ordered = sorted(self.revealed)
        return bytes([FORMAT, len(ordered)]) + b"".join(
            bytes([i]) + self.revealed[i].to_bytes() for i in ordered
        )

    @classmethod
    def from_bytes(cls, payload: bytes, params: CeremonyParams) -> Answer:
        if len(payload) < 2 or payload[0] != FORMAT:
            raise MalformedCeremonyMessage(MessageKind.ANSWER, "missing or unknown format byte")
        m = payload[1]
        if len(payload) != 2 + 33 * m:
            raise MalformedCeremonyMessage(MessageKind.ANSWER, f"{len(payload)} bytes for m={m}")
        revealed: dict[int, Scalar] = {}
        previous = 0
        for entry in range(m):
            start = 2 + 33 * entry
            accuser = payload[start]
            if not previous < accuser <= params.size:
                raise MalformedCeremonyMessage(
                    MessageKind.ANSWER, "accusers not strictly increasing in 1..n"
                )
            try:
                revealed[accuser] = Scalar.from_bytes(payload[start + 1 : start + 33])
            except InvalidScalar as e:
                raise MalformedCeremonyMessage(MessageKind.ANSWER, "non-canonical share") from e
            previous = accuser
        return cls(revealed)


def encode_result(signature: bytes) -> bytes:
    """RESULT payload: format || the 65-byte EIP-712 signature of the CommitteeResult."""
    if len(signature) != SIGNATURE_SIZE:
        raise ValueError(f"a result signature is {SIGNATURE_SIZE} bytes")
    return bytes([FORMAT]) + signature


def decode_result(payload: bytes) -> bytes:
    if len(payload) != 1 + SIGNATURE_SIZE or payload[0] != FORMAT:
        raise MalformedCeremonyMessage(MessageKind.RESULT, f"{len(payload)} bytes")
    return payload[1:]


def dealer_weights(params: CeremonyParams, qualified: Iterable[int]) -> dict[int, Scalar]:
    """The weight of each qualified dealer: 1 in a DKG, λ_j (Lagrange at 0 over QUAL's
    old indices) in a reshare, so Σ w_j·a_j0 is the (never computed) old s."""
    indices = sorted(qualified)
    if params.previous is None:
        one = Scalar.from_int(1)
        return {j: one for j in indices}
    return lagrange_coefficients(indices)


def committee_public_keys(
    params: CeremonyParams, dealings: Mapping[int, Dealing], qualified: Iterable[int]
) -> tuple[Point, tuple[Point, ...]]:
    """(Y, (Y_1..Y_n)) from QUAL's commitments.

    The weighted commitments are added first (A_k = Σ w_j·C_jk), so Y_i costs t
    multiplications per node instead of t per node per dealer.
    """
    weights = dealer_weights(params, qualified)
    aggregate = [IDENTITY] * params.threshold
    for j, weight in weights.items():
        for k, commitment in enumerate(dealings[j].commitments):
            term = commitment if params.previous is None else commitment * weight
            aggregate[k] = aggregate[k] + term
    share_keys = tuple(public_share(aggregate, i) for i in range(1, params.size + 1))
    return aggregate[0], share_keys


def final_share(
    params: CeremonyParams, qualified: Iterable[int], values: Mapping[int, Scalar]
) -> SecretScalar:
    """s_i = Σ_{j∈QUAL} w_j·f_j(i), from the verified value of every qualified dealer."""
    total = Scalar.from_int(0)
    for j, weight in dealer_weights(params, qualified).items():
        total = total + weight * values[j]
    return SecretScalar(total)


def transcript_hash(ceremony_id: int, counted: Iterable[tuple[int, int, bytes]]) -> bytes:
    """keccak256(tag || ceremonyId(8 BE) || per counted message, in (kind, sender index)
    order: kind(1) || sender index(1) || keccak256(payload))."""
    parts = [TRANSCRIPT_TAG, ceremony_id.to_bytes(8, "big")]
    for kind, sender, payload in sorted(counted, key=lambda entry: (entry[0], entry[1])):
        parts.append(bytes([kind, sender]) + keccak(payload))
    return keccak(b"".join(parts))
