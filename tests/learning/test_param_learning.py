"""Learning tests on the parameterised-action toys of ``envs/param_toys.py`` (issue 13):
greedy success rate on 256 fixed evaluation episodes after a fixed step budget and seed,
trained serially (deterministic) through the ``module:factory`` path a user's env takes.

Measured when written (docs/results.md, "Parameterised-action tasks (issue 13)"), seeds 0/1/2:
reach at 100k: gated 0.91/0.95/0.96, factorised 0.91/0.91/0.92; sequence at 200k: gated
0.73/0.77/0.74, factorised 0.72/0.70/0.66; goal at 300k: gated 0.90/0.93/0.89, factorised
0.98/0.98/0.98.
Thresholds sit below the worst seed: a regression guard, not a quality bar.

Goal's budget is 500k: serial training is deterministic on one machine, but not across CPUs
(the matrix kernels round differently), and at 300k the sparse goal task sat on the edge of
being learned. The same code (commit c92d226, where the figures above were measured on an
Intel Xeon) gives on an AMD EPYC at 300k: gated 0.99/1.00/0.25, factorised 0.99/0.85/0.82;
at 500k: gated 1.00/1.00/0.996, factorised 1.00/1.00/1.00.
"""

from __future__ import annotations

import pytest

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.evaluation.episodes import evaluate_episodes
from impala_hybrid.evaluation.policy import TorchPolicy
from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.runtime.serial import train_serial

EVAL_SEED = 1000
BUDGET = {"reach": 100_000, "sequence": 200_000, "goal": 500_000}


def param_config(task: str, hybrid_mode: str, seed: int = 0) -> TrainConfig:
    """The configuration of these tests (the defaults' exploration: entropy 0.01 on both
    components, initial log-std -0.5, no parameter noise)."""
    return TrainConfig(
        env=f"impala_hybrid.envs.param_toys:{task}",
        num_envs=32,
        total_steps=BUDGET[task],
        seed=seed,
        model=ModelConfig(hidden=(64, 64), hybrid_mode=hybrid_mode),
        algo=IMPALAConfig(unroll_length=8, batch_size=32, gamma=0.9, lr=1e-3),
    )


def greedy_success(cfg: TrainConfig) -> float:
    model = train_serial(cfg).model.eval()
    stats = evaluate_episodes(
        TorchPolicy(model), cfg.env, 256, EVAL_SEED, env_kwargs=cfg.env_kwargs, num_envs=32,
        split="eval",
    )  # fmt: skip
    return float(stats.summary()["info"]["success"])


def test_gated_head_learns_reach_within_100k_steps() -> None:
    """CI-sized (about 10 s): actions with 2, 1 and 0 parameters and their own bounds."""
    success = greedy_success(param_config("reach", "gated"))
    assert success >= 0.8, success


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("task", "mode", "threshold"),
    [
        ("reach", "gated", 0.8),
        ("reach", "factorized", 0.8),
        ("sequence", "gated", 0.6),
        ("sequence", "factorized", 0.55),
        ("goal", "gated", 0.8),
        ("goal", "factorized", 0.85),
    ],
)
def test_parameterized_tasks(task: str, mode: str, threshold: float, seed: int) -> None:
    success = greedy_success(param_config(task, mode, seed))
    assert success >= threshold, success
