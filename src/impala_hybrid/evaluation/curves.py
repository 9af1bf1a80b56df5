"""Learning-curve statistics over training seeds: sample efficiency, training jitter, curves on
a common axis and their seed bands.

A learning curve is one run's evaluations: ``values [n]`` (e.g. the greedy return on the
validation episodes) at ``env_steps [n]`` and, where recorded, wall-clock ``seconds [n]``,
both increasing. All NumPy and written here: each statistic is a few lines whose definition
below matters more than its code. The bootstrap band reuses :func:`aggregate.aggregate`
(rliable) so that there is one bootstrap in the project.

Definitions:

* **Sample efficiency** (:func:`time_to_threshold`): the first evaluation whose value is at
  least ``threshold`` (e.g. the best classical policy's return on the same episodes) and stays
  so for ``sustain`` consecutive evaluations, reported as its env steps and seconds; ``None``
  when the run never gets there ("not reached"). No interpolation: a policy is only known to
  reach the threshold where it was evaluated, so the answer is exact up to the evaluation
  interval. ``sustain > 1`` guards against one lucky evaluation.
* **Training jitter** (:func:`training_jitter`), over ``[runs, evaluations]`` on a common
  grid, from the last ``K`` evaluations of each run:

  - across seeds: the interquartile range (75th minus 25th percentile, linear interpolation)
    over runs of each run's final score, the mean of its last ``K`` evaluations;
  - within runs: the mean over runs of the sample standard deviation (``ddof = 1``) of the
    last ``K`` evaluations: how much a run's greedy return moves from one evaluation to the
    next late in training. It includes the evaluation noise of a finite set of episodes and
    any remaining trend, so compare it between algorithms on the same evaluation protocol.

* **Seed bands** (:func:`seed_band`): per evaluation, the median or the interquartile mean
  (``trim_mean(·, 0.25)``) over runs, with the 25th-75th percentile band or an rliable
  stratified-bootstrap interval of the IQM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from impala_hybrid.extras import require
from impala_hybrid.validation import ConfigError, finite_matrix

CENTERS = ("median", "iqm")
BANDS = ("iqr", "bootstrap")


class Crossing(NamedTuple):
    """Where a learning curve first reached its threshold."""

    evaluation: int  # index of the evaluation
    env_steps: int
    seconds: float | None  # None when no wall-clock times were given


class Jitter(NamedTuple):
    """Training jitter (module docstring): both in the curve's units."""

    across_seeds_iqr: float
    within_run_std: float
    last_k: int


def _curve(values: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(values, np.float64)
    if v.ndim != 1 or v.size < 1:
        raise ConfigError(f"{name} of shape {v.shape} is invalid: must be [n] with n >= 1")
    return v


def _axis(x: np.ndarray | None, n: int, name: str) -> np.ndarray | None:
    if x is None:
        return None
    a = _curve(x, name)
    if a.shape != (n,) or not np.all(np.isfinite(a)) or np.any(np.diff(a) < 0):
        raise ConfigError(
            f"{name} of shape {a.shape} is invalid: must be [{n}] finite, non-decreasing values "
            "(one per evaluation)"
        )
    return a


def time_to_threshold(
    values: np.ndarray,
    threshold: float,
    *,
    env_steps: np.ndarray,
    seconds: np.ndarray | None = None,
    sustain: int = 1,
) -> Crossing | None:
    """The first evaluation at or above ``threshold`` for ``sustain`` evaluations in a row.

    Args:
        values: ``[n]`` evaluation results (NaN, e.g. a failed evaluation, never counts).
        threshold: the level to reach (higher is better).
        env_steps: ``[n]`` env steps of each evaluation.
        seconds: ``[n]`` wall-clock training seconds of each evaluation, or None.
        sustain: consecutive evaluations that must be at or above the threshold (>= 1).

    Returns:
        The :class:`Crossing` at the first of those evaluations, or None ("not reached").
    """
    v = _curve(values, "values")
    steps = _axis(env_steps, v.size, "env_steps")
    secs = _axis(seconds, v.size, "seconds")
    if not np.isfinite(threshold):
        raise ConfigError(f"threshold = {threshold!r} is invalid: must be a finite number")
    if isinstance(sustain, bool) or not isinstance(sustain, int) or sustain < 1:
        raise ConfigError(f"sustain = {sustain!r} is invalid: must be an integer in [1, inf)")
    above = v >= threshold  # NaN compares False
    run = 0
    for i, ok in enumerate(above):
        run = run + 1 if ok else 0
        if run == sustain:
            first = i - sustain + 1
            assert steps is not None
            return Crossing(first, int(steps[first]), None if secs is None else float(secs[first]))
    return None


def _runs(curves: np.ndarray, min_runs: int = 1) -> np.ndarray:
    return finite_matrix(curves, "curves", rows="runs", cols="evaluations", min_rows=min_runs)


def training_jitter(curves: np.ndarray, last_k: int = 5) -> Jitter:
    """Spread across seeds and within runs over the last ``last_k`` evaluations.

    Args:
        curves: ``[runs, evaluations]`` on a common grid (:func:`resample_curves`), runs >= 2.
        last_k: evaluations at the end of each run that count, in [2, evaluations].
    """
    c = _runs(curves, min_runs=2)
    if isinstance(last_k, bool) or not isinstance(last_k, int) or not 2 <= last_k <= c.shape[1]:
        raise ConfigError(
            f"last_k = {last_k!r} is invalid: must be an integer in [2, {c.shape[1]}] "
            "(the number of evaluations)"
        )
    tail = c[:, -last_k:]
    q75, q25 = np.percentile(tail.mean(axis=1), [75, 25])
    return Jitter(float(q75 - q25), float(tail.std(axis=1, ddof=1).mean()), last_k)


def resample_curves(
    xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], points: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Runs evaluated at different x (wall-clock seconds, or steps) on one grid.

    The grid is ``points`` evenly spaced values from the latest first evaluation to the
    earliest last one (where every run has been evaluated); each run's value at ``g`` is its
    last evaluation at or before ``g`` (the policy a user would have at that moment: no
    interpolation between evaluations).

    Returns:
        ``grid [points]`` and ``values [runs, points]``.
    """
    if len(xs) != len(ys) or not xs:
        raise ConfigError(
            f"xs and ys are invalid: must be the same number (>= 1) of runs, got {len(xs)} "
            f"and {len(ys)}"
        )
    if points < 2:
        raise ConfigError(f"points = {points!r} is invalid: must be an integer in [2, inf)")
    runs = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        yy = _curve(y, f"ys[{i}]")
        xx = _axis(x, yy.size, f"xs[{i}]")
        assert xx is not None
        runs.append((xx, yy))
    lo = max(float(x[0]) for x, _ in runs)
    hi = min(float(x[-1]) for x, _ in runs)
    if hi < lo:
        raise ConfigError(
            f"xs are invalid: the runs' evaluation ranges do not overlap (latest start {lo:g}, "
            f"earliest end {hi:g})"
        )
    grid = np.linspace(lo, hi, points)
    values = np.stack([y[np.searchsorted(x, grid, side="right") - 1] for x, y in runs])
    return grid, values


def seed_band(
    curves: np.ndarray,
    center: str = "iqm",
    band: str = "iqr",
    *,
    reps: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per evaluation: ``(center [n], lo [n], hi [n])`` over the runs of ``curves [runs, n]``.

    ``center``: ``"median"`` or ``"iqm"``; ``band``: ``"iqr"`` (25th-75th percentile of the
    runs) or ``"bootstrap"`` (rliable's stratified-bootstrap interval of the IQM at each
    evaluation, needing ``aggregate.MIN_RUNS`` runs; ``center`` must then be ``"iqm"``).
    """
    c = _runs(curves)
    if center not in CENTERS or band not in BANDS or (band == "bootstrap" and center != "iqm"):
        raise ConfigError(
            f"center = {center!r}, band = {band!r} are invalid: center in {CENTERS}, band in "
            f"{BANDS}; a bootstrap band is an interval of the IQM (center 'iqm')"
        )
    if band == "bootstrap":
        from impala_hybrid.evaluation.aggregate import aggregate

        scores = {f"{i}": c[:, i : i + 1] for i in range(c.shape[1])}
        out = aggregate(scores, metrics=("iqm",), reps=reps, confidence=confidence, seed=seed)
        mid, lo, hi = (np.array([out[k]["iqm"][j] for k in scores]) for j in range(3))
        return mid, lo, hi
    if center == "median":
        mid = np.median(c, axis=0)
    else:
        mid = require("scipy.stats").trim_mean(c, 0.25, axis=0)
    lo, hi = np.percentile(c, [25, 75], axis=0)
    return np.asarray(mid, np.float64), lo, hi
