"""A multi-seed study on the UAV env: train, choose checkpoints on validation episodes, report
on held-out episodes next to the classical policies, and plot the learning curves.

The protocol (what makes a learning claim here):

1. Train one config on several seeds (``--seeds``), each into ``RUNS/seed<S>`` with the
   trainer (run directory, checkpoints, resume). During training each run evaluates its greedy
   policy on the *validation* split and keeps ``best.pt``; a finished run is not retrained,
   an interrupted one is resumed.
2. Evaluate each run's ``best.pt`` and ``last.pt`` and the five classical policies on
   ``--episodes`` episodes of the *eval* split, which played no part in choosing anything
   (``evaluation.rollout.episode_seeds``: the splits are disjoint). Common random numbers: every
   policy sees the same arrivals, incidents and backhaul states, so the comparisons are paired.
3. Write ``OUT/study.json`` (every number, the command, the config), ``OUT/curve.png`` (the
   validation return over env steps: mean over seeds with a min-max band and the seeds as thin
   lines, the classical policies as horizontal lines on the same validation episodes) and
   ``OUT/table.md`` (the per-objective table).

Paired intervals: the learned policy's advantage over a classical policy is the per-episode
difference of returns on identical episodes; its 95% interval is a percentile bootstrap over
episodes (numpy; 3 training seeds are too few for rliable's interval estimates across runs,
so the seeds are reported one by one instead of aggregated).

Run: ``python -m impala_hybrid.experiments.study --out docs/results/uav --runs runs/study``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from impala_hybrid.envs.config import OBJECTIVE_NAMES, UAVNetConfig
from impala_hybrid.envs.heuristics import HEURISTICS, make_heuristic
from impala_hybrid.evaluation.rollout import EvalResult, evaluate
from impala_hybrid.experiments.config_io import config_to_dict, load_config
from impala_hybrid.experiments.spec import PRESETS, TrainConfig

LEARNED = "IMPALA-Hybrid"


def finished(run_dir: Path, total_steps: int) -> bool:
    """A run whose last evaluation (``eval.jsonl``) was at (or past) its step budget; False
    for a missing or unreadable file (a run killed while writing it is not finished)."""
    path = run_dir / "eval.jsonl"
    if not path.is_file():
        return False
    lines = [x for x in path.read_text().splitlines() if x.strip()]
    try:
        return bool(lines) and int(json.loads(lines[-1])["env_steps"]) >= total_steps
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return False


def train_seeds(cfg: TrainConfig, seeds: Sequence[int], runs: Path, runtime: str) -> list[Path]:
    """Train ``cfg`` once per seed into ``runs/seed<S>`` (resume or skip what exists)."""
    from impala_hybrid.experiments.config_io import save_config
    from impala_hybrid.experiments.trainer import resume_run, start_run

    dirs = []
    for seed in seeds:
        run_cfg = dataclasses.replace(cfg, seed=seed)
        run_dir = runs / f"seed{seed}"
        dirs.append(run_dir)
        if finished(run_dir, run_cfg.total_steps):
            print(f"{run_dir}: finished, not retrained", flush=True)
            continue
        if (run_dir / "checkpoints" / "last.pt").is_file():
            save_config(run_cfg, run_dir / "config.yaml")
            trainer = resume_run(run_dir, runtime=runtime)
        else:
            trainer = start_run(run_cfg, run_dir, runtime=runtime)
        status = trainer.run()
        if status != 0:
            raise SystemExit(status)
    return dirs


def _curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = [json.loads(x) for x in (run_dir / "eval.jsonl").read_text().splitlines() if x]
    steps = np.array([x["env_steps"] for x in lines], np.int64)
    returns = np.array([np.nan if x["return_mean"] is None else x["return_mean"] for x in lines])
    return steps, returns


def paired_interval(
    a: np.ndarray, b: np.ndarray, *, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired episodes and its 95% percentile-bootstrap interval."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if diff.ndim != 1 or diff.size < 2:
        raise ValueError(f"need two or more paired episodes, got shape {diff.shape}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, (resamples, diff.size))
    means = diff[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi)


def evaluate_study(
    run_dirs: Sequence[Path], env_cfg: UAVNetConfig, *, episodes: int, num_envs: int, seed: int
) -> dict[str, EvalResult]:
    """Classical policies and each run's best and last checkpoint on the eval split."""
    from impala_hybrid.experiments.trainer import load_run_model, run_policy

    if episodes < 1 or num_envs < 1 or episodes % num_envs:
        raise ValueError(
            f"--episodes {episodes} is invalid: it must be a positive multiple of --num-envs "
            f"{num_envs} (episodes are run in rounds of num_envs)"
        )
    rounds = episodes // num_envs
    results: dict[str, EvalResult] = {}
    for name in HEURISTICS:
        results[name] = evaluate(
            make_heuristic(name, env_cfg), env_cfg, episodes=rounds, num_envs=num_envs,
            seed=seed, name=name,
        )  # fmt: skip
    for run_dir in run_dirs:
        for which in ("best", "last"):
            cfg, model = load_run_model(run_dir, which)
            label = f"{run_dir.name}/{which}"
            results[label] = evaluate(
                run_policy(cfg, model), env_cfg, episodes=rounds, num_envs=num_envs, seed=seed,
                name=label,
            )  # fmt: skip
    return results


def validation_baselines(cfg: TrainConfig) -> dict[str, float]:
    """The classical policies' returns on the validation episodes the runs were selected on."""
    env_cfg = UAVNetConfig(**cfg.env_kwargs)
    return {
        name: evaluate(
            make_heuristic(name, env_cfg), env_cfg, episodes=1, num_envs=cfg.eval_episodes,
            seed=cfg.eval_seed, split="validation", name=name,
        ).return_mean
        for name in HEURISTICS
    }  # fmt: skip


def composite_classical(results: dict[str, EvalResult], weights: Sequence[float]) -> float:
    """``sum_k w_k max_policy J_k``: the scalarised return of a policy that matched the best
    classical policy on *every* objective at once (no single one does: MaxWeight has the lowest
    latency at full speed, drift-plus-penalty the lowest energy). Not a bound on what can be
    learned, but a yardstick for a target stated relative to the best classical policy: each
    objective trades against the others, and this point is beyond every classical trade-off."""
    return float(
        sum(
            w * max(results[n].objectives[name]["mean"] for n in HEURISTICS)
            for w, name in zip(weights, OBJECTIVE_NAMES, strict=True)
        )
    )


def summarise(results: dict[str, EvalResult], run_dirs: Sequence[Path]) -> dict[str, Any]:
    """The headline numbers: per seed and mean, against the best classical policy."""
    classical = {n: results[n] for n in HEURISTICS}
    best_name = max(classical, key=lambda n: classical[n].return_mean)
    best = classical[best_name]
    seeds = []
    for run_dir in run_dirs:
        row: dict[str, Any] = {"run": run_dir.name}
        for which in ("best", "last"):
            r = results[f"{run_dir.name}/{which}"]
            row[which] = r.return_mean
        r = results[f"{run_dir.name}/best"]
        row["beats"] = {
            n: paired_interval(r.per_episode["r"], c.per_episode["r"]) for n, c in classical.items()
        }
        row["beats_every_classical"] = all(lo > 0 for _, lo, _ in row["beats"].values())
        _, curve = _curve(run_dir)
        row["validation_best"] = float(np.nanmax(curve))
        row["validation_last"] = float(curve[-1])
        seeds.append(row)
    mean_best = float(np.mean([s["best"] for s in seeds]))
    return {
        "best_classical": best_name,
        "best_classical_return": best.return_mean,
        "learned_mean_return": mean_best,
        "ratio_to_best_classical": mean_best / best.return_mean,
        "every_seed_beats_every_classical": all(s["beats_every_classical"] for s in seeds),
        "seeds": seeds,
    }


def plot_curves(
    run_dirs: Sequence[Path], baselines: dict[str, float], path: Path, title: str
) -> None:
    """Validation return over env steps: mean of the seeds, min-max band, each seed thin."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit(
            "the study's plot needs matplotlib: pip install 'impala-hybrid[report]' "
            "(make setup installs it)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [_curve(d) for d in run_dirs]
    n = min(len(s) for s, _ in curves)
    steps = curves[0][0][:n] / 1e6
    ys = np.stack([c[:n] for _, c in curves])
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    ax.fill_between(steps, np.nanmin(ys, 0), np.nanmax(ys, 0), alpha=0.25, color="C0",
                    label=f"{LEARNED}: min-max over {len(ys)} seeds")  # fmt: skip
    for y in ys:
        ax.plot(steps, y, color="C0", lw=0.6, alpha=0.6)
    ax.plot(steps, np.nanmean(ys, 0), color="C0", lw=2.2, label=f"{LEARNED}: mean")
    for i, (name, value) in enumerate(sorted(baselines.items(), key=lambda kv: -kv[1])):
        if value > np.nanmin(ys) - 200:
            ax.axhline(value, color=f"C{i + 1}", ls="--", lw=1.2, label=f"{name} {value:.0f}")
    ax.set_xlabel("env steps (millions)")
    ax.set_ylabel("return of the deployed policy, validation episodes")
    ax.set_title(title, fontsize=10)
    lo = min(np.nanpercentile(ys, 5), min(v for v in baselines.values() if v > -500)) - 50
    ax.set_ylim(bottom=lo)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def markdown_table(results: dict[str, EvalResult], summary: dict[str, Any]) -> str:
    """Rows: the classical policies, then each seed's best checkpoint (and the seeds' mean)."""
    head = ["policy", "return (mean ± std)", *OBJECTIVE_NAMES, "E p95/p99 s", "R p95/p99 s",
            "drops E/R"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label: str, r: EvalResult) -> str:
        le, lr, m = r.latency["emergency"], r.latency["routine"], r.metrics
        cells = [label, f"{r.return_mean:.1f} ± {r.return_std:.1f}",
                 *(f"{r.objectives[n]['mean']:.1f}" for n in OBJECTIVE_NAMES),
                 f"{le['p95']:.2f}/{le['p99']:.2f}", f"{lr['p95']:.2f}/{lr['p99']:.2f}",
                 f"{m['dropped_emergency']:.1f}/{m['dropped_routine']:.1f}"]  # fmt: skip
        return "| " + " | ".join(cells) + " |"

    for name in sorted(HEURISTICS, key=lambda n: -results[n].return_mean):
        lines.append(row(name, results[name]))
    for s in summary["seeds"]:
        lines.append(row(f"{LEARNED} {s['run']} (best.pt)", results[f"{s['run']}/best"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m impala_hybrid.experiments.study",
        description="Train a UAV config on several seeds; report held-out results and curves.",
    )
    p.add_argument("--out", required=True, help="folder for study.json, curve.png, table.md")
    p.add_argument("--runs", required=True, help="folder for the run directories (seed<S>)")
    p.add_argument("--preset", default="uav_hybrid", choices=sorted(PRESETS))
    p.add_argument("--config", help="YAML config (instead of --preset)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                   metavar="FIELD=VALUE", help="config overrides, as for train")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--runtime", default="local", choices=("serial", "local"))
    p.add_argument("--episodes", type=int, default=256, help="held-out episodes (eval split)")
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument("--title", default="UAV network: IMPALA-Hybrid learning curves")
    args = p.parse_args(argv)

    if args.episodes < 1 or args.num_envs < 1 or args.episodes % args.num_envs:
        p.error(
            f"--episodes {args.episodes} must be a positive multiple of --num-envs "
            f"{args.num_envs} (episodes are run in rounds of num_envs)"
        )
    cfg = load_config(args.config, preset=args.preset, overrides=args.overrides)
    out, runs = Path(args.out), Path(args.runs)
    t0 = time.time()
    run_dirs = train_seeds(cfg, args.seeds, runs, args.runtime)
    train_s = time.time() - t0
    env_cfg = UAVNetConfig(**cfg.env_kwargs)
    results = evaluate_study(
        run_dirs, env_cfg, episodes=args.episodes, num_envs=args.num_envs, seed=args.eval_seed
    )
    summary = summarise(results, run_dirs)
    summary["composite_classical_return"] = composite_classical(results, env_cfg.weights)
    baselines = validation_baselines(cfg)
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(run_dirs, baselines, out / "curve.png", args.title)
    (out / "table.md").write_text(markdown_table(results, summary))
    payload = {
        "command": "python -m impala_hybrid.experiments.study "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "config": config_to_dict(cfg),
        "seeds": args.seeds,
        "train_seconds": train_s,
        "held_out": {"episodes": results[next(iter(HEURISTICS))].episodes, "seed": args.eval_seed},
        "summary": summary,
        "validation_baselines": baselines,
        "results": {k: r.to_dict() for k, r in results.items()},
        "curves": {d.name: [c.tolist() for c in _curve(d)] for d in run_dirs},
    }
    (out / "study.json").write_text(json.dumps(payload, indent=1) + "\n")
    s = summary
    print(
        f"{LEARNED} mean over seeds {s['learned_mean_return']:.1f} vs best classical "
        f"{s['best_classical']} {s['best_classical_return']:.1f}: ratio "
        f"{s['ratio_to_best_classical']:.3f}; every seed beats every classical policy: "
        f"{s['every_seed_beats_every_classical']}; the per-objective best of the classical "
        f"policies combined would score {s['composite_classical_return']:.1f}"
    )
    for row in s["seeds"]:
        print(
            f"  {row['run']}: best.pt {row['best']:.1f}, last.pt {row['last']:.1f} (held out); "
            f"validation best {row['validation_best']:.1f}, last {row['validation_last']:.1f}"
        )
    print(f"wrote {out / 'study.json'}, {out / 'curve.png'}, {out / 'table.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
