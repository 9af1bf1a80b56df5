"""What a UAV policy does when an emergency queue builds up: where it sends the beam and how
fast it serves.

Why: learned policies that score far below the classical ones on some training seeds drop
hundreds of emergency tasks per episode; the returns alone do not say why. This rolls a policy
out and reports, over the steps where some L-UAV's emergency queue is high ("hot": its
log-scaled queue feature above ``hot``), how often the beam pulls from the hottest zone (what
MaxWeight does), the distribution of transfer actions, and the mean service intensities.

Run: ``python -m impala_hybrid.experiments.diagnose --run RUN_DIR [--run RUN_DIR ...]``.
"""

from __future__ import annotations

import argparse
from typing import Any

import gymnasium as gym
import numpy as np

from impala_hybrid import UAVNET_ID
from impala_hybrid.evaluation.rollout import PolicyFn, episode_seeds

#: Observation columns of the four zones' log-scaled emergency queues (docs/uav_env.md).
ZONE_EMERGENCY_QUEUE = (0, 5, 10, 15)


def transfer_diagnostics(
    policy: PolicyFn, *, num_envs: int = 16, steps: int = 1000, seed: int = 0, hot: float = 0.4
) -> dict[str, Any]:
    """Transfer and intensity statistics of ``policy`` on ``num_envs`` validation episodes."""
    env = gym.make_vec(UAVNET_ID, num_envs=num_envs, autoreset_mode="Disabled")
    try:
        obs, _ = env.reset(seed=episode_seeds(seed, num_envs, "validation").tolist())
        reset = getattr(policy, "reset", None)
        if callable(reset):
            reset(num_envs)
        transfers, intensities, observations = [], [], []
        for _ in range(steps):
            action = policy(obs)
            transfers.append(np.asarray(action["transfer"]).copy())
            intensities.append(np.asarray(action["intensity"]).copy())
            observations.append(np.asarray(obs).copy())
            obs, *_ = env.step(action)
    finally:
        env.close()
    tr = np.concatenate(transfers)
    it = np.concatenate(intensities)
    queues = np.concatenate(observations)[:, list(ZONE_EMERGENCY_QUEUE)]
    is_hot = queues.max(axis=1) > hot
    hottest = queues.argmax(axis=1) + 1  # transfer k pulls from zone k

    def dist(x: np.ndarray) -> list[float]:
        return (np.bincount(x, minlength=6) / max(len(x), 1)).tolist()

    return {
        "hot_fraction": float(is_hot.mean()),
        "beam_to_hottest_when_hot": float((tr[is_hot] == hottest[is_hot]).mean())
        if is_hot.any()
        else float("nan"),
        "transfer_distribution": dist(tr),
        "transfer_distribution_when_hot": dist(tr[is_hot]),
        "intensity_mean": it.mean(axis=0).tolist(),
        "intensity_mean_when_hot": it[is_hot].mean(axis=0).tolist() if is_hot.any() else [],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m impala_hybrid.experiments.diagnose",
        description="Where a policy sends the beam when an emergency queue builds up.",
    )
    p.add_argument("--run", action="append", default=[], help="run directory (best.pt)")
    p.add_argument("--policy", action="append", default=[], help="a classical policy name")
    p.add_argument("--num-envs", type=int, default=16)
    args = p.parse_args(argv)
    from impala_hybrid.envs.heuristics import make_heuristic
    from impala_hybrid.experiments.trainer import load_run_model, run_policy

    policies: list[tuple[str, Any]] = [(n, make_heuristic(n)) for n in args.policy]
    policies += [(r, run_policy(*load_run_model(r))) for r in args.run]
    for name, policy in policies:
        d = transfer_diagnostics(policy, num_envs=args.num_envs)
        print(
            f"{name}: hot {d['hot_fraction']:.3f} of steps; beam to the hottest zone "
            f"{d['beam_to_hottest_when_hot']:.2f} of those; transfers when hot "
            f"{np.round(d['transfer_distribution_when_hot'], 2).tolist()}; intensity when hot "
            f"{np.round(d['intensity_mean_when_hot'], 2).tolist()}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
