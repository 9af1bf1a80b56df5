"""Pareto analysis of a set of policies' objective vectors: the non-dominated set, the
hypervolume, a reference point from bounds, and expected utility over a weight set.

Points are ``[n, m]``: ``n`` policies (or one policy per scalarisation weight), ``m``
objectives. ``senses`` gives each objective's direction, ``"max"`` or ``"min"`` (default: all
``"max"``, the UAV objectives' convention: higher is better).

What is wrapped and what is written here, and why:

* Dominance and hypervolume come from ``moocore`` (López-Ibáñez et al.; C implementations
  of the dimension-sweep and HV3D+/HV4D+ algorithms, exact in any dimension): the exact
  hypervolume in 6-D is subtle code that a maintained library has already tested. Points that
  do not strictly dominate the reference point add nothing (moocore's convention, and
  UAV_ENV.md's).
* The reference point (worst bound minus a margin of the range) and expected utility
  (a few lines of NumPy each) are written here.

moocore is in the ``report`` extra and imported on first use (``extras.require``).

Expected utility (Zintgraf et al. 2015, "Quality assessment of MORL policies", BNAIC; the
EUM of MORL-Baselines, Felten et al. 2023): ``EU = mean_{w in W} max_{i} w . f_i``, the
utility a decision maker with a linear utility drawn uniformly from ``W`` gets from the best
policy of the set. Unlike the hypervolume it needs no reference point, and it is in the
objectives' own units.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from impala_hybrid.extras import require
from impala_hybrid.validation import ConfigError, finite_matrix

SENSES = ("max", "min")


def _points(points: np.ndarray, name: str = "points") -> np.ndarray:
    return finite_matrix(points, name, rows="points", cols="objectives")


def _maximise(senses: Sequence[str] | None, m: int) -> np.ndarray:
    """``[m]`` bool, True where the objective is maximised."""
    if senses is None:
        return np.ones(m, bool)
    if len(senses) != m or any(s not in SENSES for s in senses):
        raise ConfigError(
            f"senses = {list(senses)!r} is invalid: must hold {m} entries, each one of "
            f"{list(SENSES)}"
        )
    return np.array([s == "max" for s in senses])


def as_maximised(points: np.ndarray, senses: Sequence[str] | None = None) -> np.ndarray:
    """``[n, m]`` points with minimised objectives negated, so that every one is maximised."""
    p = _points(points)
    return np.where(_maximise(senses, p.shape[1]), p, -p)


def non_dominated(points: np.ndarray, senses: Sequence[str] | None = None) -> np.ndarray:
    """``[n]`` bool mask of the points no other point dominates.

    ``a`` dominates ``b`` when it is at least as good in every objective and better in one.
    Duplicates of a non-dominated point are all kept (two algorithms with the same vector
    are both on the front).
    """
    moocore = require("moocore")
    p = _points(points)
    maximise = _maximise(senses, p.shape[1])
    return np.asarray(moocore.is_nondominated(p, maximise=maximise.tolist(), keep_weakly=True))


def hypervolume(
    points: np.ndarray, reference: np.ndarray, senses: Sequence[str] | None = None
) -> float:
    """Lebesgue measure of the region the points dominate and that dominates ``reference``.

    Args:
        points: ``[n, m]`` objective vectors.
        reference: ``[m]`` a point every relevant point should strictly dominate (see
            :func:`reference_point`); points that do not add nothing.
        senses: per objective ``"max"`` or ``"min"`` (default all ``"max"``).
    """
    moocore = require("moocore")
    p = _points(points)
    ref = _points(np.asarray(reference, np.float64)[None, :], "reference")[0]
    if ref.shape[0] != p.shape[1]:
        raise ConfigError(
            f"reference of length {ref.shape[0]} is invalid: must have one entry per "
            f"objective ({p.shape[1]})"
        )
    maximise = _maximise(senses, p.shape[1])
    return float(moocore.hypervolume(p, ref=ref, maximise=maximise.tolist()))


def reference_point(
    lower: np.ndarray,
    upper: np.ndarray,
    margin: float = 0.1,
    senses: Sequence[str] | None = None,
) -> np.ndarray:
    """``[m]``: each objective's worst bound moved a further ``margin`` of its range outward.

    For a maximised objective ``lower - margin (upper - lower)``, for a minimised one
    ``upper + margin (upper - lower)``. The margin gives points on the worst bound a positive
    contribution, and absorbs sampling noise where a bound holds only in expectation
    (``envs.bounds``).
    """
    lo = _points(np.asarray(lower, np.float64)[None, :], "lower")[0]
    hi = _points(np.asarray(upper, np.float64)[None, :], "upper")[0]
    if lo.shape != hi.shape or not np.all(lo < hi):
        raise ConfigError(
            f"lower = {lo.tolist()} and upper = {hi.tolist()} are invalid: they must have the "
            "same length and lower < upper in every objective"
        )
    if not 0.0 <= margin < np.inf:
        raise ConfigError(f"margin = {margin!r} is invalid: allowed range is [0, inf)")
    span = hi - lo
    return np.where(_maximise(senses, lo.shape[0]), lo - margin * span, hi + margin * span)


def simplex_weights(m: int, divisions: int) -> np.ndarray:
    """``[C(divisions + m - 1, m - 1), m]``: every weight vector with entries ``k / divisions``
    summing to one (the Das-Dennis lattice on the simplex), the first objective's corner first.

    A deterministic, evenly spread weight set for :func:`expected_utility`; ``m = 6`` with
    ``divisions = 4`` gives 126 weights, the corners (one objective only) included.
    """
    if m < 1 or divisions < 1:
        raise ConfigError(
            f"m = {m!r}, divisions = {divisions!r} are invalid: both must be integers >= 1"
        )
    # Stars and bars: choose the m - 1 bar positions among divisions + m - 1 slots.
    rows = []
    for bars in itertools.combinations(range(divisions + m - 1), m - 1):
        edges = (-1, *bars, divisions + m - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(m)])
    return np.array(rows, np.float64)[::-1] / divisions


def expected_utility(
    points: np.ndarray, weights: np.ndarray, senses: Sequence[str] | None = None
) -> float:
    """``mean_w max_i w . f_i`` (Zintgraf et al. 2015): minimised objectives enter negated.

    Args:
        points: ``[n, m]`` objective vectors of a policy set.
        weights: ``[w, m]`` non-negative weight vectors (e.g. :func:`simplex_weights`).
    """
    p = as_maximised(points, senses)
    w = _points(weights, "weights")
    if w.shape[1] != p.shape[1] or np.any(w < 0):
        raise ConfigError(
            f"weights of shape {w.shape} is invalid: must be [w, {p.shape[1]}] "
            "with non-negative entries"
        )
    return float((w @ p.T).max(axis=1).mean())
