"""Learning tests: a threshold on a step budget with fixed seeds (never wall-clock).

Each trains a preset from ``experiments.spec`` with the serial runtime and evaluates the greedy
policy (the distribution's mode, what one deploys) on 16 fixed evaluation episodes.
"""

from __future__ import annotations

import dataclasses

import pytest

from impala_hybrid.evaluation.policy import evaluate_returns
from impala_hybrid.experiments.spec import cartpole, param_choice, pendulum
from impala_hybrid.runtime.serial import train_serial

EVAL_SEED = 1000


def test_cartpole_solved_within_300k_steps() -> None:
    cfg = cartpole()
    assert cfg.total_steps == 300_000 and cfg.seed == 0
    result = train_serial(cfg)
    returns = evaluate_returns(result.model, cfg.env, 16, seed=EVAL_SEED)
    assert returns.mean() >= 475.0, returns


def test_pendulum_within_1m_steps() -> None:
    """The continuous-action learning test kept in CI (about a minute here)."""
    cfg = pendulum()
    assert cfg.total_steps == 1_000_000 and cfg.seed == 0
    result = train_serial(cfg)
    returns = evaluate_returns(result.model, cfg.env, 16, seed=EVAL_SEED)
    assert returns.mean() >= -300.0, returns


def test_gated_hybrid_head_solves_param_choice() -> None:
    """Only the chosen discrete action's parameter matters; the gated head learns each one."""
    cfg = param_choice()
    assert cfg.model.hybrid_mode == "gated" and cfg.total_steps == 100_000
    result = train_serial(cfg)
    returns = evaluate_returns(result.model, cfg.env, 256, seed=EVAL_SEED)
    assert returns.mean() >= 0.9, returns.mean()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cartpole_other_seeds(seed: int) -> None:
    cfg = dataclasses.replace(cartpole(), seed=seed)
    result = train_serial(cfg)
    assert evaluate_returns(result.model, cfg.env, 16, seed=EVAL_SEED).mean() >= 475.0
