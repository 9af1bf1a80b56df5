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
#: The default of the trainer and of the Stable-Baselines3 baselines' validation callback
#: alike. Paired since session 18: on the UAV preset (8 seeds, bf16 host) the paired choice
#: scored 0.0 to +1.8 above ``last.pt`` held out on every seed (+0.7 on the mean; with 5
#: float32 runs, +0.4 over 13, one run 0.4 below), where the unpaired rule, its standard
#: error ~18 points on 32 episodes, kept the last checkpoint even 1.1% below the peak on
#: validation (docs/results.md).
DEFAULT_SELECTION = "paired"


def check_selection(rule: str) -> str:
    """``rule`` if it is one of :data:`SELECTIONS`, else a ``ValueError`` naming them."""
    if rule not in SELECTIONS:
        raise ValueError(f"selection = {rule!r} is invalid: allowed {SELECTIONS}")
    return rule


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


def judge(
    rule: str,
    ret: float | None,
    std: float,
    episodes: int,
    best: float | None,
    returns: Sequence[float] | None = None,
    best_returns: Sequence[float] | None = None,
) -> tuple[bool, float | None, list[float] | None]:
    """One evaluation against the best so far: ``(replaces best checkpoint, best mean,
    per-episode returns of the best-mean evaluation)`` after it.

    ``rule`` is ``TrainConfig.selection``: ``mean`` is :func:`is_new_best` as it stands;
    ``paired`` passes the std of the per-episode differences from the best-mean evaluation
    (:func:`paired_std`) instead of ``std``, where both evaluations' per-episode ``returns``
    are known and over as many episodes (else, as after resuming a run saved before
    per-episode returns were kept, it falls back to ``mean``). Either way the reference
    stays the best mean seen, so a slow decline cannot ratchet the choice down.
    """
    if (
        check_selection(rule) == "paired"
        and returns is not None
        and best_returns is not None
        and 0 < len(returns) == len(best_returns)
    ):
        std = paired_std(returns, best_returns)
    improved = is_new_best(ret, std, episodes, best)
    if improved and ret is not None and (best is None or ret > best):
        return True, float(ret), None if returns is None else [float(r) for r in returns]
    return improved, best, None if best_returns is None else list(best_returns)
