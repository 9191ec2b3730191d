"""Queries, encodings, decoding, and the noise calibration by OpenDP."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marketplace.aggregate import (
    FieldOverflow,
    InvalidParameters,
    InvalidQuery,
    NoisePlan,
    Query,
    calibrate,
    decode,
    dimension,
    encode,
    l2_sensitivity,
    project,
    sample_node_noise,
)
from marketplace.aggregate.field import P
from marketplace.aggregate.noise import MIN_NODE_SIGMA, _approx_dp

AGES = Query("histogram", "age", 0.5, 1e-6, bins=(0, 18, 30, 45, 65, 120))
PRICE = Query("sum", "price", 1.0, 1e-6, scale=100, lo=-500, hi=10_000)


@pytest.mark.parametrize(
    ("value", "position"), [(-3, 0), (0, 0), (17.9, 1), (18, 1), (64.4, 3), (120, 4), (1e9, 4)]
)
def test_histogram_one_hot_with_clipping(value: float, position: int) -> None:
    vector = encode(AGES, value)
    assert vector.tolist() == [1 if k == position else 0 for k in range(5)]


def test_sum_encodes_two_bit_decompositions_and_projects_to_the_value() -> None:
    b = (10_500).bit_length()
    assert dimension(PRICE) == 2 * b
    for price, expected in ((12.34, 1234 + 500), (-10, 0), (1000, 10_500)):
        vector = encode(PRICE, price)
        bits_a, bits_c = vector[:b], vector[b:]
        assert set(vector.tolist()) <= {0, 1}
        assert sum(int(x) << m for m, x in enumerate(bits_a)) == expected
        assert sum(int(x) << m for m, x in enumerate(bits_c)) == 10_500 - expected
        assert project(PRICE, vector[None, :]).tolist() == [[expected]]


def test_count_encoding_and_sensitivities() -> None:
    count = Query("count", "smoker", 1.0, 1e-6)
    assert encode(count, True).tolist() == [1] and encode(count, 0).tolist() == [0]
    assert l2_sensitivity(count) == 1.0
    assert l2_sensitivity(AGES) == pytest.approx(math.sqrt(2))
    assert l2_sensitivity(PRICE) == 10_500.0


def test_decode_mean_scales_value_and_interval() -> None:
    mean = Query("mean", "price", 1.0, 1e-6, scale=100, lo=0, hi=10_000)
    answer = decode(mean, np.array([(4 * 2500 - 30) % P]), 4, noise_sigma=400.0)
    assert answer.values[0] == pytest.approx(99.70 / 4)
    assert answer.noise_sigma == pytest.approx(1.0)
    low, high = answer.intervals[0]
    assert high - low == pytest.approx(2 * 1.959963984540054)


def test_decode_refuses_aggregates_that_could_wrap() -> None:
    with pytest.raises(FieldOverflow):
        decode(PRICE, np.array([0]), 200_000, noise_sigma=1.0)


@pytest.mark.parametrize(
    "document",
    [
        {"stat": "median", "field": "x", "epsilon": 1, "delta": 1e-6},
        {"stat": "count", "field": "x", "epsilon": 0, "delta": 1e-6},
        {"stat": "count", "field": "x", "epsilon": float("inf"), "delta": 1e-6},
        {"stat": "count", "field": "x", "epsilon": 1, "delta": 1},
        {"stat": "sum", "field": "x", "epsilon": 1, "delta": 1e-6, "lo": 5, "hi": 5},
        {"stat": "sum", "field": "x", "epsilon": 1, "delta": 1e-6, "lo": 0, "hi": 2**30},
        {"stat": "sum", "field": "x", "epsilon": 1, "delta": 1e-6, "hi": 10, "scale": 20},
        {"stat": "sum", "field": "x", "epsilon": 1, "delta": 1e-6, "hi": 10.5},
        {"stat": "histogram", "field": "x", "epsilon": 1, "delta": 1e-6, "bins": [0, 5, 5]},
        {"stat": "histogram", "field": "x", "epsilon": 1, "delta": 1e-6, "bins": [0]},
        {"stat": "histogram", "field": "x", "epsilon": 1, "delta": 1e-6},
        {"field": "x", "epsilon": 1, "delta": 1e-6},
    ],
)
def test_invalid_queries_are_refused(document: dict[str, object]) -> None:
    with pytest.raises(InvalidQuery):
        Query.from_json(document)


def test_query_json_round_trip() -> None:
    for query in (AGES, PRICE, Query("count", "c", 2.0, 1e-7)):
        assert Query.from_json(query.to_json()) == query


def test_calibration_is_opendps_boundary() -> None:
    """The plan's sigma passes OpenDP's own (epsilon, delta) check; 1 % less does not."""
    plan = calibrate(AGES, 5, 3)
    target = (AGES.epsilon, AGES.delta)
    assert _approx_dp(plan.sigma, AGES.delta).check(math.sqrt(2), target)
    assert not _approx_dp(plan.sigma * 0.99, AGES.delta).check(math.sqrt(2), target)
    assert plan.sigma_node == pytest.approx(plan.sigma / math.sqrt(3))
    assert plan.honest_dealers == 3


def test_calibration_for_fewer_dealers_and_the_floor() -> None:
    tolerant = calibrate(AGES, 5, 3, dealers=4)
    assert tolerant.sigma_node == pytest.approx(tolerant.sigma / math.sqrt(2))
    loose = calibrate(Query("count", "c", 50.0, 1e-3), 5, 3)
    assert loose.sigma_node == MIN_NODE_SIGMA > loose.sigma / math.sqrt(3)
    with pytest.raises(InvalidParameters):
        calibrate(AGES, 5, 3, dealers=2)


def test_sampling_checks_dimension_and_the_test_only_plan_adds_nothing() -> None:
    plan = calibrate(AGES, 3, 2)
    noise = sample_node_noise(plan, 5)
    assert noise.shape == (5,) and noise.dtype == np.int64
    with pytest.raises(InvalidParameters):
        sample_node_noise(plan, 6)
    silent = NoisePlan.without_noise_for_tests(5, 3, 2)
    assert sample_node_noise(silent, 5).tolist() == [0] * 5
