"""Discrete-Gaussian noise for the aggregate, calibrated and sampled by OpenDP.

The buyer must see Σx + e with e at least as noisy as one discrete Gaussian of deviation
sigma, where sigma meets the query's (ε, δ) for its L2 sensitivity. Each of the `dealers` nodes
adds its own N_Z(0, sigma_node²) through a Shamir sharing; up to t-1 colluding nodes know (and
can subtract) theirs, so sigma_node = sigma / sqrt(dealers - t + 1): the honest nodes' noise alone
has variance >= sigma². The sum of independent discrete Gaussians is not exactly a discrete
Gaussian; its distance from one (Kairouz, Liu and Steinke, "The Distributed Discrete
Gaussian Mechanism", 2021) is negligible once sigma_node >= 2, so sigma_node is floored there
(more noise never weakens the guarantee).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import opendp.prelude as dp

from marketplace.aggregate.encoding import Query, l2_sensitivity, output_dimension
from marketplace.aggregate.errors import InvalidParameters
from marketplace.aggregate.field import Vector
from marketplace.aggregate.shamir import check_committee

MIN_NODE_SIGMA = 2.0


@dataclass(frozen=True, slots=True)
class NoisePlan:
    """sigma (total, from OpenDP's accountant) and sigma_node (what each dealer samples)."""

    sigma: float
    sigma_node: float
    dealers: int
    threshold: int
    epsilon: float
    delta: float
    sensitivity: float
    dimension: int

    @property
    def honest_dealers(self) -> int:
        """Dealers whose noise the buyer sees even if t-1 of them collude."""
        return self.dealers - self.threshold + 1

    def total_sigma(self, dealers: int) -> float:
        """Deviation (upper bound) of the noise in the aggregate when `dealers` nodes dealt."""
        return self.sigma_node * math.sqrt(dealers)

    @classmethod
    def without_noise_for_tests(cls, dimension: int, n: int, t: int) -> NoisePlan:
        """ε = ∞: no noise. For correctness tests only; no query can produce it."""
        return cls(0.0, 0.0, n, t, math.inf, 0.0, 0.0, dimension)


def _space() -> tuple[Any, Any]:
    # make_gaussian is in OpenDP's "contrib" set; enabling it is idempotent, done here
    # rather than at import time.
    dp.enable_features("contrib")
    return dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="f64")


def _approx_dp(scale: float, delta: float) -> Any:
    """Discrete Gaussian (zCDP) → approximate DP at fixed δ: OpenDP's own accountant."""
    gaussian = dp.m.make_gaussian(*_space(), scale=scale)
    return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(gaussian), delta)


def calibrate(query: Query, n: int, t: int, *, dealers: int | None = None) -> NoisePlan:
    """sigma for the query's (ε, δ) by OpenDP's binary search on the scale.

    `dealers` (default n) is the fewest nodes whose round-1 noise the aggregation will
    accept: calibrating for n - 1 keeps the guarantee when one node misses round 1."""
    check_committee(n, t)
    dealers = n if dealers is None else dealers
    if not t <= dealers <= n:
        raise InvalidParameters(f"{dealers} dealers: need t <= dealers <= n")
    sensitivity = l2_sensitivity(query)
    target = (query.epsilon, query.delta)
    sigma = float(
        dp.binary_search_param(
            lambda s: _approx_dp(s, query.delta), d_in=sensitivity, d_out=target, T=float
        )
    )
    if not _approx_dp(sigma, query.delta).check(sensitivity, target):
        raise InvalidParameters("OpenDP found no scale meeting (epsilon, delta)")
    sigma_node = max(sigma / math.sqrt(dealers - t + 1), MIN_NODE_SIGMA)
    return NoisePlan(
        sigma=sigma,
        sigma_node=sigma_node,
        dealers=dealers,
        threshold=t,
        epsilon=query.epsilon,
        delta=query.delta,
        sensitivity=sensitivity,
        dimension=output_dimension(query),
    )


def committee_noise_plan(query: Query, n: int, t: int) -> NoisePlan:
    """The plan every gateway and the buyer use: calibrated for n - 1 dealers (at least
    t), so the guarantee holds when one node misses round 1; the buyer's sigma must be
    exactly the gateways'."""
    return calibrate(query, n, t, dealers=max(t, n - 1))


def sample_node_noise(plan: NoisePlan, dimension: int) -> Vector:
    """One node's noise vector (signed integers): OpenDP's discrete Gaussian sampler
    applied to a zero vector. OpenDP draws its bits from a cryptographic generator."""
    if dimension != plan.dimension:
        raise InvalidParameters(f"noise of dimension {dimension}, plan is for {plan.dimension}")
    if plan.sigma_node == 0.0:
        return np.zeros(dimension, dtype=np.int64)
    _space()
    domain = dp.vector_domain(dp.atom_domain(T="i64"), size=dimension)
    measurement = dp.m.make_gaussian(domain, dp.l2_distance(T="f64"), scale=plan.sigma_node)
    return np.asarray(measurement([0] * dimension), dtype=np.int64)
