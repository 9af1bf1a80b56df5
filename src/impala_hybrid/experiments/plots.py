"""The report's figures: each function draws one figure from arrays, writes it as a PNG with
matplotlib's Agg backend (no display needed) and returns its path.

Figures take numbers already computed (curves, :class:`~impala_hybrid.evaluation.aggregate.
Interval` results, objective vectors, latency histograms) so that the statistics stay in
``evaluation/`` and ``ops/`` and are tested there; what is left here is layout. The interval
estimates and the probability of improvement are drawn by ``rliable.plot_utils`` (the paper's
own figures, which work with current matplotlib); the rest is plain matplotlib, because
rliable has no Pareto, bar or CDF figure and its sample-efficiency curve wants every run on
one x grid, while ours are resampled onto one first (``evaluation.curves.resample_curves``).

Inputs are keyed by algorithm name; colours follow the order of the keys, so one ordering
gives one colour per algorithm across every figure of a report.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from impala_hybrid.envs.config import OBJECTIVE_NAMES
from impala_hybrid.evaluation.aggregate import Interval
from impala_hybrid.evaluation.curves import resample_curves, seed_band
from impala_hybrid.extras import require
from impala_hybrid.ops.pareto import non_dominated
from impala_hybrid.validation import ConfigError

#: One run's learning curve: ``(x [n], values [n])``, x increasing (env steps or seconds).
Run = tuple[np.ndarray, np.ndarray]


def _pyplot() -> Any:
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot")


def _target(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise ConfigError(f"path = {str(path)!r} is invalid: must end in .png")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _nonempty(mapping: Mapping[Any, Any], name: str) -> None:
    if not isinstance(mapping, Mapping) or not mapping:
        raise ConfigError(f"{name} is invalid: must be a non-empty dict keyed by algorithm")


def plot_learning_curves(
    runs: Mapping[str, Sequence[Run]],
    path: str | Path,
    *,
    x_label: str = "env steps",
    y_label: str = "greedy return",
    center: str = "iqm",
    band: str = "iqr",
    baselines: Mapping[str, float] | None = None,
    title: str | None = None,
    points: int = 100,
    reps: int = 500,
) -> Path:
    """Learning curves with seed bands, one line per algorithm.

    Args:
        runs: algorithm -> its runs' ``(x, values)``; x is env steps or wall-clock seconds
            (call twice for the two figures). Each algorithm's runs are put on one grid
            where all of them were evaluated (last evaluation held, no interpolation).
        center, band: :func:`evaluation.curves.seed_band` (``"iqm"``/``"median"``,
            ``"iqr"``/``"bootstrap"``; ``reps`` resamples per grid point for the bootstrap).
        points: grid points per curve.
        baselines: name -> a constant (e.g. a classical policy's return), dashed lines.
    """
    _nonempty(runs, "runs")
    target = _target(path)
    bands = {}
    for algo, algo_runs in runs.items():
        if not algo_runs:
            raise ConfigError(f"runs[{algo!r}] is invalid: must hold at least one run")
        grid, values = resample_curves([x for x, _ in algo_runs], [y for _, y in algo_runs], points)
        bands[algo] = (grid, *seed_band(values, center, band, reps=reps))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, (algo, (grid, mid, lo, hi)) in enumerate(bands.items()):
        n = len(runs[algo])
        ax.fill_between(grid, lo, hi, color=f"C{i}", alpha=0.2, lw=0)
        ls = ("-", "--", ":")[i // 10 % 3]  # the colour cycle has 10: past it, another style
        ax.plot(grid, mid, color=f"C{i}", lw=2, ls=ls, label=f"{algo} ({center}, {n} runs)")
    for j, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, color=f"C{len(bands) + j}", ls="--", lw=1.2, label=name)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    band_name = "25-75th percentile" if band == "iqr" else "bootstrap 95% CI of the IQM"
    ax.set_title(title or f"{y_label} against {x_label}; bands: {band_name} over runs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, target)


def plot_objective_bars(
    intervals: Mapping[str, Sequence[Interval]],
    path: str | Path,
    *,
    objective_names: Sequence[str] = OBJECTIVE_NAMES,
    title: str | None = None,
) -> Path:
    """One panel per objective, one bar per algorithm at the point estimate, error bars from
    the interval (e.g. ``aggregate`` of each objective's ``[runs, 1]`` returns: IQM and its
    bootstrap CI). Panels, because the objectives' scales differ by orders of magnitude.

    Args:
        intervals: algorithm -> one :class:`Interval` per objective.
    """
    _nonempty(intervals, "intervals")
    target = _target(path)
    m = len(objective_names)
    for algo, row in intervals.items():
        if len(row) != m:
            raise ConfigError(
                f"intervals[{algo!r}] has {len(row)} entries, is invalid: must hold one "
                f"interval per objective ({m})"
            )
    plt = _pyplot()
    cols = min(m, 3)
    rows = -(-m // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    algos = list(intervals)
    for k, name in enumerate(objective_names):
        ax = axes[k // cols, k % cols]
        pts = np.array([intervals[a][k][0] for a in algos])
        lo = np.array([intervals[a][k][1] for a in algos])
        hi = np.array([intervals[a][k][2] for a in algos])
        ax.bar(range(len(algos)), pts, color=[f"C{i}" for i in range(len(algos))], alpha=0.8)
        ax.errorbar(range(len(algos)), pts, yerr=[pts - lo, hi - pts], fmt="none", ecolor="k")
        ax.set_xticks(range(len(algos)), algos, rotation=30, ha="right", fontsize=8)
        ax.set_title(name)
        ax.grid(alpha=0.3, axis="y")
    for k in range(m, rows * cols):
        axes[k // cols, k % cols].set_visible(False)
    fig.suptitle(title or "per-objective returns (point estimate and interval)")
    fig.tight_layout()
    return _save(fig, target)


def plot_pareto_projections(
    points: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    objective_names: Sequence[str] = OBJECTIVE_NAMES,
    senses: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Every pair of objectives as a scatter of the algorithms' points; the points that are
    non-dominated in the *full* objective space (over all algorithms together) are drawn
    large with a black edge, the others small.

    Args:
        points: algorithm -> ``[n, m]`` objective vectors (e.g. one per scalarisation weight
            or per seed).
        senses: per objective ``"max"``/``"min"`` (default all maximised).
    """
    _nonempty(points, "points")
    target = _target(path)
    m = len(objective_names)
    arrays = {}
    for algo, p in points.items():
        x = np.asarray(p, np.float64)
        if x.ndim != 2 or x.shape[1] != m or x.shape[0] < 1:
            raise ConfigError(
                f"points[{algo!r}] of shape {x.shape} is invalid: must be [n, {m}] with n >= 1"
            )
        arrays[algo] = x
    front = non_dominated(np.concatenate(list(arrays.values())), senses)
    masks = np.split(front, np.cumsum([len(x) for x in arrays.values()])[:-1])
    pairs = list(itertools.combinations(range(m), 2))
    cols = min(len(pairs), 5)
    rows = -(-len(pairs) // cols)
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for n, (i, j) in enumerate(pairs):
        ax = axes[n // cols, n % cols]
        for c, ((algo, x), on) in enumerate(zip(arrays.items(), masks, strict=True)):
            ax.scatter(x[~on, i], x[~on, j], s=10, color=f"C{c}", alpha=0.5)
            ax.scatter(x[on, i], x[on, j], s=40, color=f"C{c}", edgecolors="k", label=algo)
        ax.set_xlabel(objective_names[i], fontsize=8)
        ax.set_ylabel(objective_names[j], fontsize=8)
        ax.tick_params(labelsize=7)
    for n in range(len(pairs), rows * cols):
        axes[n // cols, n % cols].set_visible(False)
    handles = [
        plt.Line2D([], [], marker="o", ls="", color=f"C{c}", label=a) for c, a in enumerate(arrays)
    ]
    fig.legend(handles=handles, loc="upper right", fontsize=8)
    fig.suptitle(title or "Pareto projections (large, black edge: non-dominated in all objectives)")
    fig.tight_layout()
    return _save(fig, target)


def plot_latency_cdfs(
    latencies: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    path: str | Path,
    *,
    deadlines: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Path:
    """Empirical latency CDFs, one panel per task class, one line per algorithm.

    Args:
        latencies: algorithm -> class -> ``(values [C], counts [C])``: the latency of each
            histogram cell and its count (the simulator's ``(tier, age)`` histograms), or
            samples with unit counts.
        deadlines: class -> deadline in seconds, drawn as a vertical line.
    """
    _nonempty(latencies, "latencies")
    target = _target(path)
    classes = list(dict.fromkeys(c for per in latencies.values() for c in per))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(classes), figsize=(5 * len(classes), 3.6), squeeze=False)
    for k, cls in enumerate(classes):
        ax = axes[0, k]
        for i, (algo, per) in enumerate(latencies.items()):
            if cls not in per:
                continue
            values, counts = (np.asarray(a, np.float64) for a in per[cls])
            if values.shape != counts.shape or values.ndim != 1 or np.any(counts < 0):
                raise ConfigError(
                    f"latencies[{algo!r}][{cls!r}] is invalid: must be (values [C], counts [C]) "
                    "with non-negative counts"
                )
            if counts.sum() <= 0:
                continue  # no completion of this class
            seen = counts > 0  # empty cells add no step (and would stretch the axis)
            order = np.argsort(values[seen], kind="stable")
            cdf = np.cumsum(counts[seen][order]) / counts.sum()
            ax.step(values[seen][order], cdf, where="post", color=f"C{i}", label=algo)
        if deadlines and cls in deadlines:
            ax.axvline(deadlines[cls], color="k", ls=":", lw=1, label="deadline")
        ax.set_xlabel("latency (s)")
        ax.set_ylabel("fraction of completed tasks")
        ax.set_title(cls)
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "latency CDF of completed tasks")
    fig.tight_layout()
    return _save(fig, target)


def plot_interval_estimates(
    intervals: Mapping[str, Mapping[str, Interval]],
    path: str | Path,
    *,
    metrics: Sequence[str] | None = None,
    x_label: str = "normalised score",
) -> Path:
    """rliable's interval-estimate figure from :func:`evaluation.aggregate.aggregate` output:
    a panel per metric, a bar per algorithm spanning its interval, a tick at the point."""
    _nonempty(intervals, "intervals")
    target = _target(path)
    names = list(metrics) if metrics is not None else list(next(iter(intervals.values())))
    if not names:
        raise ConfigError("metrics is invalid: must name at least one metric")
    for algo, row in intervals.items():
        missing = [m for m in names if m not in row]
        if missing:
            raise ConfigError(f"intervals[{algo!r}] is invalid: it lacks metrics {missing}")
    _pyplot()
    plot_utils = require("rliable.plot_utils")
    points = {a: np.array([row[m].point for m in names]) for a, row in intervals.items()}
    cis = {
        a: np.array([[row[m].lo for m in names], [row[m].hi for m in names]])
        for a, row in intervals.items()
    }
    colors = {a: f"C{i}" for i, a in enumerate(intervals)}
    fig, _ = plot_utils.plot_interval_estimates(
        points, cis, metric_names=names, algorithms=list(intervals), colors=colors,
        xlabel=x_label, row_height=max(0.37, 2.0 / len(intervals)), xlabel_y_coordinate=-0.15,
    )  # fmt: skip
    return _save(fig, target)


def plot_probability_of_improvement(
    probabilities: Mapping[tuple[str, str], Interval], path: str | Path
) -> Path:
    """rliable's probability-of-improvement figure from
    :func:`evaluation.aggregate.probability_of_improvement` output: one row per pair (X, Y)."""
    _nonempty(probabilities, "probabilities")
    target = _target(path)
    sep = "\x1f"  # rliable joins a pair's names into one key; a character no name holds
    plt = _pyplot()
    plot_utils = require("rliable.plot_utils")
    estimates = {f"{x}{sep}{y}": iv.point for (x, y), iv in probabilities.items()}
    cis = {f"{x}{sep}{y}": np.array([iv.lo, iv.hi]) for (x, y), iv in probabilities.items()}
    fig, ax = plt.subplots(figsize=(4.5, 0.5 + 0.45 * len(estimates)))
    colors = [f"C{i}" for i in range(len(estimates))]
    plot_utils.plot_probability_of_improvement(
        estimates, cis, pair_separator=sep, ax=ax, colors=colors
    )
    return _save(fig, target)
