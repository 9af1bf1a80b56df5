"""Does the policy gradient see that higher intensities would pay? (docs/results.md)

Run from the repository root on a study's run directories::

    python docs/results/uav_parts/gradprobe.py runs/parts 256 > docs/results/uav_parts/gradprobe.md

For each run's ``best.pt`` it plays ``N`` whole episodes of the training split (disjoint
from the validation and held-out episodes) with the policy as
trained (transfer and intensities drawn), and estimates the score-function policy gradient
of the intensities' pre-squash means over the first 500 steps (where the episode's end is at
least 500 steps away, ``0.99^500 < 0.007``)::

    g_d = mean_{t, env} A_t (u_{t,d} - mu_{t,d}) / sigma_{t,d}^2

with ``A_t`` the discounted Monte Carlo return minus the critic (gamma 0.99, as trained),
the critic's 32-step bootstrapped return minus the critic (the learner's on-policy targets,
unroll boundaries every 32 steps), and Monte Carlo returns at gamma 0.999 less their per-step
mean (a nearly undiscounted objective). ``z``: the estimate over its standard error across
the ``N`` episodes; ``all dims``: the same for the sum over the six intensities, the direction
of a uniform shift. Why by hand: it is the learner's own estimator, written out so its noise
can be measured; nothing in the library computes it outside a learner step.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.evaluation.rollout import episode_seeds
from impala_hybrid.experiments.trainer import load_run_model

GAMMA, STEPS, HORIZON, UNROLL = 0.99, 1000, 500, 32


def rollout(
    run_dir: Path,
    n: int,
    which: str = "best",
    observe: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, ...]:
    """Rewards ``[T, N]``, critic values ``[T, N]`` (reward units) and scores ``[T, N, D]`` of
    the ``which`` checkpoint; with ``observe``, also its results on each step's observations,
    stacked ``[T, N, ...]`` (``hotprobe.py``: threshold's rule)."""
    cfg, model = load_run_model(run_dir, which)
    env = make_vector_env(cfg.env, n, cfg.env_kwargs)
    obs, _ = env.reset(seed=episode_seeds(0, n, "train").tolist())  # not a selection episode
    gen = torch.Generator().manual_seed(0)
    first = torch.ones(n, dtype=torch.bool)
    state = model.initial_state(n)
    rewards, values, scores = np.zeros((STEPS, n)), np.zeros((STEPS, n)), []
    seen = []
    with torch.no_grad(), model.full_precision():
        for t in range(STEPS):
            if observe is not None:
                seen.append(observe(obs))
            x = torch.as_tensor(np.asarray(obs, np.float32).reshape(n, -1))
            out = model(x[None], first[None], state)
            state, first = out.core_state, torch.zeros(n, dtype=torch.bool)
            dist = model.distribution({k: v[0] for k, v in out.params.items()})
            action = dist.sample(gen)
            cont = dist.continuous
            scores.append(((action.continuous - cont.mean) / cont.std**2).numpy())
            values[t] = out.values[0, :, 0].numpy() / cfg.algo.reward_scale
            obs, reward, _, _, _ = env.step(model.action.to_env(dist.to_env(action)))
            rewards[t] = reward
    out = (rewards, values, np.stack(scores))
    return out if observe is None else (*out, np.stack(seen))


def discounted(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t = sum_k gamma^k r_{t+k}`` to the episode's end, ``[T, N]``."""
    out, acc = np.zeros_like(rewards), np.zeros(rewards.shape[1])
    for t in reversed(range(len(rewards))):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


def advantages(rewards: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
    """The three advantage estimates of the module docstring, ``[HORIZON, N]`` each."""
    boot = np.zeros((HORIZON, rewards.shape[1]))
    for t in range(HORIZON):
        k = UNROLL - t % UNROLL
        powers = GAMMA ** np.arange(k)
        boot[t] = powers @ rewards[t : t + k] + GAMMA**k * values[t + k] - values[t]
    slow = discounted(rewards, 0.999)[:HORIZON]
    return {
        "Monte Carlo, gamma 0.99, minus the critic": (discounted(rewards, GAMMA) - values)[
            :HORIZON
        ],
        "critic, 32-step bootstrap (the learner's)": boot,
        "Monte Carlo, gamma 0.999, minus its step mean": slow - slow.mean(1, keepdims=True),
    }


def main(runs: Path, n: int) -> None:
    print("| run | advantage | g per intensity dimension (1-6) | z per intensity | z, all dims |")
    print("|---|---|---|---|---:|")
    for run_dir in sorted(runs.glob("seed*")):
        rewards, values, scores = rollout(run_dir, n)
        for name, adv in advantages(rewards, values).items():
            per_episode = (adv[..., None] * scores[:HORIZON]).mean(0)  # [N, D]
            mean = per_episode.mean(0)
            z = mean / (per_episode.std(0) / np.sqrt(n))
            total = per_episode.sum(1)
            z_all = total.mean() / (total.std() / np.sqrt(n))
            g = ", ".join(f"{v:+.2f}" for v in mean)
            zs = ", ".join(f"{v:+.1f}" for v in z)
            print(f"| {run_dir.name} | {name} | {g} | {zs} | {z_all:+.1f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
