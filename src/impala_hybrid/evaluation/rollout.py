"""Deterministic evaluation rollouts on fixed seeds with common random numbers.

:func:`evaluate` runs whole episodes of a policy (any callable ``obs [N, 29] -> {"transfer",
"intensity"}``: a heuristic from ``impala_hybrid.envs.heuristics`` or, later, a wrapped torch
network) on the native vector env and aggregates the per-episode statistics the simulator
reports in ``infos["episode"]``.

Seeds: episode ``j`` (``j = e * num_envs + i`` for round ``e`` on environment ``i``) runs on
the seed :func:`episode_seeds` derives from ``(split, seed, j)``. Two policies evaluated with
the same ``seed`` therefore face identical exogenous sample paths (arrivals, incidents,
alerts, backhaul), which makes their difference a paired comparison, and the set of episodes
depends only on ``(split, seed, episodes * num_envs)``, not on how they are batched. The
``"train"`` split (parameter tuning) and the ``"eval"`` split (reported results) never share
a seed (up to a 2^-63 hash collision).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from impala_hybrid import UAVNET_ID
from impala_hybrid.envs.config import (
    CLASS_NAMES,
    CONSTRAINT_NAMES,
    OBJECTIVE_NAMES,
    UAVNetConfig,
)
from impala_hybrid.jsonsafe import json_safe

PolicyFn = Callable[[np.ndarray], dict[str, Any]]
#: Disjoint seed families: "train" tunes heuristics, "validation" selects checkpoints during
#: training, "eval" is what results are reported on (never used to choose anything).
SPLITS = {"eval": 0x5EED_E7A1, "train": 0x5EED_7A17, "validation": 0x5EED_7A11}
LATENCY_STATS = ("p50", "p95", "p99", "cvar")
#: Per-episode counters averaged into ``EvalResult.metrics``.
METRIC_KEYS = (
    "dropped_emergency",
    "dropped_routine",
    "expired_emergency",
    "expired_routine",
    "overflow_emergency",
    "overflow_routine",
    "on_time_emergency",
    "on_time_routine",
    "arrived_emergency",
    "arrived_routine",
    "energy_j",
    "mean_power_w",
    "transfers_l_to_h",
    "transfers_h_to_cloud",
    "hinge_penalty",
    # per constraint: the episode's mean per-step cost, and the fraction of episodes whose
    # mean met its limit (UAVNetConfig.constraint_limits)
    *(f"cost_{name}" for name in CONSTRAINT_NAMES),
    *(f"satisfied_{name}" for name in CONSTRAINT_NAMES),
)


def episode_seeds(seed: int, count: int, split: str = "eval") -> np.ndarray:
    """``[count]`` int64 seeds for episodes ``0..count-1`` of ``split`` under ``seed``.

    Prefix-stable: the first k seeds do not depend on ``count``.
    """
    if split not in SPLITS:
        raise ValueError(f"split = {split!r} is invalid: must be one of {sorted(SPLITS)}")
    if seed < 0:
        raise ValueError(f"seed = {seed!r} is invalid: must be a non-negative integer")
    words = np.random.SeedSequence([SPLITS[split], int(seed)]).generate_state(count, np.uint64)
    return (words >> np.uint64(1)).astype(np.int64)


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


@dataclasses.dataclass
class EvalResult:
    """Aggregated statistics of ``episodes`` evaluation episodes of one policy.

    Means and sample standard deviations are over episodes. Latency statistics (seconds,
    completed tasks only) are per-episode percentiles/CVaR from the simulator's histograms,
    averaged over episodes (NaN-aware: an episode without completions of a class is skipped).
    ``per_episode`` holds every per-episode statistic (``[episodes]`` arrays, ``objectives``
    ``[episodes, 6]``) in episode order, for paired comparisons under common random numbers.
    """

    policy: str
    episodes: int
    seed: int
    split: str
    episode_steps: int
    return_mean: float
    return_std: float
    objectives: dict[str, dict[str, float]]  # name -> {"mean", "std"}
    latency: dict[str, dict[str, float]]  # class -> {"p50", "p95", "p99", "cvar"} (means)
    metrics: dict[str, float]  # METRIC_KEYS -> mean per episode
    per_episode: dict[str, np.ndarray] = dataclasses.field(repr=False)

    def to_dict(self, per_episode: bool = False) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN and +-inf become None). ``per_episode`` adds the scalarised
        return and per-objective returns of each episode."""
        out: dict[str, Any] = {
            "policy": self.policy,
            "episodes": self.episodes,
            "seed": self.seed,
            "split": self.split,
            "episode_steps": self.episode_steps,
            "return": {"mean": self.return_mean, "std": self.return_std},
            "objectives": self.objectives,
            "latency": self.latency,
            "metrics": self.metrics,
        }
        if per_episode:
            out["per_episode"] = {
                "return": self.per_episode["r"].tolist(),
                "objectives": self.per_episode["objectives"].tolist(),
            }
        return json_safe(out)


def run_episodes(
    policy: PolicyFn,
    config: UAVNetConfig,
    *,
    episodes: int,
    num_envs: int,
    seed: int,
    split: str = "eval",
) -> dict[str, np.ndarray]:
    """Run ``episodes`` rounds of ``num_envs`` whole episodes; per-episode stats in order.

    A policy with a ``reset(num_envs)`` method (a recurrent one, such as
    ``evaluation.policy.TorchPolicy``) has it called at the start of each round.
    """
    if episodes < 1 or num_envs < 1:
        raise ValueError(f"episodes = {episodes} and num_envs = {num_envs} must both be >= 1")
    seeds = episode_seeds(seed, episodes * num_envs, split)
    env = gym.make_vec(UAVNET_ID, num_envs=num_envs, config=config, autoreset_mode="Disabled")
    rows: dict[str, list[np.ndarray]] = {}
    try:
        for e in range(episodes):
            obs, _ = env.reset(seed=seeds[e * num_envs : (e + 1) * num_envs].tolist())
            reset = getattr(policy, "reset", None)
            if callable(reset):
                reset(num_envs)
            done = np.zeros(num_envs, np.bool_)
            stats: dict[str, np.ndarray] = {}
            while not done.all():
                obs, _, _, _, infos = env.step(policy(obs))
                if "episode" not in infos:
                    continue
                new = infos["_episode"] & ~done  # first end only (collapse termination)
                for key, val in infos["episode"].items():
                    if key not in stats:
                        stats[key] = np.zeros_like(val)
                    stats[key][new] = val[new]
                done |= new
            for key, val in stats.items():
                rows.setdefault(key, []).append(val)
    finally:
        env.close()
    return {key: np.concatenate(vals) for key, vals in rows.items()}


def summarize(
    per_episode: dict[str, np.ndarray],
    *,
    policy: str,
    seed: int,
    split: str,
    episode_steps: int,
) -> EvalResult:
    """Aggregate the per-episode statistics of :func:`run_episodes` into an :class:`EvalResult`."""
    ret_mean, ret_std = _mean_std(per_episode["r"])
    objectives = {}
    for k, name in enumerate(OBJECTIVE_NAMES):
        m, s = _mean_std(per_episode["objectives"][:, k])
        objectives[name] = {"mean": m, "std": s}
    latency = {
        cls: {st: _mean_std(per_episode[f"latency_{st}_{cls}"])[0] for st in LATENCY_STATS}
        for cls in CLASS_NAMES
    }
    metrics = {key: _mean_std(per_episode[key])[0] for key in METRIC_KEYS}
    return EvalResult(
        policy=policy,
        episodes=int(per_episode["r"].shape[0]),
        seed=seed,
        split=split,
        episode_steps=episode_steps,
        return_mean=ret_mean,
        return_std=ret_std,
        objectives=objectives,
        latency=latency,
        metrics=metrics,
        per_episode=per_episode,
    )


def evaluate(
    policy: PolicyFn,
    config: UAVNetConfig | None = None,
    *,
    episodes: int = 1,
    num_envs: int = 16,
    seed: int = 0,
    max_steps: int | None = None,
    split: str = "eval",
    name: str | None = None,
) -> EvalResult:
    """Evaluate ``policy`` on ``episodes * num_envs`` whole episodes with fixed seeds.

    Args:
        policy: callable ``obs [N, 29] float32 -> {"transfer": [N] int, "intensity": [N, 6]}``.
        config: simulator config (default spec if None).
        episodes: rounds per environment (``episodes * num_envs`` episodes in all).
        num_envs: environments stepped in one batch.
        seed: evaluation seed; episode seeds come from :func:`episode_seeds`.
        max_steps: if given, overrides ``config.episode_steps`` (short runs for tests).
        split: ``"eval"`` or ``"train"`` (disjoint seed sets; tuning uses ``"train"``).
        name: label in the result (default: the policy's ``name`` attribute or its type).
    """
    cfg = config if config is not None else UAVNetConfig()
    if max_steps is not None:
        cfg = cfg.replace(episode_steps=max_steps)
    per_episode = run_episodes(
        policy, cfg, episodes=episodes, num_envs=num_envs, seed=seed, split=split
    )
    label = name or str(getattr(policy, "name", type(policy).__name__))
    return summarize(
        per_episode, policy=label, seed=seed, split=split, episode_steps=cfg.episode_steps
    )
