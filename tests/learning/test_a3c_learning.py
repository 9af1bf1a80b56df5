"""A3C's learning test: a threshold on a step budget with fixed seeds, as for IMPALA
(``test_learning.py``), so A3C's rows in comparisons are of a working implementation.

Two workers update one model in an order set by timing, so a run is not reproducible bit
for bit; the threshold is met with a margin (every seed scored 500, the maximum, on every
try while tuning, 16 greedy episodes each).
"""

from __future__ import annotations

import dataclasses

import pytest

from impala_hybrid.evaluation.policy import evaluate_returns
from impala_hybrid.experiments.spec import cartpole_a3c
from impala_hybrid.runtime.a3c import train_a3c

EVAL_SEED = 1000


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a3c_solves_cartpole_within_200k_steps(seed: int) -> None:
    cfg = dataclasses.replace(cartpole_a3c(), seed=seed)
    assert cfg.total_steps == 200_000 and cfg.a3c.workers == 2
    result = train_a3c(cfg)
    assert result.learner.samples == 200_064  # the first multiple of 128 past the budget
    returns = evaluate_returns(result.model, cfg.env, 16, seed=EVAL_SEED)
    assert returns.mean() >= 475.0, returns
