"""Command-line entry point ``impala-hybrid``.

One small function per subcommand (``cmd_<name>``), registered in :func:`build_parser`
by an ``_add_<name>`` function. Implemented: ``eval`` (classical policies on fixed seeds),
``tune-heuristics``, ``train`` (a run directory with logs, evaluations and checkpoints;
``--resume`` continues one), ``pbt`` (population-based training on Ray Tune) and
``export``. Still to come: compare, report, bench.

Bad input (unknown policy, non-positive counts, unknown or invalid config field) prints one
line ``impala-hybrid <command>: error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console
from rich.table import Table

from impala_hybrid.jsonsafe import json_safe
from impala_hybrid.validation import ConfigError

if TYPE_CHECKING:
    from impala_hybrid.evaluation.rollout import EvalResult

PROG = "impala-hybrid"


class CliError(Exception):
    """Bad user input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


# --- shared argument helpers -------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``["field=value", ...]`` -> ``{field: YAML scalar}`` for :class:`UAVNetConfig` fields."""
    from impala_hybrid.envs.config import UAVNetConfig

    known = [f.name for f in dataclasses.fields(UAVNetConfig)]
    out: dict[str, Any] = {}
    for item in items or ():
        field, sep, text = item.partition("=")
        field = field.strip()
        if not sep or not field:
            raise CliError(f"--set expects field=value, got {item!r}")
        if field not in known:
            close = difflib.get_close_matches(field, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise CliError(f"--set {item}: unknown UAVNetConfig field {field!r}{hint}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            msg = str(e).splitlines()[0]
            raise CliError(f"--set {item}: cannot parse value of {field!r}: {msg}") from None
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        out[field] = value
    return out


def make_config(overrides: dict[str, Any]) -> Any:
    """A validated :class:`UAVNetConfig` with ``overrides`` (ConfigError -> CliError)."""
    from impala_hybrid.envs.config import UAVNetConfig

    try:
        return UAVNetConfig(**overrides)
    except (ConfigError, TypeError) as e:
        raise CliError(f"--set: {e}") from None


def resolve_policy_names(spec: str, valid: Sequence[str]) -> list[str]:
    """``"all"`` or a comma-separated list of names -> names, each checked against ``valid``."""
    if spec == "all":
        return list(valid)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    for name in names:
        if name not in valid:
            raise CliError(f"unknown policy {name!r}; valid: all, {', '.join(valid)}")
    if not names:
        raise CliError(f"--policy is empty; valid: all, {', '.join(valid)}")
    return names


def _console() -> Console:
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=200)
    return console


def _write_json(path: str | None, payload: dict[str, Any], console: Console) -> None:
    if path is None:
        return
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    except OSError as e:
        raise CliError(f"cannot write --out {path}: {e.strerror}") from None
    console.print(f"wrote {out}")


def _add_common(p: argparse.ArgumentParser, episodes: int, num_envs: int) -> None:
    p.add_argument(
        "--episodes",
        type=positive_int,
        default=episodes,
        help=f"episodes per environment (default {episodes})",
    )
    p.add_argument(
        "--num-envs",
        type=positive_int,
        default=num_envs,
        help=f"environments stepped in one batch (default {num_envs})",
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    p.add_argument("--out", metavar="FILE.json", help="write the results as JSON")
    p.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        metavar="FIELD=VALUE",
        help="override UAVNetConfig fields (YAML scalars): --set a=1 b=2, or repeat --set",
    )


# --- eval ----------------------------------------------------------------------------------


def eval_table(results: Sequence[EvalResult], title: str) -> Table:
    """Rows = policies; scalarised return, per-objective returns, latency tails, drops."""
    from impala_hybrid.envs.config import OBJECTIVE_NAMES

    table = Table(title=title)
    table.add_column("policy")
    table.add_column("return", justify="right")
    for name in OBJECTIVE_NAMES:
        table.add_column(name, justify="right")
    for col in ("E p95/p99 s", "R p95/p99 s", "drops E/R"):
        table.add_column(col, justify="right")
    for r in results:
        lat_e, lat_r, m = r.latency["emergency"], r.latency["routine"], r.metrics
        table.add_row(
            r.policy,
            f"{r.return_mean:.1f} ± {r.return_std:.1f}",
            *(f"{r.objectives[n]['mean']:.1f}" for n in OBJECTIVE_NAMES),
            f"{lat_e['p95']:.2f}/{lat_e['p99']:.2f}",
            f"{lat_r['p95']:.2f}/{lat_r['p99']:.2f}",
            f"{m['dropped_emergency']:.1f}/{m['dropped_routine']:.1f}",
        )
    return table


def _add_eval(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate policies on fixed seeds (common random numbers)",
        description="Evaluate the classical UAV policies (and, with --run, the deployed policy "
        "of trained runs: greedy, with the discrete choice drawn by a seeded generator where "
        "the run's discrete_choice is sample) on the UAV simulator: --episodes x --num-envs "
        "whole episodes on fixed evaluation seeds. Every policy faces the same arrivals, "
        "incidents and backhaul states (common random numbers), so differences between rows "
        "are paired. Prints a "
        "table of returns, per-objective returns, latency tails and drops; --out writes JSON. "
        "A run trained on any other env (a Gymnasium id or module:factory) is evaluated on "
        "that env with its env_kwargs: greedy return, episode length and the mean of each "
        "numeric info key at episode end (such as success), on fixed seeds.",
    )
    p.add_argument(
        "--policy", default="all", help="heuristic name, comma-separated names, or 'all' (default)"
    )
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="RUN_DIR",
        help="also evaluate the deployed policy of a trained run (best checkpoint); repeatable",
    )
    p.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="which checkpoint of each --run to evaluate (default best)",
    )
    p.add_argument(
        "--discrete-choice",
        choices=("mode", "sample"),
        help="how each --run's policy takes its discrete choice: mode (the most probable) or "
        "sample (drawn with a seeded generator); default: the run's own discrete_choice",
    )
    p.add_argument(
        "--weights",
        metavar="W1,...,WK",
        help="objective weights (one per objective, >= 0; scaled to sum to 1): every policy "
        "is scored with this scalarisation, and a preference-conditioned run (train --set "
        "preference=dirichlet) acts for it",
    )
    _add_common(p, episodes=2, num_envs=32)
    p.set_defaults(func=cmd_eval)


def _parse_weights(text: str | None) -> list[float] | None:
    """``--weights`` as numbers scaled to sum to 1 (None when absent)."""
    if text is None:
        return None
    try:
        w = [float(x) for x in text.split(",")]
    except ValueError:
        raise CliError(f"--weights {text!r}: comma-separated numbers, e.g. 0.5,0.5") from None
    if not all(math.isfinite(x) and x >= 0 for x in w) or sum(w) <= 0:
        raise CliError(f"--weights {text!r}: numbers >= 0 with a positive sum")
    return [x / sum(w) for x in w]


def cmd_eval(args: argparse.Namespace) -> int:
    from impala_hybrid.envs.heuristics import HEURISTICS, make_heuristic
    from impala_hybrid.evaluation.rollout import evaluate

    runs = _with_discrete_choice(_load_runs(args.run, args.checkpoint), args.discrete_choice)
    weights = _parse_weights(args.weights)
    if runs and all(not uav for _, _, uav in runs):
        return _eval_other_env(args, runs, weights)
    if not all(uav for _, _, uav in runs):
        raise CliError("--run: evaluate runs on the UAV env and on other envs in separate commands")
    overrides = parse_overrides(args.overrides)
    if weights is not None:
        if "weights" in overrides:
            raise CliError("--weights and --set weights=...: give the weights once")
        overrides["weights"] = weights
    names = resolve_policy_names(args.policy, list(HEURISTICS))
    config = make_config(overrides)
    console = _console()
    policies: list[tuple[str, Any]] = [(name, make_heuristic(name, config)) for name in names]
    results = []
    with console.status("loading trained runs") as status:  # a spinner while nothing prints
        policies += [(name, _policy(cfg, model, config.weights)) for name, (cfg, model), _ in runs]
        for i, (name, policy) in enumerate(policies):
            status.update(f"evaluating {name} ({i + 1}/{len(policies)})")
            results.append(
                evaluate(
                    policy,
                    config,
                    episodes=args.episodes,
                    num_envs=args.num_envs,
                    seed=args.seed,
                    name=name,
                )
            )
    n = args.episodes * args.num_envs
    title = (
        f"Evaluation: {n} episodes of {config.episode_steps} steps, seed {args.seed} "
        "(returns: mean over episodes, ± std)"
    )
    console.print(eval_table(results, title))
    payload = {
        "command": "eval",
        "seed": args.seed,
        "episodes": args.episodes,
        "num_envs": args.num_envs,
        "overrides": overrides,
        "results": {r.policy: r.to_dict() for r in results},
    }
    _write_json(args.out, payload, console)
    return 0


def _with_discrete_choice(
    runs: list[tuple[str, tuple[Any, Any], bool]], choice: str | None
) -> list[tuple[str, tuple[Any, Any], bool]]:
    """``eval --discrete-choice``: each run's config with ``discrete_choice`` replaced."""
    from impala_hybrid.runtime.config import TrainConfig

    if choice is None:
        return runs
    out = []
    for name, (cfg, model), uav in runs:
        if not isinstance(cfg, TrainConfig):
            raise CliError(
                f"--discrete-choice: {name} is a Stable-Baselines3 run, whose policy has no "
                "discrete choice of ours to set; evaluate it without the option"
            )
        out.append((name, (dataclasses.replace(cfg, discrete_choice=choice), model), uav))
    return out


def _load_runs(run_dirs: list[str], checkpoint: str) -> list[tuple[str, tuple[Any, Any], bool]]:
    """``(name, (config, model), on the UAV env)`` for each trained run directory: a
    ``TrainConfig`` and its ``ActorCritic`` (IMPALA, A3C), or an ``SB3Config`` and its
    ``SB3Run`` (a Stable-Baselines3 baseline, e.g. from ``impala-hybrid compare``)."""
    from impala_hybrid import UAVNET_ID
    from impala_hybrid.envs.factory import EnvSpecError
    from impala_hybrid.experiments.trainer import RunDirError, load_run_model
    from impala_hybrid.runtime.checkpoint import CheckpointError

    out: list[tuple[str, tuple[Any, Any], bool]] = []
    for run_dir in run_dirs:
        name = f"run:{Path(run_dir).name}"
        if (Path(run_dir) / "sb3_config.yaml").is_file():
            from impala_hybrid.algos.sb3 import load_sb3

            try:
                run = load_sb3(run_dir, checkpoint)
            except (ConfigError, OSError, ValueError) as e:
                raise CliError(f"--run {run_dir}: {e}") from None
            out.append((name, (run.config, run), run.config.env == UAVNET_ID))
            continue
        try:
            cfg, model = load_run_model(run_dir, checkpoint)
        except (ConfigError, CheckpointError, RunDirError, EnvSpecError) as e:
            raise CliError(str(e)) from None
        out.append((name, (cfg, model.eval()), cfg.env == UAVNET_ID))
    return out


def _policy(cfg: Any, model: Any, weights: Any) -> Any:
    """A run's greedy policy; a preference-conditioned one held at ``weights`` (a Stable-
    Baselines3 baseline is never conditioned: its own policy)."""
    from impala_hybrid.experiments.trainer import run_policy
    from impala_hybrid.runtime.config import TrainConfig

    if not isinstance(cfg, TrainConfig):  # an SB3Config: model is its SB3Run
        return model.policy
    try:
        return run_policy(cfg, model, weights if cfg.preference != "none" else None)
    except ConfigError as e:
        raise CliError(f"--weights: {e}") from None


def _eval_other_env(
    args: argparse.Namespace,
    runs: list[tuple[str, tuple[Any, Any], bool]],
    weights: list[float] | None,
) -> int:
    """``eval --run`` for runs on envs other than the UAV simulator (see ``_add_eval``)."""
    from impala_hybrid.envs.factory import EnvSpecError
    from impala_hybrid.evaluation.episodes import evaluate_episodes

    if args.overrides:
        raise CliError("--set overrides UAVNetConfig fields; these runs are not on the UAV env")
    if args.policy != "all":
        raise CliError("--policy names UAV heuristics; these runs are not on the UAV env")
    console = _console()
    n = args.episodes * args.num_envs
    results: dict[str, dict[str, Any]] = {}
    with console.status("evaluating") as status:
        for i, (name, (cfg, model), _) in enumerate(runs):
            status.update(f"evaluating {name} ({i + 1}/{len(runs)})")
            env_kwargs = (
                cfg.env_kwargs if weights is None else {**cfg.env_kwargs, "weights": weights}
            )
            try:
                stats = evaluate_episodes(
                    _policy(cfg, model, weights), cfg.env, n, args.seed, env_kwargs=env_kwargs,
                    num_envs=args.num_envs, split="eval",
                )  # fmt: skip
            except (EnvSpecError, TypeError) as e:  # TypeError: an env without weights
                raise CliError(f"--run {name[4:]}: {e}") from None
            results[name] = {"env": cfg.env, "env_kwargs": env_kwargs, **stats.summary()}
    keys = sorted({k for r in results.values() for k in r["info"]})
    table = Table(title=f"Evaluation: {n} episodes, seed {args.seed} (mean over episodes)")
    for col in ("policy", "env", "return", "length", *keys):
        table.add_column(col, justify="left" if col in ("policy", "env") else "right")
    for name, r in results.items():
        table.add_row(
            name, r["env"], f"{r['return']['mean']:.3f} ± {r['return']['std']:.3f}",
            f"{r['length']['mean']:.1f}", *(f"{r['info'].get(k, math.nan):.3f}" for k in keys),
        )  # fmt: skip
    console.print(table)
    payload = {
        "command": "eval",
        "seed": args.seed,
        "episodes": args.episodes,
        "num_envs": args.num_envs,
        "checkpoint": args.checkpoint,
        "results": results,
    }
    _write_json(args.out, json_safe(payload), console)
    return 0


# --- tune-heuristics -----------------------------------------------------------------------


def _add_tune(sub: Any) -> None:
    p = sub.add_parser(
        "tune-heuristics",
        help="grid-search the heuristics' parameters on training seeds",
        description="Grid-search the parameters of the classical UAV policies on training "
        "seeds (disjoint from the seeds eval reports on, so tuning never sees the test "
        "episodes). Prints the best --top candidates per policy and the best parameters; "
        "--out writes every candidate as JSON.",
    )
    p.add_argument(
        "--policy", default="all", help="heuristic name, comma-separated names, or 'all' (default)"
    )
    p.add_argument(
        "--max-candidates",
        type=positive_int,
        default=64,
        help="random subset of larger grids (default 64)",
    )
    p.add_argument("--top", type=positive_int, default=5, help="rows shown per policy")
    _add_common(p, episodes=2, num_envs=64)
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    from impala_hybrid.evaluation.tune import SEARCH_SPACES, tune, tuning_table

    overrides = parse_overrides(args.overrides)
    names = resolve_policy_names(args.policy, list(SEARCH_SPACES))
    config = make_config(overrides)
    console = _console()
    with console.status("tuning") as status:

        def progress(name: str, i: int, n: int) -> None:
            status.update(f"tuning {name}: {i}/{n}")

        results = tune(
            names,
            config,
            episodes=args.episodes,
            num_envs=args.num_envs,
            seed=args.seed,
            max_candidates=args.max_candidates,
            progress=progress,
        )
    console.print(tuning_table(results, top=args.top))
    for name, res in results.items():
        params = ", ".join(f"{k}={v:g}" for k, v in res.best.params.items())
        console.print(f"best {name}: {params}")
    payload = {
        "command": "tune-heuristics",
        "seed": args.seed,
        "episodes": args.episodes,
        "num_envs": args.num_envs,
        "max_candidates": args.max_candidates,
        "overrides": overrides,
        "results": {name: res.to_dict() for name, res in results.items()},
    }
    _write_json(args.out, payload, console)
    return 0


# --- train ----------------------------------------------------------------------------------


#: ``experiments.spec.PRESETS`` and ``experiments.trainer.RUNTIMES`` keys, spelled out so that
#: building the parser does not import torch (tests/test_cli.py keeps them in sync).
PRESET_NAMES = (
    "cartpole", "pendulum", "param_choice", "uav_hybrid", "uav_warm", "cartpole_a3c", "uav_a3c",
)  # fmt: skip
RUNTIME_NAMES = ("serial", "local", "ray")


def _add_config_source(p: argparse.ArgumentParser, set_help: str) -> Any:
    """``--config FILE | --preset NAME`` (a mutually exclusive group, returned for more
    alternatives) and ``--set``, as ``train`` and ``pbt`` take them."""
    # Presets are checked when the config loads, not as argparse choices: listing them here
    # would import torch for every subcommand's parser.
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", metavar="FILE.yaml", help="training config (TrainConfig YAML)")
    src.add_argument(
        "--preset",
        metavar="NAME",
        help=f"start from a preset: {', '.join(PRESET_NAMES)} (configs/NAME.yaml resolved)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override config fields (YAML values), e.g. --set algo.lr=1e-3 "
        "model.hidden=[64,64] env_kwargs.episode_steps=200; --set may also be repeated" + set_help,
    )
    return src


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train into a run directory (config.yaml, metrics, TensorBoard, checkpoints)",
        description="Train from a YAML config or a preset into --out, or continue a stopped "
        "run with --resume. Ctrl-C or SIGTERM finishes the learner step and writes "
        "checkpoints/last.pt.",
    )
    _add_config_source(p, "")
    p.add_argument(
        "--out", metavar="RUN_DIR", help="new run directory (must not exist or be empty)"
    )
    p.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from checkpoints/last.pt"
    )
    p.add_argument(
        "--runtime",
        choices=RUNTIME_NAMES,
        help="how actors and learner run: serial (one process, reproducible), local (actor "
        "processes feeding one learner) or ray (Ray actors on a cluster feeding a learner in "
        "this process; needs impala-hybrid[ray]); default serial for a new run, and for "
        "--resume the runtime that wrote the checkpoint",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="with --runtime ray: the Ray cluster to join ('auto' for the one `ray start` runs "
        "on this node, or HOST:PORT); sets ray.address (default: a Ray instance for the run)",
    )
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from impala_hybrid.envs.factory import EnvSpecError
    from impala_hybrid.experiments.config_io import load_config
    from impala_hybrid.experiments.trainer import RunDirError, resume_run, start_run
    from impala_hybrid.models.spaces import SpaceError
    from impala_hybrid.runtime.checkpoint import CheckpointError

    console = _console()
    if args.address is not None:  # a JSON string is a YAML scalar: HOST:PORT stays a string
        args.overrides = [*args.overrides, f"ray.address={json.dumps(args.address)}"]
    try:
        if args.address is not None and args.runtime not in ("ray", None):
            raise CliError(f"--address is for --runtime ray, not --runtime {args.runtime}")
        if args.address is not None and args.runtime is None:  # also on --resume: a run
            # recorded with another runtime would otherwise ignore it silently
            raise CliError("--address is for --runtime ray: add --runtime ray")
        if args.resume is not None:
            if args.config is not None or args.preset is not None or args.out is not None:
                raise CliError(
                    "--resume RUN_DIR takes its config from RUN_DIR/config.yaml: "
                    "drop --config/--preset/--out (use --set to change fields)"
                )
            trainer = resume_run(
                args.resume, overrides=args.overrides, runtime=args.runtime, console=console
            )
        else:
            if args.config is None and args.preset is None:
                raise CliError("give --config FILE.yaml or --preset NAME (or --resume RUN_DIR)")
            if args.out is None:
                raise CliError("--out RUN_DIR is required for a new run")
            cfg = load_config(args.config, preset=args.preset, overrides=args.overrides)
            trainer = start_run(cfg, args.out, runtime=args.runtime or "serial", console=console)
    except (ConfigError, CheckpointError, RunDirError, EnvSpecError, SpaceError) as e:
        raise CliError(str(e)) from None
    return trainer.run()


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a run's policy for deployment (ONNX, TorchScript or NumPy weights)",
        description="Export the deployed policy of a run directory (the discrete choice "
        "drawn from the policy with a seeded generator where the run's discrete_choice is "
        "sample, as its evaluations did). The artifact comes "
        "with a JSON sidecar describing the action space; load it with "
        "impala_hybrid.deploy.load_exported (ONNX and npz need no torch). Which to deploy: "
        "npz (NumPy only, the fastest: ~15 us per decision at batch 1 on one core) or onnx "
        "(ONNX Runtime, ~20 us); torchscript needs torch and takes ~35-60 us.",
    )
    p.add_argument("--run", metavar="RUN_DIR", required=True, help="a run directory from train")
    p.add_argument(
        "--format",
        choices=("onnx", "torchscript", "npz"),
        default="onnx",
        help="artifact format (default onnx; npz is the fastest, torchscript the slowest)",
    )
    p.add_argument(
        "--checkpoint", choices=("best", "last"), default="best", help="which checkpoint"
    )
    p.add_argument("--out", metavar="PATH", help="artifact path (default RUN_DIR/export/policy.*)")
    p.set_defaults(func=cmd_export)


EXPORT_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "npz": ".npz"}


def cmd_export(args: argparse.Namespace) -> int:
    from impala_hybrid.deploy import export_model
    from impala_hybrid.envs.factory import EnvSpecError
    from impala_hybrid.experiments.trainer import RunDirError, load_run_model, objective_names
    from impala_hybrid.runtime.checkpoint import CheckpointError

    if (Path(args.run) / "sb3_config.yaml").is_file():
        raise CliError(
            f"{args.run} is a Stable-Baselines3 run: export writes IMPALA and A3C policies; a "
            "baseline's policy is its model.zip (best_model.zip), loaded by SB3 or load_sb3"
        )
    try:
        cfg, model = load_run_model(args.run, args.checkpoint)
    except (ConfigError, CheckpointError, RunDirError, EnvSpecError) as e:
        raise CliError(str(e)) from None
    out = (
        Path(args.out)
        if args.out
        else Path(args.run) / "export" / ("policy" + EXPORT_SUFFIX[args.format])
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    path = export_model(
        model,
        out,
        format=args.format,
        preference=objective_names(cfg),
        discrete_choice=cfg.discrete_choice,
    )
    _console().print(f"exported {args.checkpoint} policy of {args.run} to {path} ({args.format})")
    if cfg.discrete_choice == "sample":
        _console().print(
            "its discrete choice is drawn from the policy (discrete_choice = sample), as in "
            "evaluation; load_exported(path, seed=S) seeds the draws"
        )
    return 0


# --- pbt ------------------------------------------------------------------------------------


def population_size(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {value}")
    return value


def env_steps(text: str) -> int:
    """A positive step count; ``2e5`` and ``200_000`` are accepted too."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a step count >= 1, got {text!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"expected a step count >= 1, got {text!r}")
    return int(value)


def _add_pbt(sub: Any) -> None:
    p = sub.add_parser(
        "pbt",
        help="population-based training on Ray Tune (needs impala-hybrid[ray])",
        description="Train a population of runs of one config with Ray Tune's "
        "PopulationBasedTraining: every --interval env steps each trial evaluates on the "
        "validation seeds (under the base config's objective), and one in the bottom "
        "quantile copies a top trial's checkpoint and perturbs its learning rate, entropy "
        "coefficient, rho_bar and objective weights. Each trial is a run directory "
        "(OUT/trials/trial_<i>: eval --run and export --run work on it); the population's "
        "history is in OUT/history and is printed as a table at the end (--summary OUT "
        "prints it again). PBTConfig fields are set with --set pbt.FIELD=VALUE, e.g. "
        "pbt.lr=[0.5,2] (factors of the base lr), pbt.weights=null (do not search them), "
        "pbt.quantile_fraction=0.5 or pbt.runtime=local.",
    )
    src = _add_config_source(p, "; and PBTConfig fields: pbt.FIELD=VALUE")
    src.add_argument("--resume", metavar="OUT", help="continue a stopped pbt in OUT")
    src.add_argument("--summary", metavar="OUT", help="print the summary of the pbt in OUT")
    p.add_argument("--population", type=population_size, default=4, help="trials (default 4)")
    p.add_argument(
        "--steps", type=env_steps, help="env steps per trial (default: the config's total_steps)"
    )
    p.add_argument(
        "--interval", type=env_steps, default=None,
        help="env steps between evaluations and perturbations (default 100000)",
    )  # fmt: skip
    p.add_argument("--out", metavar="OUT", help="new output directory (default runs/pbt-DATE-TIME)")
    p.add_argument(
        "--runtime", choices=("serial", "local"), help="runtime inside each trial (default serial)"
    )
    p.add_argument(
        "--synch",
        action="store_true",
        help="rank the whole population at the same round (such a pbt cannot be resumed)",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="the Ray cluster to join ('auto' or HOST:PORT; default: a Ray instance for the "
        "run); on a cluster OUT must be on a filesystem every node shares",
    )
    p.set_defaults(func=cmd_pbt)


def _pbt_overrides(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """``--set`` items for TrainConfig, and the PBTConfig fields from the flags and the
    ``pbt.FIELD=VALUE`` items."""
    train, fields = [], {}
    for item in args.overrides:
        key, sep, text = item.partition("=")
        if not key.strip().startswith("pbt."):
            train.append(item)
            continue
        try:
            fields[key.strip().removeprefix("pbt.")] = yaml.safe_load(text) if sep else None
        except yaml.YAMLError as e:
            msg = str(e).splitlines()[0]
            raise CliError(f"--set {item}: cannot parse the value: {msg}") from None
    flags = {"population": args.population, "steps": args.steps, "interval": args.interval,
             "runtime": args.runtime, "synch": args.synch or None}  # fmt: skip
    fields.update({k: v for k, v in flags.items() if v is not None})
    return train, fields


def cmd_pbt(args: argparse.Namespace) -> int:
    from impala_hybrid.experiments.config_io import load_config
    from impala_hybrid.experiments.pbt import (
        PBTError,
        load_experiment,
        pbt_config,
        print_summary,
        run_pbt,
        unfinished,
    )

    console = _console()
    try:
        if args.summary is not None:
            print_summary(args.summary, console)
            return 0
        if args.resume is not None:
            if args.out is not None or args.overrides:
                raise CliError("--resume OUT continues the pbt as it was: drop --out and --set")
            out = Path(args.resume)
            base, pbt = load_experiment(out)
        else:
            if args.config is None and args.preset is None:
                raise CliError("give --config FILE.yaml or --preset NAME (or --resume OUT)")
            train, fields = _pbt_overrides(args)
            base = load_config(args.config, preset=args.preset, overrides=train)
            pbt = pbt_config(fields)
            out = Path(args.out or f"runs/pbt-{_timestamp()}")
        run_pbt(
            base, pbt, out, address=args.address, resume=args.resume is not None, console=console
        )
        print_summary(out, console)
        left = unfinished(out)
    except ConfigError as e:
        raise CliError(str(e)) from None
    except PBTError as e:  # not bad input: exit status 1
        print(f"{PROG} pbt: {e}", file=sys.stderr)
        return 1
    if left:  # Ctrl-C: Tune saved the experiment and returned
        console.print(
            f"stopped with {left} of {pbt.population} trials unfinished; continue with: "
            f"impala-hybrid pbt --resume {out}"
        )
        return 130
    return 0


def _add_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="train and evaluate every algorithm of the experiment plan over seeds, and write "
        "a report (tables, plots, CSV)",
        description="Train the preset's grid (IMPALA-Hybrid, its gated head, IMPALA-discrete, "
        "A3C, the Stable-Baselines3 baselines, and with 'full' the ablations) over seeds, "
        "choose each run's checkpoint on validation episodes, evaluate it and the classical "
        "policies on held-out episodes, and write OUT/report.md. Resumable: run the same "
        "command again after a stop; finished runs are skipped. quick: about 20 minutes on 2 "
        "cores; full: about 85 minutes with --jobs 2; sweeps: the weight sweeps full does not "
        "train, about an hour.",
    )
    p.add_argument("--preset", default="quick", choices=("quick", "full", "sweeps", "tiny"),
                   help="the grid (default quick; tiny: a one-minute test grid)")  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR", help="comparison directory")
    p.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help="runs at a time, each in a process of its own on one core (default 1; "
                   "2 halves a preset's length on 2 idle cores)")  # fmt: skip
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from impala_hybrid.experiments.compare import compare, get_preset

    try:
        return compare(get_preset(args.preset), args.out, console=_console(), parallel=args.jobs)
    except ConfigError as e:
        raise CliError(str(e)) from None


def _add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild a comparison's report.md, plots and CSV from its finished runs",
        description="Rebuild DIR/report.md, DIR/figures/*.png, DIR/runs.csv and "
        "DIR/summary.csv from the evaluation files `compare` wrote (no training).",
    )
    p.add_argument("dir", metavar="DIR", help="a directory `impala-hybrid compare` wrote")
    p.add_argument("--reps", type=positive_int, default=2000,
                   help="bootstrap resamples of the intervals (default 2000, >= 100)")  # fmt: skip
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from impala_hybrid.experiments.report import write_report

    try:
        path = write_report(args.dir, reps=args.reps)
    except (ConfigError, FileNotFoundError) as e:
        raise CliError(str(e)) from None
    _console().print(f"report: {path}")
    return 0


def _timestamp() -> str:
    import datetime

    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


# --- entry point ---------------------------------------------------------------------------

SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_eval, _add_tune, _add_train, _add_pbt, _add_export, _add_compare, _add_report
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="IMPALA with V-trace for hybrid actions and multiple objectives, and the "
        "UAV emergency-response network it is first used on.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, already printed)
        return e.code if isinstance(e.code, int) else 2
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
