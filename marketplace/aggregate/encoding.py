"""Queries and how an owner's value becomes a field vector (and the aggregate a result).

Values are quantized to integers by the query's `scale` (a power of ten). Encodings:
- histogram over k bins: a one-hot vector of length k (out-of-range values clipped to the
  first/last bin);
- sum and mean over [lo, hi]: v' = clip(value·scale, lo, hi) - lo as b = bit_length(hi-lo)
  bits (least significant first), then the b bits of (hi-lo) - v'. Both halves are bits
  and add up to hi-lo, which proves 0 <= v' <= hi-lo on shares;
- count: one element in {0, 1}.
The nodes aggregate the *projection* of each contribution: the vector itself for histogram
and count, the one element Σ 2^m a_m = v' for sum and mean (so noise is added to the sum,
not to each bit, and the sensitivity is hi - lo).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from marketplace.aggregate.errors import FieldOverflow, InvalidQuery
from marketplace.aggregate.field import P, Vector, centered

STATS = ("count", "sum", "mean", "histogram")
MAX_RANGE_BITS = 30
"""hi - lo < 2^30, so v' + ((hi-lo) - v') never wraps around P."""
MAX_BINS = 1 << 20
Z95 = 1.959963984540054
"""The two-sided 95 % quantile of the normal distribution (the discrete Gaussian's
intervals use its normal approximation)."""
SAFETY_SIGMAS = 12
"""A decoded aggregate must stay this many noise deviations inside (-P/2, P/2]."""


@dataclass(frozen=True, slots=True)
class Query:
    """One aggregate query, as the buyer's query document states it (hashed on chain)."""

    stat: str
    field: str
    epsilon: float
    delta: float
    scale: int = 1
    lo: int = 0
    hi: int = 0
    bins: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.stat not in STATS:
            raise InvalidQuery(f"stat must be one of {', '.join(STATS)}")
        if not self.field:
            raise InvalidQuery("field is empty")
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise InvalidQuery("epsilon must be a finite positive number")
        if not 0 < self.delta < 1:
            raise InvalidQuery("delta must be in (0, 1)")
        if self.scale < 1 or 10 ** (len(str(self.scale)) - 1) != self.scale:
            raise InvalidQuery("scale must be a power of ten")
        if self.stat in ("sum", "mean") and not 0 < self.hi - self.lo < 2**MAX_RANGE_BITS:
            raise InvalidQuery("need lo < hi with hi - lo < 2^30 (quantized units)")
        if self.stat == "histogram":
            if not 2 <= len(self.bins) <= MAX_BINS + 1:
                raise InvalidQuery("a histogram needs 2..2^20+1 bin edges")
            if any(b <= a for a, b in zip(self.bins, self.bins[1:], strict=False)):
                raise InvalidQuery("bin edges must be strictly increasing")

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "stat": self.stat,
            "field": self.field,
            "scale": self.scale,
            "epsilon": self.epsilon,
            "delta": self.delta,
        }
        if self.stat in ("sum", "mean"):
            document |= {"lo": self.lo, "hi": self.hi}
        if self.stat == "histogram":
            document["bins"] = list(self.bins)
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Query:
        try:
            ints = {k: document[k] for k in ("scale", "lo", "hi") if k in document}
            if any(isinstance(v, bool) or not isinstance(v, int) for v in ints.values()):
                raise InvalidQuery("scale, lo and hi must be integers")
            bins = tuple(document.get("bins", ()))
            if any(isinstance(b, bool) or not isinstance(b, int) for b in bins):
                raise InvalidQuery("bin edges must be integers")
            return cls(
                stat=str(document["stat"]),
                field=str(document["field"]),
                epsilon=float(document["epsilon"]),
                delta=float(document["delta"]),
                bins=bins,
                **ints,
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, InvalidQuery):
                raise
            raise InvalidQuery(f"query document: {type(e).__name__}") from e


def range_bits(query: Query) -> int:
    return (query.hi - query.lo).bit_length()


def dimension(query: Query) -> int:
    """Length of one owner's contribution vector."""
    if query.stat == "histogram":
        return len(query.bins) - 1
    if query.stat == "count":
        return 1
    return 2 * range_bits(query)


def output_dimension(query: Query) -> int:
    """Length of the aggregate (and of each node's noise vector)."""
    return len(query.bins) - 1 if query.stat == "histogram" else 1


def l2_sensitivity(query: Query) -> float:
    """How far one owner's projected contribution can move the aggregate (replace-one:
    the set of contributors is public on chain)."""
    if query.stat == "histogram":
        return math.sqrt(2)
    if query.stat == "count":
        return 1.0
    return float(query.hi - query.lo)


def quantize(query: Query, value: float) -> int:
    return round(value * query.scale)


def encode(query: Query, value: float | bool) -> Vector:
    """An honest owner's contribution vector (clipped; never raises for a finite value)."""
    if query.stat == "count":
        return np.asarray([1 if value else 0], dtype=np.int64)
    if not math.isfinite(float(value)):
        raise InvalidQuery("the value to encode is not finite")
    q = quantize(query, float(value))
    if query.stat == "histogram":
        k = len(query.bins) - 1
        position = int(np.searchsorted(np.asarray(query.bins), q, side="right")) - 1
        one_hot = np.zeros(k, dtype=np.int64)
        one_hot[min(max(position, 0), k - 1)] = 1
        return one_hot
    width = query.hi - query.lo
    v = min(max(q, query.lo), query.hi) - query.lo
    b = range_bits(query)
    bits = [(v >> m) & 1 for m in range(b)] + [((width - v) >> m) & 1 for m in range(b)]
    return np.asarray(bits, dtype=np.int64)


def project(query: Query, vectors: Vector, *, prime: int = P) -> Vector:
    """The part of each contribution that is aggregated (last axis: encoding → output).

    Linear, so a node applies it to its shares: Σ 2^m a_m for sum and mean."""
    if query.stat in ("histogram", "count"):
        return vectors
    b = range_bits(query)
    weights = np.asarray([1 << m for m in range(b)], dtype=np.int64)
    weighted = (vectors[..., :b] * weights) % prime
    return np.asarray(weighted.sum(axis=-1, keepdims=True) % prime, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class LinearConstraint:
    """weights · x == target for every valid contribution (checked on shares)."""

    weights: Vector
    target: int


def linear_constraint(query: Query) -> LinearConstraint | None:
    """Histogram: Σ x = 1. Sum/mean: Σ 2^m a_m + Σ 2^m c_m = hi - lo. Count: none."""
    if query.stat == "histogram":
        return LinearConstraint(np.ones(dimension(query), dtype=np.int64), 1)
    if query.stat == "count":
        return None
    powers = [1 << m for m in range(range_bits(query))]
    return LinearConstraint(np.asarray(powers * 2, dtype=np.int64), query.hi - query.lo)


@dataclass(frozen=True, slots=True)
class Result:
    """A decoded noisy answer: one value per cell (histogram) or one value, in the field's
    units, with the noise standard deviation and a 95 % interval per value."""

    stat: str
    values: tuple[float, ...]
    noise_sigma: float
    intervals: tuple[tuple[float, float], ...]
    contributors: int


def check_capacity(query: Query, contributors: int, noise_sigma: float) -> None:
    """Refuse an aggregate that could have wrapped around the field."""
    per_owner = 1 if query.stat in ("histogram", "count") else query.hi - query.lo
    bound = contributors * per_owner + SAFETY_SIGMAS * noise_sigma
    if bound >= P // 2:
        raise FieldOverflow(
            f"{contributors} contributors x range {per_owner} plus noise exceed 2^30: "
            "use a coarser scale or a narrower range"
        )


def decode(query: Query, aggregate: Vector, contributors: int, noise_sigma: float) -> Result:
    """The buyer's answer from the reconstructed aggregate (output_dimension entries).

    `noise_sigma` is the deviation of the total noise in quantized units; mean divides
    the sum, and its deviation, by the (public) number of valid contributions."""
    if contributors < 1:
        raise InvalidQuery("no valid contributions to decode")
    check_capacity(query, contributors, noise_sigma)
    raw = [float(v) for v in centered(np.asarray(aggregate, dtype=np.int64))]
    if len(raw) != output_dimension(query):
        raise InvalidQuery(f"aggregate has {len(raw)} entries, expected {output_dimension(query)}")
    if query.stat in ("sum", "mean"):
        raw = [(raw[0] + contributors * query.lo) / query.scale]
        sigma = noise_sigma / query.scale
        if query.stat == "mean":
            raw, sigma = [raw[0] / contributors], sigma / contributors
    else:
        sigma = noise_sigma
    half = Z95 * sigma
    return Result(
        stat=query.stat,
        values=tuple(raw),
        noise_sigma=sigma,
        intervals=tuple((v - half, v + half) for v in raw),
        contributors=contributors,
    )
