"""Which evaluation's weights a run keeps as its best checkpoint: one rule for every
algorithm (the trainer's ``best.pt``, a Stable-Baselines3 baseline's ``best_model.zip``), so
the comparison chooses every algorithm's checkpoint alike.
"""

from __future__ import annotations

import math


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
