"""Aggregates over training seeds with stratified-bootstrap confidence intervals, and the
probability of improvement between algorithms (Agarwal et al. 2021, "Deep Reinforcement
Learning at the Edge of the Statistical Precipice", NeurIPS), through ``rliable``.

Scores are ``[runs, tasks]`` per algorithm: one row per training seed, one column per task
(here a task is an evaluation setting, e.g. the UAV env under one config, or one objective of
it; a single task is ``[runs, 1]``). Each cell is a run's score on the task, typically its mean
return over the held-out episodes, optionally normalised (:func:`normalize_scores`).

Why rliable and not a home-made bootstrap: the paper's estimators and its *stratified*
bootstrap (resample runs within each task) are what reviewers recognise, and rliable is the
paper's own implementation. What is written here: argument checks (rliable fails on bad
shapes deep inside ``arch``, or not at all on NaN), typed results, and the seeding.

Seeding (a workaround): rliable 1.2's ``StratifiedBootstrap.update_indices`` draws its
resamples from NumPy's *global* legacy RNG (``np.random.choice``), not from the
``random_state`` it is given, so that argument does not make results reproducible. Each
algorithm's (and each pair's) bootstrap therefore runs with the global RNG seeded from
``(seed, name)``, and the caller's global RNG state is restored afterwards. A by-product: an
algorithm's interval does not depend on which other algorithms are in the call. Not
thread-safe (the global RNG is process-wide).

Definitions (rliable ``metrics``), over all runs and tasks of one algorithm:

* ``iqm``: the interquartile mean, the mean of the middle 50% of the pooled scores
  (``scipy.stats.trim_mean(x, 0.25)``): robust to outlier runs, more efficient than the median;
* ``mean`` and ``median`` of the per-task mean scores;
* ``optimality_gap``: ``gamma - mean(min(x, gamma))``, how far below the target ``gamma`` the
  scores fall on average (lower is better; meaningful on normalised scores, target 1);
* probability of improvement ``P(X > Y)``: for each task the Mann-Whitney U statistic over
  all pairs of runs divided by their number (ties count 1/2), averaged over tasks.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from impala_hybrid.extras import require
from impala_hybrid.validation import ConfigError, finite_matrix

AGGREGATES = ("iqm", "mean", "median", "optimality_gap")
#: Fewest runs per algorithm: with two, a bootstrap resample takes one of three values per
#: task and its percentiles are not an interval estimate.
MIN_RUNS = 3
MIN_REPS = 100


class Interval(NamedTuple):
    """A point estimate and its confidence interval ``[lo, hi]``."""

    point: float
    lo: float
    hi: float


def _check_scores(scores: Mapping[str, np.ndarray], name: str = "scores") -> dict[str, np.ndarray]:
    if not isinstance(scores, Mapping) or not scores:
        raise ConfigError(f"{name} is invalid: must be a non-empty dict of algorithm -> array")
    out: dict[str, np.ndarray] = {}
    tasks = None
    for algo, values in scores.items():
        x = finite_matrix(values, f"{name}[{algo!r}]", rows="runs", cols="tasks", min_rows=MIN_RUNS)
        if tasks is not None and x.shape[1] != tasks:
            raise ConfigError(
                f"{name}[{algo!r}] has {x.shape[1]} tasks, is invalid: every algorithm must be "
                f"scored on the same {tasks} tasks"
            )
        tasks = x.shape[1]
        out[str(algo)] = x
    return out


def _check_bootstrap(reps: int, confidence: float) -> None:
    if isinstance(reps, bool) or not isinstance(reps, int | np.integer) or reps < MIN_REPS:
        raise ConfigError(f"reps = {reps!r} is invalid: must be an integer in [{MIN_REPS}, inf)")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence = {confidence!r} is invalid: allowed range is (0, 1)")


@contextlib.contextmanager
def _global_rng(seed: int, name: str) -> Iterator[None]:
    """Seed NumPy's global legacy RNG from ``(seed, name)``; restore its state on exit."""
    saved = np.random.get_state()  # noqa: NPY002 (the legacy global RNG is what rliable uses)
    words = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)
    np.random.seed(int(words[0]))  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(saved)  # noqa: NPY002


def normalize_scores(
    scores: np.ndarray, low: float | np.ndarray, high: float | np.ndarray
) -> np.ndarray:
    """``(x - low) / (high - low)``: 0 at ``low`` (e.g. a random or floor policy), 1 at
    ``high`` (e.g. the best classical policy). ``low``/``high`` are scalars or ``[tasks]``."""
    x = np.asarray(scores, np.float64)
    lo = np.asarray(low, np.float64)
    hi = np.asarray(high, np.float64)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi != lo)):
        raise ConfigError(
            f"low = {lo.tolist()}, high = {hi.tolist()} are invalid: must be finite with "
            "high != low"
        )
    return (x - lo) / (hi - lo)


def aggregate(
    scores: Mapping[str, np.ndarray],
    *,
    metrics: Sequence[str] = AGGREGATES,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    gamma: float = 1.0,
) -> dict[str, dict[str, Interval]]:
    """Point estimates and percentile stratified-bootstrap intervals of aggregate scores.

    Args:
        scores: algorithm -> ``[runs, tasks]`` scores (runs >= ``MIN_RUNS``; same tasks).
        metrics: names from ``AGGREGATES``.
        reps: bootstrap resamples (>= ``MIN_REPS``); the paper uses 2000 for figures.
        confidence: coverage of the interval, in (0, 1).
        seed: the bootstrap's seed (deterministic given it; see the module docstring).
        gamma: the optimality gap's target.

    Returns:
        algorithm -> metric -> :class:`Interval`.
    """
    rly = require("rliable.library")
    rmetrics = require("rliable.metrics")
    checked = _check_scores(scores)
    _check_bootstrap(reps, confidence)
    unknown = [m for m in metrics if m not in AGGREGATES]
    if unknown or not metrics:
        raise ConfigError(f"metrics = {list(metrics)!r} is invalid: choose from {AGGREGATES}")
    table: dict[str, Callable[[np.ndarray], float]] = {
        "iqm": rmetrics.aggregate_iqm,
        "mean": rmetrics.aggregate_mean,
        "median": rmetrics.aggregate_median,
        "optimality_gap": lambda x: rmetrics.aggregate_optimality_gap(x, gamma),
    }
    fns = [table[m] for m in metrics]

    def func(x: np.ndarray) -> np.ndarray:
        return np.array([f(x) for f in fns])

    out: dict[str, dict[str, Interval]] = {}
    for algo, x in checked.items():
        with _global_rng(seed, algo):
            points, intervals = rly.get_interval_estimates(
                {algo: x}, func, reps=reps, confidence_interval_size=confidence
            )
        p, ci = points[algo], intervals[algo]
        out[algo] = {
            m: Interval(float(p[i]), float(ci[0, i]), float(ci[1, i]))
            for i, m in enumerate(metrics)
        }
    return out


def probability_of_improvement(
    scores: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]] | None = None,
    *,
    reps: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[tuple[str, str], Interval]:
    """``P(X > Y)`` with a stratified-bootstrap interval (runs of X and Y resampled
    independently within each task), for each pair ``(X, Y)``.

    Args:
        scores: algorithm -> ``[runs, tasks]`` (runs may differ between algorithms).
        pairs: ``(X, Y)`` names in ``scores``; default every ordered pair of distinct names.
        reps, confidence, seed: as for :func:`aggregate`.
    """
    rly = require("rliable.library")
    rmetrics = require("rliable.metrics")
    checked = _check_scores(scores)
    _check_bootstrap(reps, confidence)
    if pairs is None:
        pairs = [(x, y) for x in checked for y in checked if x != y]
    out: dict[tuple[str, str], Interval] = {}
    for x, y in pairs:
        if x not in checked or y not in checked:
            raise ConfigError(
                f"pairs entry {(x, y)!r} is invalid: both names must be keys of scores "
                f"{sorted(checked)}"
            )
        key = f"{x}>{y}"
        with _global_rng(seed, key):
            points, intervals = rly.get_interval_estimates(
                {key: [checked[x], checked[y]]},
                rmetrics.probability_of_improvement,
                reps=reps,
                confidence_interval_size=confidence,
            )
        ci = np.asarray(intervals[key]).reshape(-1)
        out[(x, y)] = Interval(float(points[key]), float(ci[0]), float(ci[1]))
    return out
