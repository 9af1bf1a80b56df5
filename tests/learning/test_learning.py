"""Learning tests: a threshold on a step budget with fixed seeds (never wall-clock).

Each trains a preset from ``experiments.spec`` with the serial runtime and evaluates the greedy
policy (the distribution's mode, what one deploys) on 16 fixed evaluation episodes.
"""

from __future__ import annotations

import dataclasses

import pytest

from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.evaluation.policy import evaluate_returns
from impala_hybrid.evaluation.rollout import evaluate
from impala_hybrid.experiments.spec import cartpole, param_choice, pendulum, uav_hybrid
from impala_hybrid.experiments.trainer import run_policy
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


def _uav_return(seed: int, steps: int) -> tuple[float, float]:
    """The UAV preset's learner trained serially (deterministic) for ``steps``; the return
    and emergency drops of its deployed policy (``run_policy``: the transfer drawn, as the
    preset's ``discrete_choice`` says) on the 32 validation episodes the trainer selects on."""
    cfg = dataclasses.replace(uav_hybrid(), total_steps=steps, seed=seed)
    result = train_serial(cfg)
    r = evaluate(
        run_policy(cfg, result.model.eval()), UAVNetConfig(), episodes=1, num_envs=32, seed=0,
        split="validation",
    )  # fmt: skip
    return r.return_mean, r.metrics["dropped_emergency"]


def test_uav_learning_regression_3m_steps() -> None:
    """CI-sized learning regression on the main task (about 2 minutes here).

    Serial runtime at seed 0 (the local runtime is asynchronous, so not reproducible): at 3M
    steps the preset's deployed policy (its transfer drawn; the entropy weights annealed from
    0.05/0.01 to 0.01/0.002 over the 3M steps) reaches 391.2 on these episodes, with the
    trunk in bfloat16 (``trunk_dtype = "auto"`` on a CPU with native bf16) as in float32 (392.0
    before the fused Adam and the 16-node entropy quadrature) and drops no emergency task
    (local-only -732, MaxWeight 350, threshold 404). With the constant weights before
    (0.03/0.01) it reached 385.4; with 0.01/0.01, -46.1 (a zone written off, 1006 drops); at
    the argmax transfer, which every evaluation used before ``discrete_choice``, 338.2 with
    1.9 drops; the code before issue 8 reached -137 (1110 drops) with the same budget and
    seed; with observations normalised (``model.obs_norm = true``, not the preset) 395.6 with
    no drops. (The serial runtime has no actors, so the preset's layout and policy lag play
    no part here.) The full result (8 seeds, local runtime, held out) is docs/results.md's
    study.
    """
    ret, drops = _uav_return(0, 3_000_000)
    assert ret >= 360.0, ret
    assert drops <= 1.0, drops


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "threshold"), [(1, 120.0), (2, 355.0)])
def test_uav_learning_other_seeds(seed: int, threshold: float) -> None:
    """The same budget on seeds 1 and 2 (make test-slow), thresholds about 25 below what
    each reached when written (147.7 and 382.5 with the annealed entropy weights, 146.8 and
    380.6 since the fused Adam and the 16-node entropy quadrature, 145.7 and 378.8 with the
    trunk in bfloat16; 135.8 and -52.9 with the constant ones before; 380.4 and -24.3 with
    observations normalised, not the preset): a regression guard, not a quality bar. Serially
    seed 1 has not learned the beam by 3M steps (715 emergency drops per episode), seed 2
    has (none); with the local runtime all 8 seeds do (docs/results.md)."""
    ret, _ = _uav_return(seed, 3_000_000)
    assert ret >= threshold, ret
