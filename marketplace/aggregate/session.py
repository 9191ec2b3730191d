"""The aggregation protocol as pure per-step functions (what each gateway calls per round).

After the contribution deadline, with the candidates (the contributions recorded on chain,
in chain order) fixed:
1. round 1, every node as a dealer (`deal_round1`): per candidate, a degree-2(t-1) sharing
   of zero and a degree-(t-1) sharing of a random mask (validity.py), plus a Shamir sharing
   of its own discrete-Gaussian noise vector; one sealed box per recipient.
2. round 2, every node (`make_opening`): its masked check values over its shares of every
   candidate, and which candidates it could not open; published as they are.
3. everyone (`decide`): a candidate counts iff every node opened it and its checks hold.
4. every node (`partial`): Σ over counted candidates of its projected shares + Σ of the
   noise shares it received, sealed to the buyer (`seal_partial`).
5. the buyer (`open_partial`, `combine`): any t partials give Σx + noise; extra partials
   expose (and with t+2 or more, name) a node whose partial is off.

Every node must use the same dealer set (the round-1 messages recorded before the round's
cut-off): masks and noise from dealers the others did not count break the checks.
Formats: docs/protocol.md §20.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
import numpy as np
import numpy.typing as npt

from marketplace.aggregate.encoding import (
    Query,
    dimension,
    linear_constraint,
    output_dimension,
    project,
)
from marketplace.aggregate.errors import (
    BundleMismatch,
    InconsistentShares,
    InvalidParameters,
    MalformedBundle,
    NotEnoughShares,
    OpenFailed,
)
from marketplace.aggregate.field import (
    P,
    Vector,
    check_elements,
    from_bytes,
    reduce,
    to_bytes,
)
from marketplace.aggregate.noise import NoisePlan, sample_node_noise
from marketplace.aggregate.shamir import check_committee, check_degree, reconstruct, share
from marketplace.aggregate.validity import (
    DEGREE,
    Opening,
    check_coefficients,
    mask_sharing,
    open_checks,
    verdicts,
    zero_sharing,
)

ROUND1 = "datadebit/aggregate-round1/v1"
ROUND2 = "datadebit/aggregate-round2/v1"
PARTIAL = "datadebit/aggregate-partial/v1"
_UINT256 = 2**256


@dataclass(frozen=True, slots=True)
class Aggregation:
    """One aggregate debit as every node sees it from the chain."""

    chain_id: int
    aggregator: bytes
    debit_id: int
    query: Query
    n: int
    t: int
    candidates: tuple[bytes, ...]
    plan: NoisePlan

    def __post_init__(self) -> None:
        check_committee(self.n, self.t)
        if 2 * self.t - 1 > self.n:
            raise InvalidParameters(f"aggregation needs n >= 2t-1 (t = {self.t}, n = {self.n})")
        if len(self.aggregator) != 20 or any(len(owner) != 20 for owner in self.candidates):
            raise InvalidParameters("aggregator and owners are 20-byte addresses")
        if not 0 <= self.chain_id < _UINT256 or not 0 <= self.debit_id < _UINT256:
            raise InvalidParameters("chain id and debit id are uint256")
        if self.plan.dimension != output_dimension(self.query) or self.plan.threshold != self.t:
            raise InvalidParameters("the noise plan is for another query or threshold")

    @property
    def count(self) -> int:
        return len(self.candidates)

    @property
    def candidates_digest(self) -> bytes:
        """BLAKE2b-256 of the candidate owners in order: binds round messages to the set."""
        return hashlib.blake2b(b"".join(self.candidates), digest_size=32).digest()

    def header(self, tag: str) -> bytes:
        return b"".join(
            (
                tag.encode(),
                self.chain_id.to_bytes(32, "big"),
                self.aggregator,
                self.debit_id.to_bytes(32, "big"),
                self.candidates_digest,
            )
        )


@dataclass(frozen=True, slots=True)
class DealtShares:
    """What recipient i received from one dealer in round 1."""

    zero: Vector
    mask: Vector
    noise: Vector


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedBundle(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise MalformedBundle(f"{what} is not base64") from e


def _json_object(payload: bytes, schema: str) -> dict[str, Any]:
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedBundle("not JSON") from e
    if not isinstance(document, dict):
        raise MalformedBundle("not a JSON object")
    if document.get("schema") != schema:
        raise BundleMismatch(f"schema is not {schema}")
    return document


def _elements(data: bytes, count: int, what: str) -> Vector:
    if len(data) != 4 * count:
        raise MalformedBundle(f"{what}: {len(data)} bytes for {count} elements")
    values = from_bytes(data, count)
    if not check_elements(values):
        raise MalformedBundle(f"{what}: an element is not below p")
    return values


# --- round 1 -----------------------------------------------------------------------------


def _round1_prefix(agg: Aggregation, dealer: int, recipient: int) -> bytes:
    sizes = agg.count.to_bytes(4, "big") + agg.plan.dimension.to_bytes(4, "big")
    return agg.header(ROUND1) + bytes([dealer, recipient]) + sizes


def deal_round1(agg: Aggregation, dealer: int, node_keys: Sequence[bytes]) -> bytes:
    """Dealer `dealer`'s round-1 payload: for each recipient a sealed box of its zero
    shares, mask shares (one per candidate) and noise share (one per output entry)."""
    if len(node_keys) != agg.n or not 1 <= dealer <= agg.n:
        raise InvalidParameters("one X25519 key per node, and a dealer in 1..n")
    zeros = zero_sharing(agg.count, agg.n, agg.t)
    masks = mask_sharing(agg.count, agg.n, agg.t)
    noise = share(reduce(sample_node_noise(agg.plan, agg.plan.dimension)), agg.n, agg.t)
    boxes = {
        str(i): _b64(
            sodium.crypto_box_seal(
                _round1_prefix(agg, dealer, i)
                + to_bytes(zeros[i])
                + to_bytes(masks[i])
                + to_bytes(noise[i]),
                node_keys[i - 1],
            )
        )
        for i in range(1, agg.n + 1)
    }
    document = {"schema": ROUND1, "debitId": agg.debit_id, "dealer": dealer, "shares": boxes}
    return json.dumps(document, separators=(",", ":")).encode()


def open_round1(
    agg: Aggregation,
    payload: bytes,
    dealer: int,
    recipient: int,
    private_key: nacl.public.PrivateKey,
) -> DealtShares:
    """Recipient's shares from dealer's round-1 payload (dealer = the on-chain sender)."""
    document = _json_object(payload, ROUND1)
    if document.get("dealer") != dealer or document.get("debitId") != agg.debit_id:
        raise BundleMismatch("round-1 payload names another dealer or debit")
    shares = document.get("shares")
    if not isinstance(shares, dict):
        raise MalformedBundle("round-1 shares is not an object")
    box = _unb64(shares.get(str(recipient)), f"round-1 share for node {recipient}")
    try:
        plain = sodium.crypto_box_seal_open(box, bytes(private_key.public_key), bytes(private_key))
    except nacl.exceptions.CryptoError as e:
        raise OpenFailed(f"dealer {dealer}'s box for node {recipient} does not open") from e
    prefix = _round1_prefix(agg, dealer, recipient)
    if plain[: len(prefix)] != prefix:
        raise BundleMismatch("round-1 box is for another debit, candidate set or node")
    body, count, dim = plain[len(prefix) :], agg.count, agg.plan.dimension
    if len(body) != 4 * (2 * count + dim):
        raise MalformedBundle(f"round-1 box has {len(body)} bytes of values")
    return DealtShares(
        zero=_elements(body[: 4 * count], count, "zero shares"),
        mask=_elements(body[4 * count : 8 * count], count, "mask shares"),
        noise=_elements(body[8 * count :], dim, "noise shares"),
    )


# --- round 2 -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeOpening:
    """A node's round-2 message: its masked check values and the candidates it could not
    open (their rows were zeros)."""

    opening: Opening
    unopened: tuple[int, ...]


def make_opening(
    agg: Aggregation,
    seed: bytes,
    shares: Vector,
    unopened: Sequence[int],
    received: Mapping[int, DealtShares],
) -> NodeOpening:
    """Node's opening over its shares (count x dimension, zero rows for `unopened`)."""
    d = dimension(agg.query)
    if shares.shape != (agg.count, d):
        raise InvalidParameters(f"shares of shape {shares.shape}, expected {(agg.count, d)}")
    opening = open_checks(
        shares,
        check_coefficients(seed, d),
        check_coefficients(seed, d, purpose=DEGREE),
        linear_constraint(agg.query),
        {j: r.zero for j, r in received.items()},
        {j: r.mask for j, r in received.items()},
    )
    return NodeOpening(opening, tuple(sorted(set(unopened))))


def encode_opening(agg: Aggregation, node: int, opening: NodeOpening) -> bytes:
    o = opening.opening
    document = {
        "schema": ROUND2,
        "debitId": agg.debit_id,
        "node": node,
        "candidates": "0x" + agg.candidates_digest.hex(),
        "unopened": list(opening.unopened),
        "products": _b64(to_bytes(o.products)),
        "linear": None if o.linear is None else _b64(to_bytes(o.linear)),
        "degree": _b64(to_bytes(o.degree)),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def decode_opening(agg: Aggregation, payload: bytes, node: int) -> NodeOpening:
    """A node's published round-2 message (node = the on-chain sender)."""
    document = _json_object(payload, ROUND2)
    if document.get("node") != node or document.get("debitId") != agg.debit_id:
        raise BundleMismatch("round-2 payload names another node or debit")
    if document.get("candidates") != "0x" + agg.candidates_digest.hex():
        raise BundleMismatch("round-2 payload is for another candidate set")
    unopened = document.get("unopened")
    if not isinstance(unopened, list) or any(
        isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < agg.count for k in unopened
    ):
        raise MalformedBundle("unopened must list candidate positions")
    has_linear = linear_constraint(agg.query) is not None
    if (document.get("linear") is None) == has_linear:
        raise MalformedBundle("linear checks present for count or missing otherwise")
    count = agg.count
    linear = (
        _elements(_unb64(document["linear"], "linear"), count, "linear") if has_linear else None
    )
    opening = Opening(
        products=_elements(_unb64(document.get("products"), "products"), count, "products"),
        linear=linear,
        degree=_elements(_unb64(document.get("degree"), "degree"), count, "degree"),
    )
    return NodeOpening(opening, tuple(sorted(set(unopened))))


def decide(agg: Aggregation, openings: Mapping[int, NodeOpening]) -> npt.NDArray[np.bool_]:
    """Which candidates count: opened by every node that published, and valid on the
    checks. Every node computes the same answer from the same published openings."""
    valid = verdicts({i: o.opening for i, o in openings.items()}, agg.t)
    for o in openings.values():
        valid[list(o.unopened)] = False
    return valid


# --- partials ----------------------------------------------------------------------------


def partial(
    agg: Aggregation,
    shares: Vector,
    valid: npt.NDArray[np.bool_],
    received: Mapping[int, DealtShares],
) -> Vector:
    """Σ over counted candidates of the projected shares + Σ of the received noise shares.

    Refuses fewer dealers than the noise plan was calibrated for."""
    if len(received) < agg.plan.dealers:
        raise NotEnoughShares("noise dealers", len(received), agg.plan.dealers)
    projected = project(agg.query, shares[valid])
    total: Vector = np.zeros(agg.plan.dimension, dtype=np.int64)
    if len(projected):
        total = np.asarray(projected.sum(axis=0) % P, dtype=np.int64)
    for r in received.values():
        total = (total + r.noise) % P
    return total


def _partial_prefix(agg: Aggregation, node: int, counted: int, dealers: int) -> bytes:
    sizes = counted.to_bytes(4, "big") + bytes([dealers]) + agg.plan.dimension.to_bytes(4, "big")
    return agg.header(PARTIAL) + bytes([node]) + sizes


@dataclass(frozen=True, slots=True)
class Partial:
    """A node's opened partial sum, with how many contributions and dealers it covers."""

    node: int
    values: Vector
    counted: int
    dealers: int


def seal_partial(agg: Aggregation, result: Partial, buyer_key: bytes) -> bytes:
    """The partial sealed to the buyer's X25519 key (the gateway signs and logs the box)."""
    prefix = _partial_prefix(agg, result.node, result.counted, result.dealers)
    return sodium.crypto_box_seal(prefix + to_bytes(result.values), buyer_key)


def open_partial(
    agg: Aggregation, sealed: bytes, node: int, buyer_private_key: nacl.public.PrivateKey
) -> Partial:
    try:
        plain = sodium.crypto_box_seal_open(
            sealed, bytes(buyer_private_key.public_key), bytes(buyer_private_key)
        )
    except nacl.exceptions.CryptoError as e:
        raise OpenFailed(f"node {node}'s partial is sealed to another key or altered") from e
    head = len(agg.header(PARTIAL))
    if len(plain) < head + 10:
        raise MalformedBundle("partial too short")
    counted = int.from_bytes(plain[head + 1 : head + 5], "big")
    dealers = plain[head + 5]
    prefix = _partial_prefix(agg, node, counted, dealers)
    if plain[: len(prefix)] != prefix:
        raise BundleMismatch("the partial is for another debit, candidate set or node")
    values = _elements(plain[len(prefix) :], agg.plan.dimension, "partial")
    return Partial(node, values, counted, dealers)


def combine(partials: Mapping[int, Vector], t: int) -> Vector:
    """Σx + noise from any t partials; raise `InconsistentShares` (naming the node when
    identifiable) if extra partials disagree. Drop the named node and combine again."""
    if len(partials) < t:
        raise NotEnoughShares("partials", len(partials), t)
    report = check_degree(partials, t - 1)
    if not report.consistent:
        raise InconsistentShares("partials", report.culprit)
    return reconstruct(partials, t)
