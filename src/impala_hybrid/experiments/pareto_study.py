"""One preference-conditioned run against a sweep of fixed-weight runs at equal env steps:
hypervolume and expected utility on the UAV env's common-random-number episodes (issue 12).

The weight set ``W`` is the env's default scalarisation ``w0`` and, for each objective
``i``, the half-way mixture ``(w0 + e_i) / 2`` (``K + 1`` weights near the operating
point, each leaning toward one objective). Trained, each from scratch:

* ``conditioned``: ``TrainConfig.preference = "dirichlet"`` (vector critic with PopArt, the
  objectives' returns differing in scale by 10-1000x), ``S`` env steps;
* ``fixed_j``: the same config with the env's weights set to ``W[j]``, no conditioning,
  ``S / |W|`` env steps each, so the sweep costs the same ``S`` env steps in all.

Then, on the same held-out episodes (``split = "eval"``, never used to pick a checkpoint):
the conditioned policy is held at each ``w`` of ``W`` (one objective vector per ``w``);
each fixed policy gives its one objective vector (its behaviour does not depend on how it is
scored); the classical policies give theirs. For each set: the hypervolume of the
per-objective mean returns (``ops.pareto.hypervolume``, reference point from the analytic
objective bounds minus a 10% margin, ``envs.bounds``) and the expected utility ``mean_w
max_policy w . f`` over ``W`` (the best scalarised return the set offers for each
preference, averaged). Checkpoints: each run's ``best.pt`` (chosen on validation episodes at
its own config's weights: ``w0`` for the conditioned run).

    python -m impala_hybrid.experiments.pareto_study --out runs/pareto --steps 7000000

Finished runs are skipped, so a killed study continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from impala_hybrid.envs.bounds import objective_bounds
from impala_hybrid.envs.config import OBJECTIVE_NAMES, UAVNetConfig
from impala_hybrid.experiments.config_io import config_from_dict, parse_set
from impala_hybrid.experiments.spec import PRESETS, TrainConfig
from impala_hybrid.experiments.study import train_seeds
from impala_hybrid.ops.pareto import expected_utility, hypervolume, reference_point


def study_weights(w0: np.ndarray) -> np.ndarray:
    """``[K + 1, K]``: ``w0`` (scaled to sum 1) and its half-way mixtures with each corner."""
    w0 = np.asarray(w0, np.float64) / np.sum(w0)
    return np.vstack([w0, 0.5 * (w0 + np.eye(len(w0)))])


def study_configs(base: TrainConfig, steps: int) -> dict[str, TrainConfig]:
    """The conditioned run and the fixed-weight sweep, at equal total env steps."""
    weights = study_weights(np.asarray(UAVNetConfig(**base.env_kwargs).weights))
    algo = dataclasses.replace(base.algo, popart=True)  # one value scale per objective
    runs = {
        "conditioned": dataclasses.replace(
            base, critic="vector", preference="dirichlet", total_steps=steps, algo=algo
        )
    }
    for j, w in enumerate(weights):
        kwargs = {**base.env_kwargs, "weights": [float(x) for x in w]}
        runs[f"fixed_{j}"] = dataclasses.replace(
            base, env_kwargs=kwargs, preference="none", total_steps=steps // len(weights)
        )
    return runs


def _point(result: Any) -> list[float]:
    return [result.objectives[name]["mean"] for name in OBJECTIVE_NAMES]


def evaluate_sets(
    out: Path, base: TrainConfig, episodes: int, num_envs: int, seed: int, train_seed: int = 0
) -> dict[str, Any]:
    """Objective vectors of every policy set on the held-out episodes, and their HV and EU."""
    from impala_hybrid.envs.heuristics import HEURISTICS, make_heuristic
    from impala_hybrid.evaluation.rollout import evaluate
    from impala_hybrid.experiments.trainer import load_run_model, run_policy

    env_cfg = UAVNetConfig(**base.env_kwargs)
    weights = study_weights(np.asarray(env_cfg.weights))

    def score(policy: Any, w: np.ndarray) -> list[float]:
        cfg = dataclasses.replace(env_cfg, weights=tuple(float(x) for x in w))
        res = evaluate(policy, cfg, episodes=episodes, num_envs=num_envs, seed=seed)
        return _point(res)

    sets: dict[str, list[list[float]]] = {}
    run = f"seed{train_seed}"
    cfg, model = load_run_model(out / "conditioned" / run, "best")
    sets["conditioned"] = [score(run_policy(cfg, model, w), w) for w in weights]
    sets["fixed sweep"] = []
    for j in range(len(weights)):
        cfg, model = load_run_model(out / f"fixed_{j}" / run, "best")
        sets["fixed sweep"].append(score(run_policy(cfg, model), weights[0]))
    sets["classical"] = [score(make_heuristic(n, env_cfg), weights[0]) for n in HEURISTICS]
    bounds = objective_bounds(env_cfg)
    ref = reference_point(bounds.lower, bounds.upper, margin=0.1)
    summary = {
        name: {
            "hypervolume": hypervolume(np.array(points), ref),
            "expected_utility": expected_utility(np.array(points), weights),
            "points": points,
        }
        for name, points in sets.items()
    }
    return {
        "weights": weights.tolist(),
        "reference": ref.tolist(),
        "episodes": episodes * num_envs,
        "seed": seed,
        "train_seed": train_seed,
        "sets": summary,
    }


def markdown(result: dict[str, Any], steps: int) -> str:
    """The hypervolume and expected-utility table, with ratios to the fixed sweep."""
    sets = result["sets"]
    hv0 = sets["fixed sweep"]["hypervolume"]
    eu0 = sets["fixed sweep"]["expected_utility"]
    lines = [
        f"| policy set ({steps:,} env steps in all per learned set) | points | hypervolume | "
        "vs fixed sweep | expected utility | vs fixed sweep |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in sets.items():
        lines.append(
            f"| {name} | {len(s['points'])} | {s['hypervolume']:.4g} | "
            f"{s['hypervolume'] / hv0:.3f}x | {s['expected_utility']:.1f} | "
            f"{s['expected_utility'] - eu0:+.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot_front(result: dict[str, Any], path: Path) -> Path:
    """Pairwise projections of every set's objective vectors (``experiments.plots``)."""
    from impala_hybrid.experiments.plots import plot_pareto_projections

    points = {name: np.array(s["points"]) for name, s in result["sets"].items()}
    return plot_pareto_projections(
        points, path, title="mean returns per objective on the held-out episodes"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--preset", default="uav_hybrid", choices=sorted(PRESETS))
    p.add_argument("--steps", type=int, default=7_000_000, help="env steps per policy set")
    p.add_argument("--runtime", default="local", choices=("serial", "local"))
    p.add_argument("--episodes", type=int, default=4, help="rounds of --num-envs episodes")
    p.add_argument("--num-envs", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out episodes")
    p.add_argument("--train-seed", type=int, default=0, help="seed of every training run")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                   metavar="FIELD=VALUE", help="overrides of the conditioned run's config "
                   "(e.g. preference_center=env)")  # fmt: skip
    args = p.parse_args(argv)
    base = PRESETS[args.preset]()
    runs = study_configs(base, args.steps)
    sets = parse_set(args.overrides)
    if sets:
        runs["conditioned"] = config_from_dict(sets, base=runs["conditioned"], source="--set")
    for name, cfg in runs.items():
        train_seeds(cfg, [args.train_seed], args.out / name, args.runtime)
    result = evaluate_sets(args.out, base, args.episodes, args.num_envs, args.seed, args.train_seed)
    tag = f"_seed{args.train_seed}" if args.train_seed else ""
    (args.out / f"pareto{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result, args.steps)
    (args.out / f"pareto{tag}.md").write_text(table)
    plot_front(result, args.out / f"front{tag}.png")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
