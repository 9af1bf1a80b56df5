"""``impala-hybrid compare``: every algorithm of the experiment plan on the UAV env, over
training seeds, with one evaluation for all; the report is :mod:`.report`'s.

The protocol is the study's (``experiments/study.py``), for a grid of algorithms:

1. **Train** each entry of the preset on each seed into ``OUT/runs/<entry>/seed<S>``. IMPALA
   runs (and A3C, IMPALA-discrete and the ablations, which are IMPALA configs too) go through
   the trainer (``experiments/trainer.py``) on the serial runtime, so they are reproducible from
   the seed (except A3C's: its two workers' updates interleave by timing). Stable-Baselines3
   runs go through ``algos/sb3/train.py`` with
   :class:`~impala_hybrid.algos.sb3.train.ValidationCallback`. Either way, every
   ``steps / evals_per_run`` env steps the greedy policy plays the *validation* episodes
   (``Evaluator.policy_result``: the same episodes for every algorithm) into ``eval.jsonl``
   (the learning curve, with env steps and training seconds), and the best evaluation's
   weights are kept (``experiments.trainer.is_new_best``).
2. **Evaluate** each run's best checkpoint, and the classical policies, on the *held-out*
   episodes (the ``eval`` split: disjoint from the validation one, so nothing was chosen on
   them) with common random numbers: every policy meets the same arrivals, incidents and
   backhaul states. Each evaluation is kept in ``OUT/evals/<entry>/seed<S>.json``: the
   per-episode scalarised and per-objective returns, latency percentiles and CVaR per class,
   drops, the pooled latency histogram, the learning curve, training steps and seconds,
   and the deployed policy's batch-1 inference latency.
3. **Report** (:mod:`.report`) from those files alone: ``impala-hybrid report OUT`` rebuilds
   it without training anything.

Resumable: a run whose evaluations reached its step budget is skipped; an IMPALA run killed
midway continues from its ``last.pt`` (the trainer's resume); a Stable-Baselines3 run killed
midway starts again (SB3 saves no resumable state of its rollout or replay buffers; a
quick-preset baseline is at most a few minutes). An evaluation file that exists is kept.

Hand-written here: only the grid and its bookkeeping. Training, evaluation, statistics and
plots are the project's tested modules and Stable-Baselines3's algorithms.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from impala_hybrid.jsonsafe import json_safe
from impala_hybrid.validation import ConfigError

FAMILIES = ("impala", "sb3")
GROUPS = ("main", "ablation", "sweep", "conditioned")
META_FILE = "compare.json"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One row of the comparison: an algorithm (or ablation) and its step budget per seed.

    ``family``: ``"impala"`` (a ``TrainConfig`` preset with ``settings`` as ``--set`` fields;
    A3C and IMPALA-discrete are such configs) or ``"sb3"`` (``settings``: ``SB3Config``
    fields). ``why``: the reason for the budget, printed in the report.

    A ``"sweep"`` entry is one point of an algorithm's scalarisation-weight sweep (the
    report's Pareto fronts per algorithm): ``algorithm`` names the algorithm, ``weights`` are
    the env's objective weights it trains (and is validated) on, ``seeds`` its training seeds
    (``None``: the preset's). A ``"conditioned"`` entry is one preference-conditioned IMPALA
    run (``preference`` set in ``settings``), held at each weight vector of the preset's
    sweep on the held-out episodes: its front is ``algorithm`` in the same report section.
    """

    name: str
    family: str
    steps: int
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    group: str = "main"
    preset: str = "uav_hybrid"
    why: str = ""
    algorithm: str = ""
    weights: tuple[float, ...] | None = None
    seeds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"Entry.family = {self.family!r} is invalid: one of {FAMILIES}")
        if self.group not in GROUPS:
            raise ConfigError(f"Entry.group = {self.group!r} is invalid: one of {GROUPS}")
        if self.steps < 1:
            raise ConfigError(f"Entry.steps = {self.steps} is invalid: allowed range is [1, inf)")
        if self.group == "sweep" and (not self.algorithm or self.weights is None):
            raise ConfigError(
                f"Entry {self.name!r}: a sweep entry needs algorithm and weights (got "
                f"algorithm={self.algorithm!r}, weights={self.weights})"
            )
        if self.group == "conditioned" and (
            not self.algorithm or self.family != "impala" or "preference" not in self.settings
        ):
            raise ConfigError(
                f"Entry {self.name!r}: a conditioned entry is an IMPALA run with algorithm "
                f"and settings['preference'] (got family={self.family!r}, "
                f"algorithm={self.algorithm!r}, settings={dict(self.settings)})"
            )
        if self.weights is not None:  # tuples, also when read back from compare.json
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if self.seeds is not None:
            object.__setattr__(self, "seeds", tuple(int(x) for x in self.seeds))
            if not self.seeds:
                raise ConfigError(f"Entry {self.name!r}: seeds is empty (None: the preset's)")

    @property
    def slug(self) -> str:
        """The entry's directory name."""
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)

    def seeds_in(self, preset: ComparePreset) -> tuple[int, ...]:
        """The training seeds of this entry in ``preset``."""
        return self.seeds if self.seeds is not None else preset.seeds


@dataclasses.dataclass(frozen=True)
class ComparePreset:
    """A grid (entries x seeds) and the evaluation settings every entry shares."""

    name: str
    entries: tuple[Entry, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    evals_per_run: int = 10
    val_episodes: int = 32
    heldout_rounds: int = 4
    heldout_envs: int = 32
    minutes: float = 20.0
    about: str = ""

    def __post_init__(self) -> None:
        names = [e.name for e in self.entries]
        if len(set(names)) != len(names):
            raise ConfigError(f"ComparePreset {self.name!r}: entry names repeat: {names}")
        if len({e.slug for e in self.entries}) != len(names):
            raise ConfigError(f"ComparePreset {self.name!r}: entry names collide as directories")
        if not self.seeds:
            raise ConfigError(f"ComparePreset {self.name!r}: seeds is empty")
        groups = {e.group for e in self.entries}
        if "conditioned" in groups and "sweep" not in groups:
            raise ConfigError(
                f"ComparePreset {self.name!r}: a conditioned entry is evaluated at the weights "
                "of the sweep entries, and there are none"
            )
        for field, lo in (
            ("evals_per_run", 2),
            ("val_episodes", 2),
            ("heldout_rounds", 1),
            ("heldout_envs", 1),
        ):
            if getattr(self, field) < lo:
                raise ConfigError(
                    f"ComparePreset.{field} = {getattr(self, field)} is invalid: allowed "
                    f"range is [{lo}, inf)"
                )


# --- the presets ----------------------------------------------------------------------------

#: IMPALA-discrete: 4 speed levels; one entropy weight (the action is one categorical),
#: evaluated at its mode (its 24 choices carry the speed level too; measured that way).
_DISCRETE = {"discrete_levels": 4, "algo.entropy_coef_discrete": None, "discrete_choice": "mode"}
_SB3_REPLAY = {"n_envs": 8, "hyperparams": {"train_freq": 1, "gradient_steps": 1}}
#: The IMPALA family's learner batch here: one unroll of ``uav_hybrid``'s 32 envs a learner
#: step, as every row of docs/results.md was measured. The preset's B = 64 is the width of
#: its local layout's slots (128 envs in 64-column slots); on the serial runtime these runs
#: use, it would be two unrolls a step, half the updates per env step.
SERIAL_BATCH = {"algo.batch_size": 32}


def _serial(entries: list[Entry]) -> list[Entry]:
    """``entries`` with :data:`SERIAL_BATCH` under the settings of those built on
    ``uav_hybrid`` (an entry's own settings win)."""
    return [
        dataclasses.replace(e, settings={**SERIAL_BATCH, **e.settings})
        if e.family == "impala" and e.preset == "uav_hybrid"
        else e
        for e in entries
    ]


def _main(scale: float, sb3_scale: float) -> list[Entry]:
    """The plan's algorithms. IMPALA-family budgets are ``scale`` x 1M env steps; the SB3
    budgets are sized to their speed on the UAV env here (PPO ~2,400, A2C ~15,000 env
    steps/s; SAC and TD3 ~110 gradient steps/s, so 8 envs per gradient step)."""
    m = int(1_000_000 * scale)
    entries = [
        Entry("IMPALA-Hybrid", "impala", m, why="the method"),
        Entry(
            "IMPALA-Hybrid (gated)",
            "impala",
            m,
            {"model.hybrid_mode": "gated"},
            why="the gated head, same budget",
        ),
        Entry(
            "IMPALA-discrete",
            "impala",
            m,
            _DISCRETE,
            why="IMPALA over 24 discretised actions (algos/discretised.py), same budget",
        ),
        Entry(
            "A3C",
            "impala",
            m,
            preset="uav_a3c",
            why="same budget as IMPALA; 2 workers x 32 envs x T = 32 (an IMPALA batch)",
        ),
    ]
    sb3 = [
        Entry(
            "PPO",
            "sb3",
            int(200_000 * sb3_scale),
            {"algo": "ppo"},
            why="~2,400 env steps/s: the same seconds as an IMPALA run, not the same samples",
        ),
        Entry("A2C", "sb3", int(500_000 * sb3_scale), {"algo": "a2c"}, why="~15,000 env steps/s"),
        Entry(
            "SAC",
            "sb3",
            int(40_000 * sb3_scale),
            {"algo": "sac", **_SB3_REPLAY},
            why="one gradient step per 8 env steps (8 envs), ~110 gradient steps/s",
        ),
        Entry(
            "TD3",
            "sb3",
            int(60_000 * sb3_scale),
            {"algo": "td3", **_SB3_REPLAY},
            why="as SAC; its first 10,000 steps are random actions (learning_starts)",
        ),
    ]
    return _serial(entries) + sb3


#: The policy lag of the ratio ablations: what the local runtime's preset shows (its actors
#: run ahead by about 16 learner steps, docs/results.md). The serial runtime has none of its
#: own, so every V-trace ratio would be 1 and clipping at or above 1 would never bind.
ABLATION_LAG = 16


def _ablations(m: int) -> list[Entry]:
    """IMPALA-Hybrid with one thing changed each (``uav_hybrid``'s defaults: no replay,
    ``(rho_bar, c_bar) = (1, 1)``, no LSTM, factorised head, joint ratio, scalar critic).

    The ratio ablations ((rho_bar, c_bar) and joint vs per-component clipping) are measured
    against a base of their own that acts with ``serial_lag = ABLATION_LAG``: without policy
    lag their rows would equal the base bit for bit. (0.5, 0.5) is kept without lag too,
    where it is a shorter trace (lambda 0.5), not a clip. The preset's policy gradient is the
    clipped surrogate (``pg_clip_eps = 0.2``), so there the ratio settings act on V-trace's
    value targets only; two rows swap in IMPALA's rho-weighted gradient (Espeholt et al. 2018,
    eq. 4), clipped at ``rho_bar = 1`` and unclipped, where the clip acts on the gradient."""
    a = "ablation"
    lag = {"serial_lag": ABLATION_LAG}
    k = f"lag {ABLATION_LAG}"
    entries = [
        Entry("abl: replay 0.5", "impala", m, {"algo.replay_proportion": 0.5}, a),
        Entry("abl: rho,c = 0.5,0.5", "impala", m, {"algo.rho_bar": 0.5, "algo.c_bar": 0.5}, a),
        Entry("abl: LSTM 64", "impala", m, {"model.lstm_size": 64}, a),
        Entry("abl: vector critic", "impala", m, {"critic": "vector"}, a),
        Entry(f"abl: {k}", "impala", m, lag, a, why="the ratio ablations' base"),
        Entry(f"abl: {k}, rho,c = 2,1", "impala", m, {**lag, "algo.rho_bar": 2.0}, a),
        Entry(
            f"abl: {k}, rho,c = 0.5,0.5",
            "impala",
            m,
            {**lag, "algo.rho_bar": 0.5, "algo.c_bar": 0.5},
            a,
        ),
        Entry(
            f"abl: {k}, unclipped",
            "impala",
            m,
            {**lag, "algo.rho_bar": 1e9, "algo.c_bar": 1e9},
            a,
        ),
        Entry(
            f"abl: {k}, IMPALA pg",
            "impala",
            m,
            {**lag, "algo.pg_clip_eps": None},
            a,
            why="the paper's rho-weighted policy gradient (clipped at rho_bar) for the preset's "
            "clipped surrogate, through which the rows above act on the value targets only",
        ),
        Entry(
            f"abl: {k}, IMPALA pg, unclipped",
            "impala",
            m,
            {**lag, "algo.pg_clip_eps": None, "algo.rho_bar": 1e9, "algo.c_bar": 1e9},
            a,
        ),
        Entry(
            f"abl: {k}, per-component ratio",
            "impala",
            m,
            {**lag, "algo.ratio_mode": "per_component"},
            a,
        ),
    ]
    return _serial(entries)


#: The algorithms whose weight sweeps the full preset trains, at the quick preset's budgets:
#: the method and its discretised relative (the strongest IMPALA variant at 1M steps). Seven
#: scalarisations cost about 5 minutes per IMPALA algorithm and 8 for SAC, 10 for PPO: a
#: sweep of every algorithm would not fit the full preset's length on 2 cores. Any entry of
#: ``_main`` can be swept by adding its name here.
SWEPT = ("IMPALA-Hybrid", "IMPALA-discrete")


def sweep_weights(env_kwargs: Mapping[str, Any]) -> list[tuple[str, tuple[float, ...]]]:
    """``(label, weights)`` of the sweep: the env's default scalarisation ``w0`` (scaled to
    sum 1) and its half-way mixture with each objective's corner (``pareto_study``'s set)."""
    from impala_hybrid.envs.config import OBJECTIVE_NAMES, UAVNetConfig
    from impala_hybrid.experiments.pareto_study import study_weights

    w = study_weights(np.asarray(UAVNetConfig(**env_kwargs).weights))
    labels = ["w0"] + [f"w0+{o}" for o in OBJECTIVE_NAMES]
    rows = [tuple(round(float(x), 6) for x in row) for row in w]
    return list(zip(labels, rows, strict=True))


def _sweep(
    entries: list[Entry], env_kwargs: Mapping[str, Any], seeds: tuple[int, ...]
) -> list[Entry]:
    """One ``"sweep"`` entry per (algorithm, weight vector): the entry's config with the env's
    weights replaced, trained on ``seeds``."""
    return [
        dataclasses.replace(
            e,
            name=f"sweep: {e.name} {label}",
            group="sweep",
            algorithm=e.name,
            weights=w,
            seeds=seeds,
            why=f"{e.name} trained on weights {label}",
        )
        for e in entries
        for label, w in sweep_weights(env_kwargs)
    ]


#: The preference-conditioned run of the full preset (docs/multi_objective.md's best
#: settings: draws centred on the env's weights, vector critic with PopArt).
_CONDITIONED = {
    "preference": "dirichlet",
    "preference_center": "env",
    "preference_alpha": 20.0,
    "critic": "vector",
    "algo.popart": True,
}


def _conditioned(base: Entry, points: int, seeds: tuple[int, ...]) -> Entry:
    """``base`` (an IMPALA entry) conditioned on preferences, with the env steps of its whole
    weight sweep (``points`` x ``base.steps``): one run against the sweep's ``points`` runs."""
    return dataclasses.replace(
        base,
        name=f"conditioned: {base.name}",
        steps=points * base.steps,
        settings={**base.settings, **_CONDITIONED},
        group="conditioned",
        algorithm=f"{base.name} (conditioned)",
        weights=None,
        seeds=seeds,
        why=f"one run for every preference, the env steps of {base.name}'s {points}-point sweep",
    )


def quick() -> ComparePreset:
    """The plan's algorithms at 1M IMPALA env steps, 3 seeds: about 20 minutes on 2 cores."""
    return ComparePreset(
        "quick",
        tuple(_main(1.0, 1.0)),
        minutes=20.0,
        about="main algorithms only, 1M env steps for the IMPALA family, SB3 baselines sized "
        "to the same seconds; held-out: 128 episodes",
    )


def full() -> ComparePreset:
    """The plan's algorithms and the ablations, 3 seeds, and the weight sweeps: 72 runs,
    about 85 minutes on 2 cores with ``parallel=2`` (``--jobs 2``), about 2.5 hours one run
    at a time (docs/results.md). The IMPALA family gets 3M env steps (about 2 minutes a run);
    the SB3 baselines 1.5x the quick budgets, about the seconds of an IMPALA run (1.2-1.6x
    for PPO, SAC and TD3, 0.7x for A2C)."""
    main = _main(3.0, 1.5)
    swept = [e for e in _main(1.0, 1.0) if e.name in SWEPT]
    sweep = _sweep(swept, {}, (0,))
    conditioned = _conditioned(swept[0], len(sweep_weights({})), (0,))
    return ComparePreset(
        "full",
        tuple(main + _ablations(3_000_000) + sweep + [conditioned]),
        minutes=85.0,
        heldout_rounds=8,
        about="with --jobs 2 (one run at a time: about 150 min); main algorithms and "
        "ablations, 3M env steps for the IMPALA family, SB3 "
        "baselines at 1.5x the quick budgets; a weight sweep (7 scalarisations, seed 0, "
        f"quick budgets) of {', '.join(SWEPT)} and a preference-conditioned IMPALA-Hybrid "
        "with the env steps of its sweep; held-out: 256 episodes",
    )


def sweeps() -> ComparePreset:
    """The weight sweeps of the algorithms the full preset does not sweep (the gated head,
    A3C, PPO, A2C, SAC, TD3), with the full preset's evaluation settings, so that their fronts
    sit beside its IMPALA-Hybrid and IMPALA-discrete ones: 7 scalarisations each, seed 0, the
    quick preset's budgets; 66 minutes here, beside the full preset on the other core."""
    rest = [e for e in _main(1.0, 1.0) if e.name not in SWEPT]
    return ComparePreset(
        "sweeps",
        tuple(_sweep(rest, {}, (0,))),
        seeds=(0,),
        minutes=65.0,
        heldout_rounds=8,
        about="the full preset's evaluation settings; 7 scalarisations, seed 0, quick budgets, "
        f"of {', '.join(e.name for e in rest)}",
    )


def tiny() -> ComparePreset:
    """A grid that runs in about a minute (tests): 3 seeds, 50-step episodes."""
    env = {"episode_steps": 50}
    impala = Entry(
        "IMPALA-Hybrid",
        "impala",
        6_400,
        {"num_envs": 8, "algo.batch_size": 8, "algo.unroll_length": 16},
    )
    small = dataclasses.replace(impala, steps=1_024)
    sweep = _sweep([small], env, (0,))[:3]
    return ComparePreset(
        "tiny",
        (
            impala,
            Entry("PPO", "sb3", 2_048, {"algo": "ppo", "hyperparams": {"n_steps": 256}}),
            *sweep,
            _conditioned(small, len(sweep), (0,)),
        ),
        seeds=(0, 1, 2),
        env_kwargs=env,
        evals_per_run=3,
        val_episodes=4,
        heldout_rounds=1,
        heldout_envs=8,
        minutes=1.0,
        about="a test grid",
    )


PRESETS: dict[str, Callable[[], ComparePreset]] = {
    "quick": quick,
    "full": full,
    "sweeps": sweeps,
    "tiny": tiny,
}


def get_preset(name: str) -> ComparePreset:
    """A preset by name (errors list the names)."""
    if name not in PRESETS:
        raise ConfigError(f"compare preset {name!r} is invalid: one of {sorted(PRESETS)}")
    return PRESETS[name]()


# --- training --------------------------------------------------------------------------------


def run_dir(out: Path, entry: Entry, seed: int) -> Path:
    return out / "runs" / entry.slug / f"seed{seed}"


def eval_path(out: Path, entry: Entry | str, seed: int | None = None) -> Path:
    slug = entry.slug if isinstance(entry, Entry) else entry
    return out / "evals" / slug / (f"seed{seed}.json" if seed is not None else "result.json")


def _interval(preset: ComparePreset, entry: Entry) -> int:
    return max(1, entry.steps // preset.evals_per_run)


def impala_config(preset: ComparePreset, entry: Entry, seed: int) -> Any:
    """The entry's ``TrainConfig`` for ``seed`` (its preset with the entry's settings and the
    comparison's step budget, evaluation and env settings)."""
    from impala_hybrid.experiments.config_io import load_config

    fields: dict[str, Any] = {**entry.settings}
    fields.update(
        total_steps=entry.steps,
        seed=seed,
        eval_interval=_interval(preset, entry),
        eval_episodes=preset.val_episodes,
        eval_seed=0,
        checkpoint_interval=_interval(preset, entry),
    )
    for k, v in _env_kwargs(preset, entry).items():
        fields[f"env_kwargs.{k}"] = v
    return load_config(
        None, preset=entry.preset, overrides=[f"{k}={json.dumps(v)}" for k, v in fields.items()]
    )


def sb3_config(preset: ComparePreset, entry: Entry, seed: int) -> Any:
    """The entry's ``SB3Config`` for ``seed``."""
    from impala_hybrid.algos.sb3.config import SB3Config

    return SB3Config(
        **{
            **entry.settings,
            "total_steps": entry.steps,
            "seed": seed,
            "env_kwargs": _env_kwargs(preset, entry),
        }
    )


def _env_kwargs(preset: ComparePreset, entry: Entry) -> dict[str, Any]:
    """The env settings an entry trains on: the preset's, with the entry's weights."""
    kwargs = dict(preset.env_kwargs)
    if entry.weights is not None:
        kwargs["weights"] = list(entry.weights)
    return kwargs


def trained(out: Path, preset: ComparePreset, entry: Entry, seed: int) -> bool:
    """Whether the run of ``entry`` on ``seed`` has finished training."""
    from impala_hybrid.experiments.study import finished

    d = run_dir(out, entry, seed)
    if entry.family == "sb3":
        from impala_hybrid.algos.sb3.train import RUN_FILE

        return (d / RUN_FILE).is_file() and finished(d, entry.steps)
    return finished(d, entry.steps)


def train(out: Path, preset: ComparePreset, entry: Entry, seed: int) -> int:
    """Train (or finish) one run; 0, or the trainer's 130/143 when a signal stopped it."""
    d = run_dir(out, entry, seed)
    if trained(out, preset, entry, seed):
        return 0
    if entry.family == "sb3":
        return _train_sb3(preset, entry, seed, d)
    from impala_hybrid.experiments.trainer import LAST, resume_run, start_run

    with _log(d) as log:
        console = Console(file=log, width=120)
        if (d / LAST).is_file():
            trainer = resume_run(d, console=console)
        else:
            if d.exists():  # killed before its first checkpoint: nothing to keep
                shutil.rmtree(d)
            cfg = impala_config(preset, entry, seed)
            trainer = start_run(cfg, d, runtime="serial", console=console)
        return trainer.run()


def _log(d: Path) -> Any:
    d.parent.mkdir(parents=True, exist_ok=True)
    return (d.parent / f"{d.name}.log").open("a")


def _train_sb3(preset: ComparePreset, entry: Entry, seed: int, d: Path) -> int:
    from impala_hybrid.algos.sb3.train import ValidationCallback, train_sb3
    from impala_hybrid.experiments.spec import TrainConfig
    from impala_hybrid.experiments.trainer import Evaluator

    if d.exists():
        shutil.rmtree(d)  # a killed SB3 run starts again (module docstring)
    d.mkdir(parents=True)
    cfg = sb3_config(preset, entry, seed)
    evaluator = Evaluator(
        TrainConfig(
            env=cfg.env,
            env_kwargs=dict(cfg.env_kwargs),
            eval_episodes=preset.val_episodes,
            eval_seed=0,
        )
    )

    def evaluate(policy: Any) -> tuple[float, float, dict[str, Any]]:
        res = evaluator.policy_result(policy)
        # each episode's return too: the callback's paired selection, as the trainer's
        detail = {**res.get("result", {}), "episode_returns": res["episode_returns"]}
        return float(res["return_mean"]), float(res["return_std"]), detail

    cb = ValidationCallback(evaluate, _interval(preset, entry), preset.val_episodes, d)
    train_sb3(cfg, out_dir=d, callback=cb)
    return 0


# --- evaluation ------------------------------------------------------------------------------


def _read_curve(path: Path) -> dict[str, list[Any]]:
    steps: list[int] = []
    wall: list[float] = []
    ret: list[float] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("return_mean") is None:
            continue
        steps.append(int(rec["env_steps"]))
        wall.append(float(rec.get("wall_s") or 0.0))
        ret.append(float(rec["return_mean"]))
    return {"env_steps": steps, "wall_s": wall, "return": ret}


def inference_us(
    policy: Callable[[np.ndarray], Any], obs: np.ndarray, calls: int = 300
) -> dict[str, float]:
    """Batch-1 latency of ``policy`` (microseconds): median and 99th percentile of ``calls``
    timed calls after 20 warm-up calls, on observations from the env."""
    for i in range(20):
        policy(obs[i % len(obs)][None])
    times = np.empty(calls)
    for i in range(calls):
        x = obs[i % len(obs)][None]
        t0 = time.perf_counter()
        policy(x)
        times[i] = time.perf_counter() - t0
    return {"median": float(np.median(times) * 1e6), "p99": float(np.quantile(times, 0.99) * 1e6)}


def _observations(env_kwargs: Mapping[str, Any], n: int = 64) -> np.ndarray:
    """Observations of ``n`` envs a few steps into an episode (inputs for timing)."""
    from impala_hybrid.envs.config import UAVNetConfig
    from impala_hybrid.envs.heuristics import make_heuristic
    from impala_hybrid.envs.vector import UAVNetVectorEnv

    env = UAVNetVectorEnv(n, config=UAVNetConfig(**env_kwargs))
    obs, _ = env.reset(seed=12345)
    act = make_heuristic("threshold", env.config)
    for _ in range(10):
        obs, *_ = env.step(act(obs))
    env.close()
    return np.asarray(obs)


def deployed_policy(
    entry: Entry, d: Path, weights: Sequence[float] | None = None
) -> tuple[Any, Any, str]:
    """``(policy for evaluation, policy to time, what is timed)`` of a run's best checkpoint
    (a preference-conditioned one held at ``weights``; default: the env's own)."""
    if entry.family == "sb3":
        from impala_hybrid.algos.sb3.train import load_sb3

        run = load_sb3(d, checkpoint="best")
        return run.policy, run.policy, "SB3 predict (torch, greedy)"
    from impala_hybrid.deploy.inference import NumpyPolicy
    from impala_hybrid.evaluation.policy import WithPreference
    from impala_hybrid.experiments.trainer import load_run_model, run_policy

    cfg, model = load_run_model(d, "best")
    policy = run_policy(cfg, model, weights)
    try:
        timed: Any = NumpyPolicy.from_model(model, cfg.discrete_choice)
        what = "NumpyPolicy (deploy, batch 1)"
    except ValueError:  # a model the NumPy path does not cover: time the torch policy
        timed, what = policy, "TorchPolicy"
    if isinstance(policy, WithPreference) and timed is not policy:
        timed, what = WithPreference(timed, policy.weights), what + " with the weight input"
    return policy, timed, what


def _heldout(preset: ComparePreset, policy: Any, name: str) -> Any:
    from impala_hybrid.envs.config import UAVNetConfig
    from impala_hybrid.evaluation.rollout import evaluate

    return evaluate(
        policy,
        UAVNetConfig(**preset.env_kwargs),
        episodes=preset.heldout_rounds,
        num_envs=preset.heldout_envs,
        seed=0,
        split="eval",
        name=name,
    )


def _record(res: Any) -> dict[str, Any]:
    from impala_hybrid.envs.config import CLASS_NAMES

    per = res.per_episode
    out = res.to_dict(per_episode=True)
    out["per_episode"].update(
        {
            k: np.asarray(per[k]).tolist()
            for k in per
            if k.startswith(("latency_p", "latency_cvar", "dropped_", "on_time_", "arrived_"))
        }
    )
    out["latency_hist"] = {c: per[f"latency_hist_{c}"].sum(0).tolist() for c in CLASS_NAMES}
    return out


#: The learner's off-policy metrics that the report shows per run: the policy lag of the data
#: (learner steps), the mean ``|log rho|`` and the fraction of ratios outside ``[0.5, 2]``.
TRAIN_STATS = ("policy_lag_mean", "log_rho_abs", "ratio_outside_frac")


def train_stats(d: Path) -> dict[str, float] | None:
    """Means of :data:`TRAIN_STATS` over a run's ``metrics.jsonl`` (one row per logging
    interval): how far off-policy its training data was. None without the file (SB3 runs)."""
    path = d / "metrics.jsonl"
    if not path.is_file():
        return None
    values: dict[str, list[float]] = {k: [] for k in TRAIN_STATS}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for k in TRAIN_STATS:
            if row.get(k) is not None:
                values[k].append(float(row[k]))
    return {k: float(np.mean(v)) for k, v in values.items() if v}


def evaluate_run(out: Path, preset: ComparePreset, entry: Entry, seed: int) -> Path:
    """Held-out evaluation of one trained run into its evaluation file (kept if present)."""
    path = eval_path(out, entry, seed)
    if path.is_file():
        return path
    d = run_dir(out, entry, seed)
    policy, timed, what = deployed_policy(entry, d)
    res = _heldout(preset, policy, entry.name)
    rec: dict[str, Any] = {
        "name": entry.name,
        "family": entry.family,
        "group": entry.group,
        "seed": seed,
        "steps_budget": entry.steps,
        "checkpoint": "best",
        "heldout": _record(res),
        "curve": _read_curve(d / "eval.jsonl"),
        "inference_us": {**inference_us(timed, _observations(preset.env_kwargs)), "what": what},
    }
    curve = rec["curve"]
    rec["train"] = {"env_steps": curve["env_steps"][-1], "seconds": curve["wall_s"][-1]}
    rec["train_stats"] = train_stats(d)
    if entry.group == "conditioned":  # the one policy held at each weight of the sweep
        rec["sweep"] = [
            {
                "weights": list(w),
                "heldout": _record(_heldout(preset, deployed_policy(entry, d, w)[0], entry.name)),
            }
            for w in preset_sweep_weights(preset)
        ]
    _write_json(path, rec)
    return path


def preset_sweep_weights(preset: ComparePreset) -> list[tuple[float, ...]]:
    """The distinct weight vectors of the preset's sweep entries, in order."""
    return list(dict.fromkeys(e.weights for e in preset.entries if e.weights is not None))


def evaluate_classical(out: Path, preset: ComparePreset) -> dict[str, Path]:
    """Held-out (and validation, for the sample-efficiency threshold) results of the five
    classical policies."""
    from impala_hybrid.envs.config import UAVNetConfig
    from impala_hybrid.envs.heuristics import HEURISTICS, make_heuristic
    from impala_hybrid.experiments.spec import TrainConfig
    from impala_hybrid.experiments.trainer import Evaluator

    paths = {}
    config = UAVNetConfig(**preset.env_kwargs)
    evaluator = Evaluator(
        TrainConfig(env_kwargs=dict(preset.env_kwargs), eval_episodes=preset.val_episodes)
    )
    obs = _observations(preset.env_kwargs)
    for name in HEURISTICS:
        path = eval_path(out, f"classical_{name}")
        paths[name] = path
        if path.is_file():
            continue
        policy = make_heuristic(name, config)
        val = evaluator.policy_result(policy)
        rec = {
            "name": name,
            "family": "classical",
            "group": "classical",
            "seed": None,
            "heldout": _record(_heldout(preset, policy, name)),
            "validation_return": val["return_mean"],
            "inference_us": {**inference_us(policy, obs), "what": "classical (NumPy)"},
        }
        _write_json(path, rec)
    return paths


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Atomically (a killed compare leaves no half-written evaluation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(json_safe(dict(payload)), indent=1, allow_nan=False) + "\n")
    tmp.replace(path)


# --- the whole grid --------------------------------------------------------------------------


def _weight(entry: Entry) -> float:
    """Rough seconds of a run on 2 cores, for the progress bar's ETA (the bar advances by
    these; its rate is measured, so a uniformly slower machine still gets a fair ETA)."""
    rate = {"impala": 40_000.0, "sb3": 2_000.0}[entry.family]
    if entry.settings.get("algo") in ("sac", "td3"):
        rate = 800.0
    return max(1.0, entry.steps / rate)


def jobs(preset: ComparePreset) -> list[tuple[Entry, int]]:
    """Every ``(entry, seed)`` run of the grid, seed by seed (so that a stopped grid has
    whole seeds of every algorithm first)."""
    seeds = sorted({s for e in preset.entries for s in e.seeds_in(preset)})
    return [(e, s) for s in seeds for e in preset.entries if s in e.seeds_in(preset)]


def describe(preset: ComparePreset) -> str:
    runs = len(jobs(preset))
    return (
        f"compare preset {preset.name!r}: {len(preset.entries)} entries, seeds "
        f"{list(preset.seeds)}: {runs} runs, plus the 5 classical policies; stated "
        f"length about {preset.minutes:g} min on 2 cores ({preset.about})"
    )


#: Preset fields that say only how the grid is described, not what its runs are.
_DESCRIPTIVE = ("entries", "minutes", "about")


def _check_same_grid(old: Mapping[str, Any], new: Mapping[str, Any], out: Path) -> None:
    """A directory's runs may be continued by ``new`` if they are runs of it: the shared
    settings (seeds, env, evaluation) are the same, and every entry of both has the same
    definition. ``new`` may add entries (they are trained; the others are kept)."""
    new = json_safe(dict(new))
    shared = [k for k in new if k not in _DESCRIPTIVE]
    # read back through Entry, so that fields added since the old file take their defaults
    old_entries = {
        e["name"]: json_safe(dataclasses.asdict(Entry(**e))) for e in old.get("entries", [])
    }
    changed = [k for k in shared if old.get(k) != new[k]]
    changed += [
        f"entry {e['name']!r}"
        for e in new["entries"]
        if e["name"] in old_entries and old_entries[e["name"]] != e
    ]
    if changed:
        raise ConfigError(
            f"{out} holds a comparison of another grid ({old.get('name')!r}; differs in "
            f"{', '.join(changed)}): use a new --out"
        )


def _job(out: Path, preset: ComparePreset, entry: Entry, seed: int) -> int:
    """Train (or finish) one run and evaluate it: 0, or 130/143 when a signal stopped it."""
    code = train(out, preset, entry, seed)
    if code == 0:
        evaluate_run(out, preset, entry, seed)
    return code


def _done(out: Path, preset: ComparePreset, entry: Entry, seed: int) -> bool:
    return trained(out, preset, entry, seed) and eval_path(out, entry, seed).is_file()


def _worker(out: Path, preset: ComparePreset, entry: Entry, seed: int) -> None:
    """One run in a process of its own (``compare(..., parallel=N)``); its exit status is
    :func:`_job`'s. It leaves the terminal's process group, so that Ctrl-C reaches it once,
    forwarded by the parent (a second signal stops a trainer at once, without ``last.pt``)."""
    import signal
    import sys

    from impala_hybrid.experiments.trainer import EXIT_STATUS

    os.setpgid(0, 0)
    got = [int(signal.SIGINT)]

    def stop(signum: int, frame: Any) -> None:  # SB3 runs and evaluations: stop at once
        got[0] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        code = _job(out, preset, entry, seed)
    except KeyboardInterrupt:
        code = EXIT_STATUS[signal.Signals(got[0])]
    sys.exit(code)


def _run_parallel(
    out: Path,
    preset: ComparePreset,
    grid: list[tuple[Entry, int]],
    parallel: int,
    progress: Progress,
    task: Any,
    c: Console,
) -> int:
    """Run the grid's unfinished jobs, ``parallel`` processes at a time (spawned: each run is
    single-threaded and seeded, so its numbers are those of the serial loop, A3C's aside).

    A SIGINT or SIGTERM to this process is forwarded once to every running job, which stops
    as the serial loop's would (``last.pt`` written); no new job starts. A job that fails ends
    the grid once the running ones are done."""
    import multiprocessing
    import multiprocessing.connection
    import signal
    from collections import deque

    from impala_hybrid.experiments.trainer import EXIT_STATUS

    ctx = multiprocessing.get_context("spawn")
    queue: deque[tuple[Entry, int]] = deque()
    for entry, seed in grid:
        if _done(out, preset, entry, seed):
            progress.advance(task, _weight(entry))
        else:
            queue.append((entry, seed))
    running: dict[Any, tuple[Any, Entry, int]] = {}
    stopped: list[int] = []
    failed: list[str] = []

    def forward(signum: int, frame: Any) -> None:
        stopped.append(signum)
        for proc, _, _ in list(running.values()):
            if proc.exitcode is None:
                os.kill(proc.pid, signum)

    previous = {s: signal.signal(s, forward) for s in EXIT_STATUS}
    try:
        while queue or running:
            while queue and len(running) < parallel and not stopped and not failed:
                entry, seed = queue.popleft()
                proc = ctx.Process(target=_worker, args=(out, preset, entry, seed), daemon=False)
                proc.start()
                running[proc.sentinel] = (proc, entry, seed)
            if not running:
                break
            names = ", ".join(f"{e.name} seed {s}" for _, e, s in running.values())
            progress.update(task, description=f"[{len(queue)} queued] {names}")
            for sentinel in multiprocessing.connection.wait(list(running)):
                proc, entry, seed = running.pop(sentinel)
                proc.join()
                code = proc.exitcode
                if code == 0:
                    progress.advance(task, _weight(entry))
                elif code not in EXIT_STATUS.values():
                    log = run_dir(out, entry, seed).with_suffix(".log")
                    failed.append(f"{entry.name} seed {seed} (exit status {code}; log: {log})")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failed:
        c.print(f"failed: {'; '.join(failed)}. Fix it and run the same command again.")
        return 1
    if stopped:
        c.print("stopped: run the same command again to continue")
        return EXIT_STATUS[signal.Signals(stopped[0])]
    return 0


def compare(
    preset: ComparePreset,
    out: str | Path,
    *,
    console: Console | None = None,
    parallel: int = 1,
) -> int:
    """Train and evaluate the grid into ``out`` (resumable), then write the report.

    ``parallel``: runs at a time. 1 trains in this process; N > 1 spawns up to N processes,
    one per run (every run is single-threaded, except A3C's 2 workers), so the grid uses N
    cores. Returns 0, or 130/143 when SIGINT/SIGTERM stopped a run (its ``last.pt`` is
    written; run the same command again to continue), or 1 when a run failed.
    """
    from impala_hybrid.experiments.report import write_report

    if parallel < 1:
        raise ConfigError(f"parallel = {parallel} is invalid: allowed range is [1, inf)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = console or Console()
    meta = {"preset": dataclasses.asdict(preset)}
    meta_path = out / META_FILE
    if meta_path.is_file():
        _check_same_grid(json.loads(meta_path.read_text())["preset"], meta["preset"], out)
    _write_json(meta_path, meta)
    c.print(describe(preset) + (f"; {parallel} runs at a time" if parallel > 1 else ""))
    grid = jobs(preset)
    total = sum(_weight(e) for e, _ in grid) + 30.0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=c, transient=False) as progress:
        task = progress.add_task("classical policies", total=total)
        evaluate_classical(out, preset)
        progress.advance(task, 30.0)
        if parallel > 1:
            code = _run_parallel(out, preset, grid, parallel, progress, task, c)
            if code != 0:
                return code
        else:
            for i, (entry, seed) in enumerate(grid):
                progress.update(task, description=f"[{i + 1}/{len(grid)}] {entry.name} seed {seed}")
                code = _job(out, preset, entry, seed)
                if code != 0:
                    c.print(f"stopped during {entry.name} seed {seed}: run the same command again")
                    return code
                progress.advance(task, _weight(entry))
    report = write_report(out)
    c.print(f"report: {report}")
    return 0


def load_meta(out: str | Path) -> ComparePreset:
    """The preset a comparison directory was run with."""
    path = Path(out) / META_FILE
    if not path.is_file():
        raise ConfigError(f"{out}: no {META_FILE} there (not a comparison directory)")
    data = json.loads(path.read_text())["preset"]
    entries = tuple(Entry(**e) for e in data.pop("entries"))
    data["seeds"] = tuple(data["seeds"])
    return ComparePreset(entries=entries, **data)
