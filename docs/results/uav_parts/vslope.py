"""Does the value network see what shorter queues are worth? (docs/results.md)

Run from the repository root on a study's run directories::

    python docs/results/uav_parts/vslope.py runs/parts 256 > docs/results/uav_parts/vslope.md

For each run's ``best.pt`` it plays ``N`` whole episodes of the training split with the policy
as trained (transfer and intensities drawn) and, on the first 500 steps of each (the
episode's end at least 500 steps away, ``0.99^500 < 0.007``), fits two least-squares
regressions on the same design, the 29 observation entries and a constant:

- the discounted Monte Carlo return ``G_t`` (gamma 0.99, as trained), whose conditional
  mean is the policy's true value ``V^pi(x_t)``;
- the value network's ``V(x_t)`` (reward units).

If ``V`` were ``V^pi`` the two coefficient vectors would agree up to sampling noise (the
least-squares projection of ``E[G | x]`` is that of ``G``); their difference is the linear
part of the value network's error. It prints, for each queue entry of the observation
(``log1p(Q) / log1p(buffer)`` per node and class), both coefficients and the difference with
its standard error from a bootstrap over episodes. Why by hand: a one-off check for
docs/results.md; nothing in the library regresses returns on observations.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.evaluation.rollout import episode_seeds
from impala_hybrid.experiments.trainer import load_run_model

GAMMA, STEPS, HORIZON, BOOT = 0.99, 1000, 500, 200
NODES = ("L1", "L2", "L3", "L4", "H")  # the observation's five nodes, in order
STRIDE = (5, 5, 5, 5, 3)  # entries per node: queues E, R, age, [rate, alert] (H has 3)


def queue_columns() -> list[tuple[str, int]]:
    out, base = [], 0
    for node, width in zip(NODES, STRIDE, strict=True):
        out += [(f"{node} emergency", base), (f"{node} routine", base + 1)]
        base += width
    return out


def rollout(run_dir: Path, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observations ``[H, N, 29]``, returns ``G`` ``[H, N]`` and values ``[H, N]``."""
    cfg, model = load_run_model(run_dir, "best")
    env = make_vector_env(cfg.env, n, cfg.env_kwargs)
    obs, _ = env.reset(seed=episode_seeds(0, n, "train").tolist())
    gen = torch.Generator().manual_seed(0)
    first = torch.ones(n, dtype=torch.bool)
    state = model.initial_state(n)
    xs, values, rewards = [], np.zeros((STEPS, n)), np.zeros((STEPS, n))
    with torch.no_grad(), model.full_precision():
        for t in range(STEPS):
            x = torch.as_tensor(np.asarray(obs, np.float32).reshape(n, -1))
            xs.append(x.numpy())
            out = model(x[None], first[None], state)
            state, first = out.core_state, torch.zeros(n, dtype=torch.bool)
            dist = model.distribution({k: v[0] for k, v in out.params.items()})
            action = dist.sample(gen)
            values[t] = out.values[0, :, 0].numpy() / cfg.algo.reward_scale
            obs, reward, _, _, _ = env.step(model.action.to_env(dist.to_env(action)))
            rewards[t] = reward
    returns, acc = np.zeros_like(rewards), np.zeros(n)
    for t in reversed(range(STEPS)):
        acc = rewards[t] + GAMMA * acc
        returns[t] = acc
    return np.stack(xs)[:HORIZON], returns[:HORIZON], values[:HORIZON]


def coefficients(x: np.ndarray, ys: list[np.ndarray], episodes: np.ndarray) -> np.ndarray:
    """Least-squares coefficients ``[len(ys), 30]`` on the episodes ``episodes``."""
    design = x[:, episodes].reshape(-1, x.shape[-1])
    design = np.concatenate([design, np.ones((len(design), 1))], axis=1)
    target = np.stack([y[:, episodes].reshape(-1) for y in ys], axis=1)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return np.asarray(coef.T)


def main(runs: Path, n: int) -> None:
    cols = queue_columns()
    print("| run | queue entry | coefficient of G | of V | V - G (SE) |")
    print("|---|---|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for run_dir in sorted(runs.glob("seed*")):
        x, g, v = rollout(run_dir, n)
        full = coefficients(x, [g, v, v - g], np.arange(n))
        boot = np.stack([coefficients(x, [v - g], rng.integers(0, n, n))[0] for _ in range(BOOT)])
        se = boot.std(axis=0, ddof=1)
        for name, j in cols:
            z = full[2, j] / se[j]
            print(
                f"| {run_dir.name} | {name} | {full[0, j]:+.1f} | {full[1, j]:+.1f} | "
                f"{full[2, j]:+.1f} ({z:+.1f} SE) |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
