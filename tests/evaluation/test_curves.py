"""Learning-curve statistics on hand-made curves: sample efficiency, jitter, resampling onto a
common axis, seed bands."""

from __future__ import annotations

import numpy as np
import pytest

from impala_hybrid.evaluation.curves import (
    Crossing,
    resample_curves,
    seed_band,
    time_to_threshold,
    training_jitter,
)
from impala_hybrid.validation import ConfigError

STEPS = np.array([0, 100, 200, 300, 400, 500])
SECONDS = np.array([0.0, 1.5, 3.0, 4.0, 6.0, 7.5])


def test_time_to_threshold_on_hand_made_curves() -> None:
    values = np.array([0.0, 1.0, 3.0, 2.0, 4.0, 5.0])
    assert time_to_threshold(values, 3.0, env_steps=STEPS, seconds=SECONDS) == Crossing(2, 200, 3.0)
    assert time_to_threshold(values, 3.0, env_steps=STEPS) == Crossing(2, 200, None)
    # held for two evaluations in a row: the dip at 300 restarts the count
    assert time_to_threshold(values, 3.0, env_steps=STEPS, sustain=2) == Crossing(4, 400, None)
    assert time_to_threshold(values, 5.0, env_steps=STEPS, sustain=2) is None
    assert time_to_threshold(values, 6.0, env_steps=STEPS) is None  # not reached
    assert time_to_threshold(values, -1.0, env_steps=STEPS).evaluation == 0  # reached at once
    nan_first = np.array([np.nan, 9.0, 9.0, 9.0, 9.0, 9.0])
    assert time_to_threshold(nan_first, 3.0, env_steps=STEPS).evaluation == 1


def test_training_jitter_by_hand() -> None:
    curves = np.array([[0.0, 0.0, 1.0, 3.0], [0.0, 0.0, 2.0, 2.0], [0.0, 9.0, 5.0, 5.0]])
    jitter = training_jitter(curves, last_k=2)
    # finals (last-2 means) 2, 2, 5: percentiles 25 -> 2, 75 -> 3.5 (linear interpolation)
    assert jitter.across_seeds_iqr == pytest.approx(1.5)
    # sample stds of [1, 3], [2, 2], [5, 5]: sqrt(2), 0, 0
    assert jitter.within_run_std == pytest.approx(np.sqrt(2.0) / 3)
    assert jitter.last_k == 2
    flat = np.tile(np.arange(5.0), (4, 1))
    assert training_jitter(flat, last_k=5).across_seeds_iqr == 0.0


def test_resample_curves_holds_the_last_evaluation() -> None:
    xs = [np.array([0.0, 10.0, 20.0]), np.array([5.0, 15.0, 25.0])]
    ys = [np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])]
    grid, values = resample_curves(xs, ys, points=4)
    np.testing.assert_allclose(grid, [5.0, 10.0, 15.0, 20.0])
    np.testing.assert_allclose(values, [[1.0, 2.0, 2.0, 3.0], [10.0, 10.0, 20.0, 20.0]])
    with pytest.raises(ConfigError, match="do not overlap"):
        resample_curves([np.array([0.0, 1.0]), np.array([2.0, 3.0])], ys=[np.ones(2)] * 2)


def test_seed_band() -> None:
    curves = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 30.0], [3.0, 4.0]])
    mid, lo, hi = seed_band(curves, "median")
    np.testing.assert_allclose(mid, [1.5, 3.0])
    np.testing.assert_allclose(lo, [0.75, 1.75])
    np.testing.assert_allclose(hi, [2.25, 10.5])
    mid, _, _ = seed_band(curves, "iqm")  # 4 runs: the middle two
    np.testing.assert_allclose(mid, [1.5, 3.0])
    mid, lo, hi = seed_band(curves, "iqm", "bootstrap", reps=200)
    assert np.all(lo <= mid) and np.all(mid <= hi) and np.all(lo < hi)
    np.testing.assert_allclose(mid, [1.5, 3.0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: time_to_threshold(np.ones(3), 1.0, env_steps=np.arange(4)), r"env_steps .*\[3\]"),
        (lambda: time_to_threshold(np.ones(3), 1.0, env_steps=[2, 1, 3]), "non-decreasing"),
        (lambda: time_to_threshold(np.ones(2), np.nan, env_steps=[0, 1]), "threshold"),
        (lambda: time_to_threshold(np.ones(2), 1.0, env_steps=[0, 1], sustain=0), "sustain"),
        (lambda: training_jitter(np.ones((1, 5))), r"runs in \[2, inf\)"),
        (lambda: training_jitter(np.ones((3, 5)), last_k=6), r"last_k = 6 .*\[2, 5\]"),
        (lambda: training_jitter(np.array([[1.0, np.nan]] * 2), 2), "finite"),
        (lambda: seed_band(np.ones((3, 2)), "median", "bootstrap"), "center"),
        (lambda: seed_band(np.ones((3, 2)), "mean"), "center"),
        (lambda: resample_curves([np.arange(2.0)], []), "same number"),
    ],
)
def test_bad_input(call, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()
