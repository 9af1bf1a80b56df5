"""Which way does a trained run's action critic say the intensities should move?

Run from the repository root on the run directories of a study trained with
``algo.continuous_pg=qprop`` (or ``reparameterized``), e.g.::

    python docs/results/uav_qprop/slope.py runs/qprop 64 > docs/results/uav_qprop/slope.md

For each run's ``best.pt`` it plays ``N`` whole episodes of the training split (disjoint from
the validation and held-out episodes) with the policy as deployed (transfer drawn,
intensities at their mode) and reads the critic's slope at the deployed action,
``dc(f, k, a) / da`` with ``a`` the intensities on their ``[0, 1]`` scale (what the env
receives), at every step. It prints the mean slope per intensity (reward units, unscaled,
per unit of intensity) and its standard error across episodes, and the same for the sum over
the six, the direction of the uniform shift that ``docs/results/uav_parts/parts.py``
measures. Why by hand: a one-off reading of a learner-only head for docs/results.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.evaluation.rollout import episode_seeds
from impala_hybrid.experiments.trainer import load_run_model

STEPS = 1000


def slopes(run_dir: Path, n: int) -> np.ndarray:
    """``[N, D]``: each episode's mean critic slope per intensity (reward units)."""
    cfg, model = load_run_model(run_dir, "best")
    if model.action_critic is None:
        raise SystemExit(f"{run_dir}: trained without an action critic (algo.continuous_pg)")
    env = make_vector_env(cfg.env, n, cfg.env_kwargs)
    obs, _ = env.reset(seed=episode_seeds(0, n, "train").tolist())
    gen = torch.Generator().manual_seed(0)
    first = torch.ones(n, dtype=torch.bool)
    total = np.zeros((n, model.action.action_dim))
    half_range = (model.action_high - model.action_low) / 2  # d(env a) / d(tanh u)
    with model.full_precision():
        for _ in range(STEPS):
            x = torch.as_tensor(np.asarray(obs, np.float32).reshape(n, -1))
            with torch.no_grad():
                out = model(x[None], first[None])
                dist = model.distribution({k: v[0] for k, v in out.params.items()})
                action = dist.sample(gen)
                action = action._replace(continuous=dist.continuous.mode())
            squashed = torch.tanh(action.continuous).requires_grad_(True)
            assert out.features is not None
            c = model.critic_advantage(out.features[0], action.discrete, squashed)
            (g,) = torch.autograd.grad(c.sum(), squashed)
            total += (g / half_range).numpy() / cfg.algo.reward_scale
            first = torch.zeros(n, dtype=torch.bool)
            obs, _, _, _, _ = env.step(model.action.to_env(dist.to_env(action)))
    return total / STEPS


def main(runs: Path, n: int) -> None:
    print("| run | " + " | ".join(f"intensity {d}" for d in range(6)) + " | all six |")
    print("|---|" + "---:|" * 7)
    for run_dir in sorted(runs.glob("seed*")):
        per_episode = slopes(run_dir, n)
        cols = [*per_episode.T, per_episode.sum(-1)]
        cells = []
        for col in cols:
            se = col.std(ddof=1) / np.sqrt(len(col))
            cells.append(f"{col.mean():+.3f} ({col.mean() / se:+.1f} SE)")
        print(f"| {run_dir.name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
