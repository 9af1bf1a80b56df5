"""Latency percentiles and CVaR from age histograms (pure NumPy, vectorised over episodes).

The simulator records each completion in a histogram over (class, tier, age bin); every cell
has one exact latency ``(age + 0.5) dt + offset[tier]``. So quantiles need no sampling: sort
the cells' latencies once, reorder the counts, and read the inverse CDF.

Definitions (for a discrete distribution with atoms ``x_i`` and probabilities ``p_i``):

* ``quantile(q) = min{x : F(x) >= q}`` (the lower inverse CDF, "VaR_q");
* ``CVaR_a = VaR_a + E[(X - VaR_a)+] / (1 - a)`` (Rockafellar and Uryasev 2002, eq. 4.4
  at the minimiser), which is the mean of the worst ``1 - a`` probability mass, splitting the
  atom at VaR when it straddles the level.

Percentiles are over *completed* tasks; dropped tasks are reported separately as counts.
Episodes with no completion of a class get NaN.
"""

from __future__ import annotations

import numpy as np


def latency_quantiles(hist: np.ndarray, latency: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """Quantiles of a latency histogram.

    Args:
        hist: ``[N, C]`` non-negative counts over ``C`` cells.
        latency: ``[C]`` latency of each cell.
        qs: quantile levels in (0, 1].

    Returns:
        ``[N, len(qs)]`` quantiles (NaN where the histogram is empty).
    """
    order = np.argsort(latency, kind="stable")
    values = latency[order]
    counts = hist[:, order].astype(np.float64)
    total = counts.sum(axis=1, keepdims=True)
    cdf = np.cumsum(counts, axis=1) / np.where(total > 0, total, 1.0)
    out = np.empty((hist.shape[0], len(qs)))
    for j, q in enumerate(qs):
        idx = (cdf < q - 1e-12).sum(axis=1)  # first cell with F >= q
        out[:, j] = values[np.minimum(idx, len(values) - 1)]
    out[total[:, 0] == 0] = np.nan
    return out


def latency_cvar(hist: np.ndarray, latency: np.ndarray, alpha: float) -> np.ndarray:
    """CVaR at level ``alpha`` (mean of the worst ``1 - alpha`` mass) of a latency histogram.

    Args:
        hist: ``[N, C]`` counts; latency: ``[C]``; alpha in [0, 1).

    Returns:
        ``[N]`` CVaR (NaN where the histogram is empty).
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha = {alpha!r} is invalid: allowed range is [0, 1)")
    var = latency_quantiles(hist, latency, (alpha,))[:, 0]
    counts = hist.astype(np.float64)
    total = counts.sum(axis=1)
    safe_total = np.where(total > 0, total, 1.0)
    tail = (counts * np.maximum(latency[None, :] - var[:, None], 0.0)).sum(axis=1) / safe_total
    out = var + tail / (1.0 - alpha)
    out[total == 0] = np.nan
    return out
