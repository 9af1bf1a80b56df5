"""Where do the learned intensities fall short: on hot queues? (docs/results.md)

Run from the repository root on a study's run directories::

    python docs/results/uav_parts/hot.py runs/parts > docs/results/uav_parts/hot.md

Threshold runs a server at full speed while its backlog is at least half a step of
full-speed service (5 tasks on an L-UAV, 10 on H) and at 0.5 otherwise. For each run's
``best.pt`` this prints:

- the learned server intensities (as deployed) on the steps where threshold's rule says full
  speed, and how often it does (the 32 validation episodes, threshold's rule applied to the
  observations the learned policy meets);
- the learned policy's score (32 validation and 256 held-out episodes, common random numbers,
  ``parts.py``'s ``score``) as deployed, with its five server intensities raised to 1 where
  threshold's rule says full speed (the spill and the rest of the action its own), and with
  them raised by 0.2 there instead.

Why by hand: a one-off decomposition for docs/results.md, on the library's evaluation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from parts import score  # the sibling script's scoring (not a package)

from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.envs.heuristics import make_heuristic
from impala_hybrid.evaluation.rollout import episode_seeds
from impala_hybrid.experiments.trainer import load_run_model, run_policy

SERVERS = 5  # intensity[0:5]: L1..L4 and H; intensity[5] is the routine spill


class Hot:
    """``policy``'s action with its server intensities set to ``level`` (or raised by
    ``raise_by``) where threshold's rule runs that server at full speed."""

    def __init__(self, policy: Any, rule: Any, level: float | None, raise_by: float = 0.0):
        self.policy, self.rule, self.level, self.raise_by = policy, rule, level, raise_by

    def reset(self, n: int) -> None:
        self.policy.reset(n)

    def observe_done(self, done: np.ndarray) -> None:
        self.policy.observe_done(done)

    def __call__(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        action = dict(self.policy(obs))
        u = np.array(action["intensity"], np.float32)
        hot = np.asarray(self.rule(obs)["intensity"])[:, :SERVERS] >= 1.0
        new = np.full_like(u[:, :SERVERS], self.level) if self.level is not None else None
        if new is None:
            new = np.clip(u[:, :SERVERS] + self.raise_by, 0.0, 1.0)
        u[:, :SERVERS] = np.where(hot, new, u[:, :SERVERS])
        action["intensity"] = u
        return action


def hot_intensities(cfg: Any, model: Any, env_cfg: UAVNetConfig) -> tuple[np.ndarray, ...]:
    """On the validation episodes, played by the learned policy: the learned server
    intensities where threshold's rule says full speed, elsewhere, and how often it does."""
    n = cfg.eval_episodes
    env = make_vector_env(cfg.env, n, cfg.env_kwargs)
    obs, _ = env.reset(seed=episode_seeds(cfg.eval_seed, n, "validation").tolist())
    policy, rule = run_policy(cfg, model), make_heuristic("threshold", env_cfg)
    policy.reset(n)
    us, hots = [], []
    for _ in range(env_cfg.episode_steps):
        action = policy(np.asarray(obs, np.float32))
        us.append(np.asarray(action["intensity"])[:, :SERVERS])
        hots.append(np.asarray(rule(obs)["intensity"])[:, :SERVERS] >= 1.0)
        obs, _, term, trunc, _ = env.step(action)
        policy.observe_done(np.asarray(term) | np.asarray(trunc))
    u, hot = np.concatenate(us), np.concatenate(hots)
    at_hot = np.array([u[hot[:, j], j].mean() for j in range(SERVERS)])
    elsewhere = np.array([u[~hot[:, j], j].mean() for j in range(SERVERS)])
    return at_hot, elsewhere, hot.mean(0), (u > 0.9).mean(0)


def variants(cfg: Any, model: Any, env_cfg: UAVNetConfig) -> dict[str, Callable[[], Any]]:
    """Fresh policies to score: the learned one as deployed and its two hot-queue edits."""

    def rule() -> Any:
        return make_heuristic("threshold", env_cfg)

    return {
        "learned (as deployed)": lambda: run_policy(cfg, model),
        "learned, full speed where threshold's rule says so": lambda: Hot(
            run_policy(cfg, model), rule(), 1.0
        ),
        "learned, +0.2 where threshold's rule says full speed": lambda: Hot(
            run_policy(cfg, model), rule(), None, 0.2
        ),
    }


def main(runs: Path) -> None:
    fmt = ", ".join
    print("| run | hot steps per server | learned intensity on hot steps | elsewhere | "
          "share of steps above 0.9 |")  # fmt: skip
    print("|---|---|---|---|---|")
    rows: dict[str, list[tuple[float, float, Any]]] = {}
    for run_dir in sorted(runs.glob("seed*")):
        cfg, model = load_run_model(run_dir, "best")
        env_cfg = UAVNetConfig(**cfg.env_kwargs)
        at_hot, elsewhere, share, above = hot_intensities(cfg, model, env_cfg)
        print(
            f"| {run_dir.name} | {fmt(f'{x:.2f}' for x in share)} | "
            f"{fmt(f'{x:.2f}' for x in at_hot)} | {fmt(f'{x:.2f}' for x in elsewhere)} | "
            f"{fmt(f'{x:.3f}' for x in above)} |"
        )

        cases = variants(cfg, model, env_cfg)
        for name, make in cases.items():
            rows.setdefault(name, []).append(score(make, env_cfg, cfg))
    base = score(lambda: make_heuristic("threshold", env_cfg), env_cfg, cfg)
    objectives = list(base[2])
    print()
    print("| policy | validation per seed | held out per seed | held-out mean | "
          + " | ".join(objectives) + " |")  # fmt: skip
    print("|---|---|---|---:|" + "---:|" * len(objectives))
    for name, per_seed in [("threshold", [base]), *rows.items()]:
        objs = " | ".join(
            f"{np.mean([o[k]['mean'] for _, _, o in per_seed]):.1f}" for k in objectives
        )
        print(
            f"| {name} | {fmt(f'{v:.1f}' for v, _, _ in per_seed)} | "
            f"{fmt(f'{h:.1f}' for _, h, _ in per_seed)} | "
            f"{np.mean([h for _, h, _ in per_seed]):.1f} | {objs} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
