"""Builders and statistics shared by the aggregate tests.

Statistical tests compare a Pearson statistic with the Laurent-Massart tail bound for a
chi-square variable with k degrees of freedom: P(X >= k + 2·sqrt(k·x) + 2x) <= e^-x and
P(X <= k - 2·sqrt(k·x)) <= e^-x (Ann. Statist. 28(5), 2000, Lemma 1). With x = 18.42
(e^-x = 1e-8) each bound leaves a factor 100 below the 1e-6 false-failure budget for the
chi-square approximation of Pearson's statistic (every test keeps expected cell counts
well above 5). scipy is not a dependency of this project.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import nacl.public
import numpy as np

from marketplace.aggregate import (
    Aggregation,
    ContributionContext,
    NoisePlan,
    Query,
    combine,
    deal_round1,
    decide,
    decode_opening,
    dimension,
    encode_opening,
    make_opening,
    open_round1,
    open_share,
    partial,
    seal_contribution,
    seal_shares,
)
from marketplace.aggregate.field import Vector

TAIL_X = math.log(1e8)
CHAIN_ID = 31337
AGGREGATOR = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
DEBIT_ID = 9
SEED = b"\x11" * 32


def upper_bound(df: int, x: float = TAIL_X) -> float:
    return df + 2 * math.sqrt(df * x) + 2 * x


def lower_bound(df: int, x: float = TAIL_X) -> float:
    return df - 2 * math.sqrt(df * x)


def homogeneity(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Pearson's two-sample statistic over the categories (rows) seen in either sample,
    with its degrees of freedom (categories - 1)."""
    labels, inverse = np.unique(np.concatenate([a, b]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    count_a = np.bincount(inverse[: len(a)], minlength=len(labels)).astype(float)
    count_b = np.bincount(inverse[len(a) :], minlength=len(labels)).astype(float)
    total = count_a + count_b
    expected_a = total * len(a) / (len(a) + len(b))
    expected_b = total * len(b) / (len(a) + len(b))
    statistic = float(
        ((count_a - expected_a) ** 2 / expected_a).sum()
        + ((count_b - expected_b) ** 2 / expected_b).sum()
    )
    return statistic, len(labels) - 1


def owner(i: int) -> bytes:
    return i.to_bytes(20, "big")


@dataclass
class Committee:
    n: int
    t: int
    keys: list[nacl.public.PrivateKey]

    @classmethod
    def make(cls, n: int, t: int) -> Committee:
        return cls(n, t, [nacl.public.PrivateKey.generate() for _ in range(n)])

    @property
    def public(self) -> list[bytes]:
        return [bytes(k.public_key) for k in self.keys]


def context(query: Query, i: int) -> ContributionContext:
    return ContributionContext(CHAIN_ID, AGGREGATOR, DEBIT_ID, owner(i), dimension(query))


def bundles_for(query: Query, committee: Committee, vectors: Sequence[Vector]) -> list[bytes]:
    return [
        seal_contribution(context(query, i), v, committee.public, committee.t)
        for i, v in enumerate(vectors, start=1)
    ]


def raw_bundle(query: Query, committee: Committee, i: int, shares: dict[int, Vector]) -> bytes:
    """A bundle from shares the caller made (a malicious owner's)."""
    return seal_shares(context(query, i), shares, committee.public)


@dataclass
class Outcome:
    agg: Aggregation
    valid: np.ndarray
    partials: dict[int, Vector]
    shares: dict[int, Vector]


def run(
    query: Query,
    committee: Committee,
    bundles: Sequence[bytes],
    plan: NoisePlan,
    *,
    broken: Sequence[tuple[int, int]] = (),
) -> Outcome:
    """Every step as gateways run it, in memory. `broken` lists (node, candidate) pairs
    whose bundle the node cannot open (unretrievable or corrupted for it)."""
    n, t = committee.n, committee.t
    owners = tuple(owner(i) for i in range(1, len(bundles) + 1))
    agg = Aggregation(CHAIN_ID, AGGREGATOR, DEBIT_ID, query, n, t, owners, plan)
    round1 = {d: deal_round1(agg, d, committee.public) for d in range(1, n + 1)}
    received = {
        i: {d: open_round1(agg, round1[d], d, i, committee.keys[i - 1]) for d in round1}
        for i in range(1, n + 1)
    }
    shares: dict[int, Vector] = {}
    unopened: dict[int, list[int]] = {}
    d = dimension(query)
    for i in range(1, n + 1):
        rows, missing = [], []
        for k, bundle in enumerate(bundles):
            if (i, k) in broken:
                rows.append(np.zeros(d, dtype=np.int64))
                missing.append(k)
            else:
                rows.append(open_share(bundle, i, committee.keys[i - 1], context(query, k + 1)))
        shares[i], unopened[i] = np.stack(rows), missing
    openings = {
        i: decode_opening(
            agg,
            encode_opening(agg, i, make_opening(agg, SEED, shares[i], unopened[i], received[i])),
            i,
        )
        for i in range(1, n + 1)
    }
    valid = decide(agg, openings)
    partials = {i: partial(agg, shares[i], valid, received[i]) for i in range(1, n + 1)}
    return Outcome(agg, valid, partials, shares)


def result(outcome: Outcome) -> Vector:
    return combine(outcome.partials, outcome.agg.t)
