"""Pareto tools against slow references written like the definitions: an O(n^2) dominance
loop, hypervolume by inclusion-exclusion over boxes (exact, 2-D and 3-D) and by Monte Carlo
(6-D), expected utility by brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from impala_hybrid.ops.pareto import (
    expected_utility,
    hypervolume,
    non_dominated,
    reference_point,
    simplex_weights,
)
from impala_hybrid.validation import ConfigError


def dominance_reference(points: np.ndarray, maximise: list[bool]) -> np.ndarray:
    """Point i is dominated iff some j is at least as good everywhere and better somewhere."""
    sign = np.where(maximise, 1.0, -1.0)
    p = points * sign
    keep = np.ones(len(p), bool)
    for i in range(len(p)):
        for j in range(len(p)):
            if i != j and np.all(p[j] >= p[i]) and np.any(p[j] > p[i]):
                keep[i] = False
    return keep


def hv_inclusion_exclusion(points: np.ndarray, ref: np.ndarray) -> float:
    """Maximisation: the union of boxes [ref, f_i], by inclusion-exclusion over subsets; the
    intersection of boxes is the box up to their componentwise minimum."""
    total = 0.0
    n = len(points)
    for k in range(1, n + 1):
        for subset in itertools.combinations(range(n), k):
            corner = points[list(subset)].min(axis=0)
            total += (-1) ** (k + 1) * float(np.prod(np.maximum(corner - ref, 0.0)))
    return total


@pytest.mark.parametrize("m", [2, 3, 4, 6])
def test_non_dominated_matches_the_quadratic_loop(m: int) -> None:
    rng = np.random.default_rng(m)
    for trial in range(20):
        points = rng.integers(0, 4, size=(int(rng.integers(1, 30)), m)).astype(float)  # ties
        maximise = [bool(x) for x in rng.integers(0, 2, m)] if trial % 2 else [True] * m
        senses = ["max" if x else "min" for x in maximise]
        np.testing.assert_array_equal(
            non_dominated(points, senses), dominance_reference(points, maximise)
        )


def test_non_dominated_keeps_duplicates_and_drops_weakly_dominated() -> None:
    points = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 1.0], [2.0, 0.0]])
    assert non_dominated(points).tolist() == [True, True, False, True]
    assert non_dominated(points, ["min", "min"]).tolist() == [False, False, True, True]


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_matches_inclusion_exclusion(m: int) -> None:
    rng = np.random.default_rng(10 + m)
    for _ in range(10):
        points = rng.normal(size=(int(rng.integers(1, 10)), m))
        ref = points.min(axis=0) - rng.random(m)
        assert hypervolume(points, ref) == pytest.approx(hv_inclusion_exclusion(points, ref))


def test_hypervolume_6d_monte_carlo() -> None:
    rng = np.random.default_rng(6)
    points = rng.random((15, 6)) ** 0.3  # spread out near the top corner
    ref = np.full(6, -0.2)
    top = points.max(axis=0)
    samples = ref + (top - ref) * rng.random((400_000, 6))
    dominated = np.zeros(len(samples), bool)
    for p in points:
        dominated |= np.all(samples <= p, axis=1)
    box = float(np.prod(top - ref))
    frac = dominated.mean()
    se = box * math.sqrt(frac * (1 - frac) / len(samples))
    assert abs(hypervolume(points, ref) - box * frac) < 4 * se


def test_hypervolume_by_hand_and_senses() -> None:
    points = np.array([[3.0, 1.0], [1.0, 2.0]])
    assert hypervolume(points, np.zeros(2)) == pytest.approx(3 + 1)
    # minimising the negated objectives from the negated reference is the same measure
    assert hypervolume(-points, np.zeros(2), ["min", "min"]) == pytest.approx(4)
    # a point that does not strictly dominate the reference adds nothing
    assert hypervolume(np.vstack([points, [[5.0, 0.0]]]), np.zeros(2)) == pytest.approx(4)
    assert hypervolume(np.array([[-1.0, 5.0]]), np.zeros(2)) == 0.0


def test_reference_point() -> None:
    lo, hi = np.array([0.0, -10.0]), np.array([10.0, 0.0])
    np.testing.assert_allclose(reference_point(lo, hi, 0.1), [-1.0, -11.0])
    np.testing.assert_allclose(reference_point(lo, hi, 0.1, ["max", "min"]), [-1.0, 1.0])
    with pytest.raises(ConfigError, match="lower < upper"):
        reference_point(hi, lo)
    with pytest.raises(ConfigError, match=r"margin = -0.1 .*\[0, inf\)"):
        reference_point(lo, hi, -0.1)


def eu_brute_force(points: np.ndarray, weights: np.ndarray) -> float:
    total = 0.0
    for w in weights:
        best = -math.inf
        for f in points:
            best = max(best, sum(wk * fk for wk, fk in zip(w, f, strict=True)))
        total += best
    return total / len(weights)


def test_expected_utility_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    for m in (2, 3, 6):
        points = rng.normal(size=(7, m))
        weights = simplex_weights(m, 3)
        assert expected_utility(points, weights) == pytest.approx(eu_brute_force(points, weights))
        flipped = expected_utility(-points, weights, ["min"] * m)
        assert flipped == pytest.approx(eu_brute_force(points, weights))


def test_expected_utility_of_a_single_objective_set_is_its_best() -> None:
    points = np.array([[1.0, 0.0], [0.0, 1.0], [0.4, 0.4]])
    # corners pick the best policy per objective; the middle weight picks (1,0) or (0,1): 0.5
    assert expected_utility(points, simplex_weights(2, 2)) == pytest.approx((1 + 0.5 + 1) / 3)
    # adding a dominated point changes nothing
    more = np.vstack([points, [[0.1, 0.1]]])
    assert expected_utility(more, simplex_weights(2, 2)) == pytest.approx((1 + 0.5 + 1) / 3)


def test_simplex_weights() -> None:
    w = simplex_weights(6, 4)
    assert w.shape == (math.comb(9, 5), 6)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert len({tuple(r) for r in w}) == len(w)
    np.testing.assert_allclose(w * 4, np.round(w * 4))
    np.testing.assert_array_equal(w[0], [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(simplex_weights(2, 2), [[1, 0], [0.5, 0.5], [0, 1]])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: non_dominated(np.zeros(3)), r"points of shape \(3,\) is invalid"),
        (lambda: non_dominated(np.array([[np.nan, 1.0]])), "finite"),
        (lambda: non_dominated(np.zeros((2, 2)), ["max"]), "senses"),
        (lambda: non_dominated(np.zeros((2, 2)), ["max", "up"]), "senses"),
        (lambda: hypervolume(np.zeros((2, 2)), np.zeros(3)), "reference of length 3"),
        (lambda: expected_utility(np.zeros((2, 2)), -np.ones((1, 2))), "non-negative"),
        (lambda: expected_utility(np.zeros((2, 2)), np.ones((1, 3))), r"\[w, 2\]"),
        (lambda: simplex_weights(0, 3), "divisions"),
    ],
)
def test_bad_input(call, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()
