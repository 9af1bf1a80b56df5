"""Which evaluation's weights a run keeps as its best checkpoint: one rule for every
algorithm (the trainer's ``best.pt``, a Stable-Baselines3 baseline's ``best_model.zip``), so
the comparison chooses every algorithm's checkpoint alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def is_new_best(ret: float | None, std: float, episodes: int, best: float | None) -> bool:
    """Whether an evaluation with mean return ``ret`` (sample std ``std`` over ``episodes``)
    replaces ``best.pt``, given the best mean so far ``best``.

    Ties within noise go to the later checkpoint: ``ret >= best - std / sqrt(episodes)``
    (one standard error). With a strict ``>``, a run on a plateau (a success rate of 1.0 at
    every evaluation, or returns that differ only by evaluation noise) kept its earliest
    checkpoint, trained least. ``best`` stays the maximum mean seen (the caller keeps it),
    so a slow decline cannot ratchet the selection down by more than one standard error.
    """
    if ret is None or not math.isfinite(ret):
        return False
    if best is None:
        return True
    noise = std / math.sqrt(episodes) if math.isfinite(std) and episodes > 1 else 0.0
    return ret >= best - noise


#: How an evaluation is judged against the best so far (``TrainConfig.selection``).
SELECTIONS = ("mean", "paired")


def paired_std(returns: Sequence[float], peak: Sequence[float]) -> float:
    """The sample std of the per-episode differences ``returns - peak`` (``[episodes]``
    each, the same episodes in the same order): the noise of a paired comparison.

    Every evaluation plays the same fixed episodes (common random numbers), so most of the
    spread between episodes (a quiet episode against a burst of emergencies: a std of ~100
    on the UAV preset's returns) is common to two checkpoints and cancels in their
    difference. Passed as ``std`` to :func:`is_new_best`, it replaces the unpaired standard
    error (~18 points on 32 UAV episodes, which let every evaluation of a plateau a few
    points below its peak replace ``best.pt``) by the paired one.
    """
    a, b = np.asarray(returns, np.float64), np.asarray(peak, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"paired returns have shapes {a.shape} and {b.shape}: both must be [episodes] "
            "over the same episodes"
        )
    return float((a - b).std(ddof=1)) if a.shape[0] > 1 else 0.0
