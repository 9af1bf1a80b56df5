"""Learning curve of a policy trained on the UAV env, next to the classical policies.

The trained policy is evaluated greedily (the distribution's mode) every ``eval_every`` env
steps on the same fixed evaluation seeds as the heuristics (``evaluation.rollout``), so every
point of the curve and every baseline sees the same arrivals, incidents and backhaul states
(common random numbers): differences between rows are paired, not sampling noise.

Run: ``python -m impala_hybrid.experiments.curve --steps 2000000 --out FILE.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.envs.heuristics import make_heuristic
from impala_hybrid.evaluation.policy import TorchPolicy
from impala_hybrid.evaluation.rollout import evaluate
from impala_hybrid.experiments.config_io import config_to_dict
from impala_hybrid.experiments.spec import TrainConfig, uav_hybrid
from impala_hybrid.runtime.serial import train_serial

BASELINES = ("local_only", "maxweight")


def learning_curve(
    cfg: TrainConfig,
    *,
    eval_every: int,
    eval_episodes: int = 1,
    eval_envs: int = 32,
    eval_seed: int = 0,
    baselines: tuple[str, ...] = BASELINES,
) -> dict[str, Any]:
    """Train ``cfg`` with the serial runtime, evaluating every ``eval_every`` env steps."""
    env_cfg = UAVNetConfig(**cfg.env_kwargs)

    def score(policy: Any) -> dict[str, float]:
        r = evaluate(policy, env_cfg, episodes=eval_episodes, num_envs=eval_envs, seed=eval_seed)
        d = r.to_dict()
        return {"return_mean": d["return"]["mean"], "return_std": d["return"]["std"]}

    base = {name: score(make_heuristic(name, env_cfg)) for name in baselines}
    points: list[dict[str, float]] = []
    next_eval = [0.0]
    start = time.perf_counter()

    def on_record(record: dict[str, float], learner: Learner) -> None:
        if record["env_steps"] < next_eval[0]:
            return
        next_eval[0] = record["env_steps"] + eval_every
        learner.model.eval()
        point = {"env_steps": record["env_steps"], **score(TorchPolicy(learner.model))}
        learner.model.train()
        point["train_return"] = record["episode_return"]
        point["wall_s"] = time.perf_counter() - start
        points.append(point)
        print(json.dumps(point), flush=True)

    train_serial(cfg, callback=on_record)
    return {
        "config": config_to_dict(cfg),
        "eval": {"episodes": eval_episodes, "num_envs": eval_envs, "seed": eval_seed},
        "baselines": base,
        "curve": points,
    }


def markdown(result: dict[str, Any]) -> str:
    """The curve as a markdown table with the baselines as reference rows."""
    lines = ["| env steps | IMPALA-Hybrid greedy return (mean ± std) |", "|---:|---|"]
    for p in result["curve"]:
        lines.append(f"| {p['env_steps']:,.0f} | {p['return_mean']:.1f} ± {p['return_std']:.1f} |")
    for name, b in result["baselines"].items():
        lines.append(f"| {name} (reference) | {b['return_mean']:.1f} ± {b['return_std']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2_000_000)
    parser.add_argument("--eval-every", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    cfg = dataclasses.replace(uav_hybrid(), total_steps=args.steps, seed=args.seed)
    result = learning_curve(cfg, eval_every=args.eval_every)
    print(markdown(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
