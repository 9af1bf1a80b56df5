"""Does the discount the learner optimises prefer slower servers than the return it is scored on?

Run from the repository root on a study's run directories::

    python docs/results/uav_parts/discount.py runs/parts 64 > docs/results/uav_parts/discount.md

The learner maximises discounted returns (gamma 0.99 a 0.1 s step: a horizon of ~10 s);
the table scores the undiscounted 1000-step return. An intensity's energy is paid in the
step, the latency it saves in later completions, so a discount could by itself put the best
intensities lower than the scored return's. For each run's ``best.pt`` this plays ``N``
training-split episodes (common random numbers: the same episodes and transfer draws for
every row) with the policy as deployed and every intensity shifted by ``d`` (clipped to
[0, 1]), and reports, against ``d = 0`` (mean difference over episodes, bootstrap standard
error):

- the undiscounted return over the 1000 steps (what the tables score);
- the discounted objective at gamma 0.99, 0.995 and 0.999: the mean over ``t < 500`` of the
  discounted return from ``t`` (the rest of the episode is at least 500 steps, so the
  truncation weighs at most ``0.99^500 < 0.007``; at 0.995 and 0.999 the truncation is part of
  the objective measured: a lower bound on the horizon's effect).

If the discounted columns peak at a smaller shift than the undiscounted one, the discount
alone pulls the intensities down. Why by hand: a one-off check for docs/results.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.evaluation.policy import TorchPolicy
from impala_hybrid.evaluation.rollout import episode_seeds
from impala_hybrid.experiments.trainer import load_run_model

SHIFTS = (-0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2)
GAMMAS = (0.99, 0.995, 0.999)
STEPS, HORIZON, BOOT = 1000, 500, 500


def rewards(run_dir: Path, n: int, shift: float) -> np.ndarray:
    """Scalar rewards ``[STEPS, n]`` of ``n`` training-split episodes, intensities + shift."""
    cfg, model = load_run_model(run_dir, "best")
    env = make_vector_env(cfg.env, n, cfg.env_kwargs)
    obs, _ = env.reset(seed=episode_seeds(0, n, "train").tolist())
    policy = TorchPolicy(model, discrete_choice=cfg.discrete_choice, seed=0)
    out = np.zeros((STEPS, n))
    for t in range(STEPS):
        action = policy(np.asarray(obs, np.float32))
        action["intensity"] = np.clip(action["intensity"] + shift, 0.0, 1.0).astype(np.float32)
        obs, reward, term, trunc, _ = env.step(action)
        policy.observe_done(np.asarray(term) | np.asarray(trunc))
        out[t] = reward
    return out


def objectives(r: np.ndarray) -> np.ndarray:
    """Per episode ``[1 + len(GAMMAS), n]``: the return, then each discounted objective."""
    rows = [r.sum(0)]
    for gamma in GAMMAS:
        acc, disc = np.zeros(r.shape[1]), np.zeros_like(r)
        for t in reversed(range(STEPS)):
            acc = r[t] + gamma * acc
            disc[t] = acc
        rows.append(disc[:HORIZON].mean(0))
    return np.stack(rows)


def main(runs: Path, n: int) -> None:
    names = ["return (scored)", *(f"discounted, gamma {g}" for g in GAMMAS)]
    print("| run | shift | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for run_dir in sorted(runs.glob("seed*")):
            per = {d: objectives(rewards(run_dir, n, d)) for d in SHIFTS}
            idx = rng.integers(0, n, (BOOT, n))
            for d in SHIFTS:
                diff = per[d] - per[0.0]  # [K, n], paired by episode
                se = diff[:, idx].mean(-1).std(-1, ddof=1)
                cells = [f"{m:+.2f} ({s:.2f})" for m, s in zip(diff.mean(1), se, strict=True)]
                if d == 0.0:
                    cells = [f"{v:.2f}" for v in per[0.0].mean(1)]
                print(f"| {run_dir.name} | {d:+.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
