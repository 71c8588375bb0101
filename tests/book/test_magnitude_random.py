"""Part IV's magnitude-against-random page: R(k) of random supports and its expectation."""

import dataclasses

import numpy as np
import pytest

from companion.magnitude_random import (
    SupportComparison,
    expected_random_weights,
    findings,
    random_support_distances,
)
from prunelimit.certified import CertifiedLimit
from prunelimit.limit import projection_distances


def test_a_random_support_leaves_the_norm_of_the_weights_outside_it() -> None:
    weights = np.random.default_rng(0).normal(size=50)
    distances = random_support_distances(weights, seed=3)
    order = np.random.default_rng(3).permutation(50)
    for k in (0, 1, 17, 49, 50):
        assert distances[k] == pytest.approx(np.linalg.norm(weights[order[k:]]), abs=1e-12)
    assert np.all(distances >= projection_distances(weights) - 1e-12), "magnitude is smallest"


def test_equal_magnitudes_give_the_expected_random_distance() -> None:
    weights = np.random.default_rng(1).normal(size=200)
    equal = projection_distances(expected_random_weights(weights))
    k = np.arange(201)
    np.testing.assert_allclose(equal**2, (200 - k) / 200 * np.sum(weights**2), rtol=1e-10)
    draws = np.mean([random_support_distances(weights, s) ** 2 for s in range(2000)], axis=0)
    np.testing.assert_allclose(draws, equal**2, rtol=0.05, atol=1e-9)


def _bounds(low: float, high: float) -> CertifiedLimit:
    return CertifiedLimit(
        low=low,
        high=high,
        rho=(low + high) / 2,
        num_steps=10,
        num_probes=1,
        num_products=10,
        seconds=1.0,
        converged=True,
        stop_reason="",
        tolerance=0.01,
        confidence=0.99,
        dimension=1000,
        eps=0.01,
        num_examples=100,
        curvature="G",
        trace=[],
    )


def test_findings_say_whether_prediction_and_actual_limits_separate_the_supports() -> None:
    ratios = np.array([0.01, 0.1, 1.0])
    base = SupportComparison(
        ratios=ratios,
        magnitude_distance=np.array([0.9, 0.3, 0.0]),
        random_distance=np.array([0.99, 0.9, 0.0]),
        expected_random_distance=np.array([0.99, 0.95, 0.0]),
        norm=1.0,
        predicted={"magnitude": _bounds(0.0, 0.01), "random": _bounds(0.02, 0.03)},
        retrained={"magnitude": 0.1, "random": 0.5},
        num_examples=1000,
    )
    text = findings(base)
    assert "R/||w*|| = 0.300, a random one 0.900" in text
    assert "ordered as the paper argues" in text and "as the paper says" in text
    overlapping = dict(base.predicted, random=_bounds(0.0, 0.01))
    worse = dataclasses.replace(
        base, predicted=overlapping, retrained={"magnitude": 0.5, "random": 0.5}
    )
    text = findings(worse)
    assert "intervals overlap" in text and "unlike what the paper says" in text
