"""How much a run's action-value head knows beyond the state value (``discrete_pg =
expected``, docs/results.md).

Why: the expected discrete policy gradient follows ``Q(x, k) - sum_j pi(j) Q(x, j)``; if
``Q(x, k_t)`` predicts V-trace's ``q_t`` no better than ``V(x_t)`` does, those per-choice
advantages are noise and the gradient carries nothing. This plays fresh unrolls with the run's
own policy (its actor, seeded apart from training) and compares the two predictors' mean
squared errors on the same targets, and reports the spread of the learned advantages.

Run: ``python -m impala_hybrid.experiments.action_values --run RUN_DIR [--run ...]``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from impala_hybrid.experiments.trainer import load_run_model


def action_value_check(
    run_dir: str | Path,
    *,
    checkpoint: str = "last",
    unrolls: int = 20,
    num_envs: int = 64,
    seed: int = 123,
) -> dict[str, float]:
    """``{"mse_q", "mse_v", "spread"}`` over ``unrolls`` unrolls of ``num_envs`` envs:
    ``mean 0.5 (q_t - Q(x_t, k_t))^2``, ``mean 0.5 (q_t - w . V(x_t))^2`` and the mean of
    ``max_k a(x_t, k) - min_k a(x_t, k)`` (targets in the learner's reward scale)."""
    from impala_hybrid.runtime.serial import build

    cfg, model = load_run_model(run_dir, checkpoint)
    if cfg.algo.discrete_pg != "expected":
        raise ValueError(
            f"{run_dir}: trained with algo.discrete_pg = {cfg.algo.discrete_pg!r}, "
            "it has no action-value head (needs 'expected')"
        )
    algo = dataclasses.replace(cfg.algo, batch_size=num_envs)
    cfg = dataclasses.replace(cfg, num_envs=num_envs, seed=seed, algo=algo)
    _, learner, actor = build(cfg)
    learner.model.load_state_dict(model.state_dict())
    sums = {"mse_q": 0.0, "mse_v": 0.0, "spread": 0.0}
    with torch.no_grad():
        for _ in range(unrolls):
            batch = actor.unroll(learner.version)
            fwd = learner.forward(batch)
            tg = learner.targets(batch, fwd)
            assert fwd.action_values is not None and fwd.chosen_action_values is not None
            v = fwd.values[: batch.unroll_length] @ learner.reward_weights
            a = fwd.action_values - v[..., None]
            sums["mse_q"] += (0.5 * (tg.q_scalar - fwd.chosen_action_values) ** 2).mean().item()
            sums["mse_v"] += (0.5 * (tg.q_scalar - v) ** 2).mean().item()
            sums["spread"] += (a.max(-1).values - a.min(-1).values).mean().item()
    return {k: x / unrolls for k, x in sums.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m impala_hybrid.experiments.action_values")
    p.add_argument("--run", action="append", required=True, help="run directory (repeatable)")
    p.add_argument("--checkpoint", default="last", choices=("best", "last"))
    p.add_argument("--unrolls", type=int, default=20)
    args = p.parse_args(argv)
    for run in args.run:
        r = action_value_check(run, checkpoint=args.checkpoint, unrolls=args.unrolls)
        print(f"{run}: mse Q {r['mse_q']:.4f}, mse V {r['mse_v']:.4f}, spread {r['spread']:.3f}")


if __name__ == "__main__":
    main()
