"""Population-based training (Jaderberg et al. 2017) with Ray Tune, through our run directories.

A population of trials trains the same base ``TrainConfig`` with different hyperparameters.
Every ``PBTConfig.interval`` env steps (a *round*) each trial evaluates its greedy policy and
reports the score to Tune's ``PopulationBasedTraining``; a trial in the bottom
``quantile_fraction`` of the population then *exploits* one in the top (copies its learner,
optimizer, env and counters) and *explores* (perturbs the copied hyperparameters by 0.8 or
1.2, or resamples one with ``resample_probability``), and trains on.

What is ours and what is Tune's: Tune schedules the trials, ranks them and decides who copies
whom and with which new hyperparameters. Everything a trial trains, saves and loads is ours:

* Each trial is a run directory ``OUT/trials/trial_<i>/`` written by the trainer
  (``experiments/trainer.py``: ``config.yaml``, ``metrics.jsonl``, ``eval.jsonl``, TensorBoard,
  ``checkpoints/last.pt`` and ``best.pt``), trained one round at a time with
  ``Trainer.run(until=...)`` under the serial or local runtime, so ``impala-hybrid eval --run``
  and ``export --run`` work on any trial. A round starts a new ``Trainer`` from ``last.pt``:
  exact on the serial runtime, envs restarted on the local one (as its ``--resume`` does).
* The Tune checkpoint a trial reports each round is a directory holding copies of its
  ``last.pt`` and ``best.pt`` and ``meta.json`` (the writer's trial, env steps, round, score
  and hyperparameters). On an exploit Tune restarts the trial with the donor's Tune
  checkpoint and the new hyperparameters; the trial copies the donor's ``last.pt`` and
  ``best.pt`` into its own run directory (it continues the donor's lineage: weights,
  optimizer moments, counters, and the envs' state and random streams, so the two trials
  part ways through their hyperparameters) and resumes it under its new config. Tune keeps
  every checkpoint (about 2.3 MB a trial a round for ``uav_hybrid``): with ``num_to_keep``
  a trial that exploited a donor's checkpoint may delete it while the donor still counts on
  it (Tune's PBT shares the checkpoint between the two).
* New hyperparameters take effect by rebuilding the trial's ``TrainConfig`` from the base
  config (:func:`apply_hyperparameters`, ``dataclasses.replace``): ``config.yaml`` then says
  what the trial trains with (``eval``, ``export`` and ``train --resume`` read it), and one
  mechanism serves every hyperparameter, including those the learner reads only at
  construction (``rho_bar``, the reward weights of a vector critic). The learner recomputes
  its learning rate from the config's schedule at every step, so a perturbed ``lr`` is the
  optimizer's from the first step after the exploit (tested in
  ``tests/experiments/test_pbt.py``);
  ``Learner.lr_scale``/``entropy_scale`` are not used (they stay at 1).
* The score is the greedy return on the validation seeds under the *base* config's objective
  weights and constraint hinges (the trials' evaluator is the base config's), so trials that
  perturb the weights are ranked on one scale; ``best.pt`` of every trial is chosen on it too.
* The population's history is ours: ``OUT/history/trial_<i>.jsonl``, one line per round
  (env steps, score, hyperparameters) and per exploit (donor, its env steps and score, the
  donor's hyperparameters and the new ones). One file per trial, written only by that trial,
  so no two processes append to one file (on a cluster ``OUT`` must be a shared filesystem:
  the trials' run directories live there). What each trial's trainer printed (evaluations,
  pauses) is in ``OUT/logs/trial_<i>.log``. :func:`read_history` and :func:`summary_table`
  read them back, so the summary can be printed again from a finished (or running) ``OUT``.

The search space: each hyperparameter's range is a pair of *factors of the base config's
value* (``PBTConfig.lr = (0.1, 10)``: a trial's ``algo.lr`` lies in [0.1, 10] x the base's),
so the default ``PBTConfig`` fits any preset. Trial 0 starts from the base config itself; the
others from log-uniform draws within the ranges (seeded: ``PBTConfig.seed``). Perturbed values
are clipped into the ranges. What each name changes is in :data:`HYPERPARAMETERS`.

Tune's clock is the round (``time_attr = "round"``, ``perturbation_interval = 1``), not the
env steps: a round ends at the first learner step at or past ``k * interval`` env steps, so
the reported env steps overshoot by up to one batch, and an interval measured in env steps
would then skip perturbations now and then. A trial's last round ends it (a Tune stop
criterion), so PBT never overwrites a finished trial with a copy.

Resume: ``run_pbt(..., resume=True)`` (``impala-hybrid pbt --resume OUT``) restores the Tune
experiment in ``OUT/tune`` (``Tuner.restore``); each trial restarts from its latest Tune
checkpoint, and its logs and history are cut back to that point as ``train --resume`` does.
Not for ``synch`` experiments: the restored trials stand at different rounds, and Tune's
synchronous PBT then leaves a trial paused at the sync point for good (seen with Ray 2.60), so
such a resume is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from impala_hybrid import UAVNET_ID
from impala_hybrid.envs.config import OBJECTIVE_NAMES, UAVNetConfig
from impala_hybrid.experiments.config_io import (
    check_env_kwargs,
    coerce_fields,
    load_config,
    save_config,
)
from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.validation import ConfigError, spec, validate

TRIALS = "trials"
TUNE_DIR = "tune"
BASE_CONFIG = "config.yaml"
PBT_CONFIG = "pbt.yaml"
HISTORY = "history"  # OUT/history/<trial>.jsonl
LOGS = "logs"  # OUT/logs/<trial>.log: what the trial's trainer printed
META = "meta.json"
CHECKPOINT_DIR = "pbt_checkpoint"  # what a trial hands Tune each round (Tune copies it)
RUNTIMES = ("serial", "local")
INSTALL_HINT = "pbt needs Ray Tune: pip install 'impala-hybrid[ray]'"


class PBTError(Exception):
    """An experiment that cannot go on: a trial failed, or there is nothing to resume."""


@dataclasses.dataclass(frozen=True)
class PBTConfig:
    """A population-based training experiment (see the module docstring).

    Hyperparameter ranges are ``[lo, hi]`` factors of the base config's value; null: that
    hyperparameter is not searched.
    """

    population: int = spec(4, "trials trained side by side", lo=2)
    interval: int = spec(
        100_000, "env steps per round: each trial evaluates and reports, and PBT may exploit "
        "and explore, every interval env steps", lo=1,
    )  # fmt: skip
    steps: int | None = spec(
        None, "env steps each trial trains (null: the config's total_steps); the learning "
        "rate and entropy schedules run over it", lo=1,
    )  # fmt: skip
    quantile_fraction: float = spec(
        0.25, "a trial in this bottom fraction of the population copies one in the top "
        "fraction", lo=0.0, hi=0.5, lo_open=True,
    )  # fmt: skip
    resample_probability: float = spec(
        0.25, "probability that an explored hyperparameter is drawn anew from its range "
        "instead of multiplied by one of perturbation_factors", lo=0.0, hi=1.0,
    )  # fmt: skip
    perturbation_factors: tuple[float, ...] = spec(
        (1.2, 0.8), "factors an explored hyperparameter is multiplied by (one at random)",
        length=2, lo=0.0, lo_open=True,
    )  # fmt: skip
    synch: bool = spec(
        False, "rank the whole population at the same round (Tune's synchronous PBT) instead "
        "of each trial as it reports (the paper's asynchronous PBT); cannot be resumed",
    )  # fmt: skip
    lr: tuple[float, ...] | None = spec(
        (0.1, 10.0), "range of algo.lr (lr_final scales with it: the schedule keeps its shape)",
        length=2, lo=0.0, lo_open=True,
    )  # fmt: skip
    entropy_coef: tuple[float, ...] | None = spec(
        (0.1, 10.0), "range of algo.entropy_coef (its final, discrete and continuous weights "
        "scale with it); needs a base entropy_coef > 0", length=2, lo=0.0, lo_open=True,
    )  # fmt: skip
    rho_bar: tuple[float, ...] | None = spec(
        (1.0, 4.0), "range of algo.rho_bar (lo x rho_bar must stay >= algo.c_bar)",
        length=2, lo=0.0, lo_open=True,
    )  # fmt: skip
    weights: tuple[float, ...] | None = spec(
        (0.5, 2.0), "range of each objective weight env_kwargs.weights[k] (UAV env; objectives "
        "with weight 0 stay 0); ignored on envs without objective weights",
        length=2, lo=0.0, lo_open=True,
    )  # fmt: skip
    hinges: tuple[float, ...] | None = spec(
        None, "range of each constraint-hinge coefficient env_kwargs.hinge_*_coef (UAV env "
        "with constraint_hinges = true)", length=2, lo=0.0, lo_open=True,
    )  # fmt: skip
    runtime: str = spec("serial", "runtime inside each trial", choices=RUNTIMES)
    trial_cpus: float = spec(
        1.0, "CPUs Ray reserves per trial (with the local runtime: local.num_actors + 1)",
        lo=0.0, lo_open=True,
    )  # fmt: skip
    seed: int = spec(0, "seed of the initial population and of PBT's choices", lo=0)

    def trial_steps(self, base: TrainConfig) -> int:
        """Env steps each trial trains: ``steps``, or the base config's ``total_steps``."""
        return self.steps or base.total_steps

    def __post_init__(self) -> None:
        validate(self)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if (
                f.name != "perturbation_factors"
                and isinstance(value, tuple)
                and value[0] > value[1]
            ):
                raise ConfigError(
                    f"PBTConfig.{f.name} = {list(value)!r} is invalid: must be [lo, hi] with "
                    "lo <= hi"
                )


# --- hyperparameters ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One searchable value: where it lives in ``TrainConfig`` and how a new value is set."""

    name: str
    group: str  # the PBTConfig field holding its range
    doc: str
    get: Callable[[TrainConfig], float]
    set: Callable[[TrainConfig, float], TrainConfig]  # on the base config


def _algo(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    return dataclasses.replace(cfg, algo=dataclasses.replace(cfg.algo, **changes))


def _scaled(x: float | None, factor: float) -> float | None:
    return None if x is None else x * factor


def _set_lr(cfg: TrainConfig, lr: float) -> TrainConfig:
    return _algo(cfg, lr=lr, lr_final=_scaled(cfg.algo.lr_final, lr / cfg.algo.lr))


def _set_entropy(cfg: TrainConfig, coef: float) -> TrainConfig:
    a, factor = cfg.algo, coef / cfg.algo.entropy_coef
    return _algo(
        cfg, entropy_coef=coef, entropy_coef_final=_scaled(a.entropy_coef_final, factor),
        entropy_coef_discrete=_scaled(a.entropy_coef_discrete, factor),
        entropy_coef_continuous=_scaled(a.entropy_coef_continuous, factor),
    )  # fmt: skip


def _env(cfg: TrainConfig) -> UAVNetConfig:
    return UAVNetConfig(**cfg.env_kwargs)


def _weight(k: int) -> Hyperparameter:
    def get(cfg: TrainConfig) -> float:
        return float(_env(cfg).weights[k])

    def set_(cfg: TrainConfig, value: float) -> TrainConfig:
        weights = list(_env(cfg).weights)
        weights[k] = value
        return dataclasses.replace(cfg, env_kwargs={**cfg.env_kwargs, "weights": weights})

    name = OBJECTIVE_NAMES[k]
    return Hyperparameter(
        f"weight_{name}", "weights", f"env_kwargs.weights[{k}] ({name})", get, set_
    )


def _hinge(which: str) -> Hyperparameter:
    key = f"hinge_{which}_coef"

    def get(cfg: TrainConfig) -> float:
        return float(getattr(_env(cfg), key))

    def set_(cfg: TrainConfig, value: float) -> TrainConfig:
        return dataclasses.replace(cfg, env_kwargs={**cfg.env_kwargs, key: value})

    return Hyperparameter(f"hinge_{which}", "hinges", f"env_kwargs.{key}", get, set_)


#: Every searchable hyperparameter by its name in Tune's config and in the history.
HYPERPARAMETERS: dict[str, Hyperparameter] = {
    h.name: h
    for h in (
        Hyperparameter("lr", "lr", "algo.lr (and lr_final in proportion)",
                       lambda c: c.algo.lr, _set_lr),
        Hyperparameter("entropy_coef", "entropy_coef",
                       "algo.entropy_coef (and its final and per-part weights in proportion)",
                       lambda c: c.algo.entropy_coef, _set_entropy),
        Hyperparameter("rho_bar", "rho_bar", "algo.rho_bar", lambda c: c.algo.rho_bar,
                       lambda c, v: _algo(c, rho_bar=v)),
        *(_weight(k) for k in range(len(OBJECTIVE_NAMES))),
        *(_hinge(w) for w in ("power", "gini", "occupancy")),
    )
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Range:
    """The absolute range of one searched hyperparameter and its base value."""

    lo: float
    hi: float
    base: float

    def clip(self, x: float) -> float:
        return min(max(float(x), self.lo), self.hi)


def search_space(pbt: PBTConfig, base: TrainConfig) -> dict[str, Range]:
    """``name -> Range`` of the hyperparameters ``pbt`` searches for ``base``; a
    :class:`ConfigError` for a range that cannot apply to this config."""
    uav = base.env == UAVNET_ID
    if pbt.hinges is not None and not (uav and _env(base).constraint_hinges):
        raise ConfigError(
            "PBTConfig.hinges is invalid for this config: the constraint hinges are off "
            "(needs the UAV env with env_kwargs.constraint_hinges = true); set pbt.hinges=null"
        )
    if pbt.entropy_coef is not None and base.algo.entropy_coef <= 0:
        raise ConfigError(
            "PBTConfig.entropy_coef is invalid for this config: algo.entropy_coef = 0 has no "
            "scale to search around; set algo.entropy_coef > 0 or pbt.entropy_coef=null"
        )
    if pbt.rho_bar is not None and pbt.rho_bar[0] * base.algo.rho_bar < base.algo.c_bar:
        raise ConfigError(
            f"PBTConfig.rho_bar = {list(pbt.rho_bar)!r} is invalid for this config: "
            f"{pbt.rho_bar[0]:g} x algo.rho_bar = {pbt.rho_bar[0] * base.algo.rho_bar:g} is "
            f"below algo.c_bar = {base.algo.c_bar:g} (V-trace needs c_bar <= rho_bar); allowed "
            f"lo >= {base.algo.c_bar / base.algo.rho_bar:g}"
        )
    space: dict[str, Range] = {}
    for name, h in HYPERPARAMETERS.items():
        factors = getattr(pbt, h.group)
        if factors is None or (h.group in ("weights", "hinges") and not uav):
            continue
        value = float(h.get(base))
        if value <= 0:  # an objective left out (weight 0) stays out
            continue
        space[name] = Range(factors[0] * value, factors[1] * value, value)
    if not space:
        raise ConfigError("PBTConfig searches no hyperparameter for this config: set a range")
    return space


def apply_hyperparameters(base: TrainConfig, values: Mapping[str, float]) -> TrainConfig:
    """``base`` with each named hyperparameter set (see :data:`HYPERPARAMETERS`), validated."""
    cfg = base
    for name, value in values.items():
        if name not in HYPERPARAMETERS:
            raise ConfigError(
                f"unknown hyperparameter {name!r}; valid: {', '.join(HYPERPARAMETERS)}"
            )
        cfg = HYPERPARAMETERS[name].set(cfg, float(value))
    check_env_kwargs(cfg)
    return cfg


def initial_population(space: Mapping[str, Range], population: int, seed: int) -> list[dict]:
    """Trial 0: the base config's values (clipped into the ranges); the others: log-uniform
    draws within the ranges."""
    rng = np.random.default_rng(seed)
    points = [{name: r.clip(r.base) for name, r in space.items()}]
    for _ in range(population - 1):
        points.append(
            {
                name: float(np.exp(rng.uniform(math.log(r.lo), math.log(r.hi))))
                for name, r in space.items()
            }
        )
    return points


# --- one trial --------------------------------------------------------------------------


def trial_index(trial_id: str) -> int | None:
    """``i`` of Tune's ``<experiment>_<i:05d>`` trial ids (the order trials were created)."""
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def trial_label(trial_id: str) -> str:
    """``trial_<i>`` (the trial id itself where it has no index)."""
    index = trial_index(trial_id)
    return trial_id if index is None else f"trial_{index}"


def _append(path: Path, record: dict[str, Any]) -> None:
    from impala_hybrid.jsonsafe import json_safe

    with open(path, "a") as f:
        f.write(json.dumps(json_safe({"t": round(time.time(), 3), **record})) + "\n")


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    return out


class PBTTrial:
    """One member of the population, as Tune's function trainable drives it (no Ray here).

    :meth:`start` with the Tune checkpoint Tune hands the trial (none, its own, or a
    donor's), then :meth:`train_round` until :attr:`done`, reporting each round's metrics and
    the checkpoint directory it returns.
    """

    def __init__(
        self,
        base: TrainConfig,
        pbt: PBTConfig,
        out: str | Path,
        trial_id: str,
        hyperparameters: Mapping[str, float],
    ) -> None:
        self.base = base
        self.pbt = pbt
        self.trial_id = trial_id
        self.label = trial_label(trial_id)
        self.hyperparameters = {k: float(v) for k, v in hyperparameters.items()}
        out = Path(out).resolve()
        self.run_dir = out / TRIALS / self.label
        self.history = out / HISTORY / f"{self.label}.jsonl"
        self.log = out / LOGS / f"{self.label}.log"
        seed = base.seed + (trial_index(trial_id) or 0)
        self.cfg = apply_hyperparameters(
            dataclasses.replace(base, total_steps=pbt.trial_steps(base), seed=seed),
            self.hyperparameters,
        )
        self.env_steps = 0
        self.round = 0

    @property
    def done(self) -> bool:
        return self.env_steps >= self.cfg.total_steps

    def start(self, checkpoint: str | Path | None) -> None:
        """Begin a new run directory, or continue from a Tune checkpoint directory: the
        trial's own (a restart) or a donor's (an exploit, recorded in the history)."""
        from impala_hybrid.experiments.trainer import BEST, LAST

        self.history.parent.mkdir(parents=True, exist_ok=True)
        if checkpoint is None:  # a new trial, or one restarted before its first report
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.history.unlink(missing_ok=True)
            return
        ckpt = Path(checkpoint)
        meta = json.loads((ckpt / META).read_text())
        self.env_steps, self.round = int(meta["env_steps"]), int(meta["round"])
        if self.done:  # a trial that already finished is not perturbed any more
            return
        own = meta["trial"] == self.trial_id
        lines = _read_lines(self.history)
        same = [i for i, r in enumerate(lines) if r.get("donor_checkpoint") == str(ckpt)]
        if own:
            self._cut_history(lines, meta)
        elif same:  # an exploit again: a resumed experiment restarts the trial from it
            self._write_history(lines[: same[-1] + 1])
        else:
            previous = [r for r in lines if r["event"] == "round"]
            _append(self.history, {
                "event": "exploit", "trial": self.label, "round": self.round,
                "env_steps": self.env_steps, "donor": meta["label"],
                "donor_score": meta["score"], "donor_checkpoint": str(ckpt),
                "old": previous[-1]["hyperparameters"] if previous else None,
                "donor_hyperparameters": meta["hyperparameters"],
                "new": self.hyperparameters,
            })  # fmt: skip
        (self.run_dir / "checkpoints").mkdir(exist_ok=True)
        for name in (LAST, BEST):
            src = ckpt / Path(name).name
            if src.is_file():
                shutil.copyfile(src, self.run_dir / name)
            elif not own:  # the donor never evaluated a best: none of ours may stay
                (self.run_dir / name).unlink(missing_ok=True)

    def _cut_history(self, lines: list[dict[str, Any]], meta: Mapping[str, Any]) -> None:
        """Drop what this trial wrote after the round it restarts from (a crash or a kill
        between writing a round and Tune saving its checkpoint)."""
        keep = len(lines)
        for i, r in enumerate(lines):
            if r["event"] == "round" and r["round"] == meta["round"]:
                keep = i + 1
        self._write_history(lines[:keep])

    def _write_history(self, lines: list[dict[str, Any]]) -> None:
        self.history.write_text("".join(json.dumps(r) + "\n" for r in lines))

    def _trainer(self, console: Console) -> Any:
        from impala_hybrid.experiments.trainer import LAST, Evaluator, Trainer, start_run
        from impala_hybrid.runtime.checkpoint import load_checkpoint

        evaluator = Evaluator(self.base)  # the base objective: one scale for everyone
        last = self.run_dir / LAST
        if not last.is_file():
            self.run_dir.mkdir(parents=True)
            return start_run(
                self.cfg, self.run_dir, runtime=self.pbt.runtime, console=console,
                evaluator=evaluator,
            )  # fmt: skip
        save_config(self.cfg, self.run_dir / "config.yaml")
        # the checkpoint replaces the model: no need to behaviour-clone it again
        cfg = dataclasses.replace(self.cfg, warm_start=None)
        return Trainer(
            cfg, self.run_dir, runtime=self.pbt.runtime, checkpoint=load_checkpoint(last),
            console=console, evaluator=evaluator,
        )  # fmt: skip

    def train_round(self) -> tuple[dict[str, Any], Path]:
        """Train to the next round's end, evaluate, record it; the metrics to report and the
        checkpoint directory to hand Tune."""
        from impala_hybrid.experiments.trainer import BEST, LAST

        target = min((self.env_steps // self.pbt.interval + 1) * self.pbt.interval,
                     self.cfg.total_steps)  # fmt: skip
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:  # the trainer's messages, not Tune's console
            trainer = self._trainer(Console(file=log, width=120))
            status = trainer.run(until=target)
        if status != 0:
            raise RuntimeError(f"{self.label}: training stopped with status {status}")
        self.env_steps = trainer.runtime.env_steps
        self.round += 1
        assert trainer.last_eval is not None  # a session ends with an evaluation
        score = float(trainer.last_eval["return_mean"])
        record = {
            "event": "round", "trial": self.label, "round": self.round,
            "env_steps": self.env_steps, "score": score,
            "hyperparameters": self.hyperparameters,
        }  # fmt: skip
        _append(self.history, record)
        ckpt = self.run_dir / CHECKPOINT_DIR
        shutil.rmtree(ckpt, ignore_errors=True)
        ckpt.mkdir()
        for name in (LAST, BEST):
            if (self.run_dir / name).is_file():
                shutil.copyfile(self.run_dir / name, ckpt / Path(name).name)
        meta = {"trial": self.trial_id, "label": self.label, "round": self.round,
                "env_steps": self.env_steps, "score": score,
                "hyperparameters": self.hyperparameters}  # fmt: skip
        (ckpt / META).write_text(json.dumps(meta))
        metrics = {"score": score, "round": self.round, "env_steps": self.env_steps}
        return metrics, ckpt


def tune_trainable(config: dict[str, Any], *, base: TrainConfig, pbt: PBTConfig, out: str) -> None:
    """Tune's function trainable: one :class:`PBTTrial` from the checkpoint Tune hands it."""
    from ray import tune

    trial = PBTTrial(base, pbt, out, tune.get_context().get_trial_id(), config)
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        trial.start(None)
    else:
        with checkpoint.as_directory() as path:
            trial.start(path)
    while not trial.done:
        metrics, ckpt = trial.train_round()
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(ckpt)))
        shutil.rmtree(ckpt)  # Tune has copied it into OUT/tune


# --- the experiment -----------------------------------------------------------------------


def _import_tune() -> Any:
    try:
        from ray import tune
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return tune


def save_experiment(base: TrainConfig, pbt: PBTConfig, out: Path) -> None:
    """``OUT/config.yaml`` (the base config) and ``OUT/pbt.yaml`` (the PBT config)."""
    save_config(base, out / BASE_CONFIG)
    data = {f.name: getattr(pbt, f.name) for f in dataclasses.fields(pbt)}
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
    (out / PBT_CONFIG).write_text(yaml.safe_dump(data, sort_keys=False))


def load_experiment(out: str | Path) -> tuple[TrainConfig, PBTConfig]:
    out = Path(out)
    if not (out / PBT_CONFIG).is_file():
        raise ConfigError(f"{out}: no {PBT_CONFIG} there (not a pbt output directory)")
    return load_config(out / BASE_CONFIG), pbt_config(
        yaml.safe_load((out / PBT_CONFIG).read_text())
    )


def pbt_config(data: Mapping[str, Any], base: PBTConfig | None = None) -> PBTConfig:
    """A :class:`PBTConfig` from plain data over ``base`` (unknown fields named)."""
    values = {**dataclasses.asdict(base or PBTConfig()), **coerce_fields(PBTConfig, data, "pbt.")}
    try:
        return PBTConfig(**values)
    except TypeError as e:
        raise ConfigError(f"PBTConfig: {e}") from None


def run_pbt(
    base: TrainConfig,
    pbt: PBTConfig,
    out: str | Path,
    *,
    address: str | None = None,
    resume: bool = False,
    console: Console | None = None,
) -> list[dict[str, Any]]:
    """Train the population into ``out`` (or continue it with ``resume``); the history."""
    tune = _import_tune()
    import ray
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator

    out = Path(out).resolve()
    console = console or Console()
    space = search_space(pbt, base)
    steps = pbt.trial_steps(base)
    if pbt.interval > steps:
        raise ConfigError(
            f"PBTConfig.interval = {pbt.interval} is invalid: must be <= the env steps each "
            f"trial trains ({steps}), or no trial reports before it ends"
        )
    points = initial_population(space, pbt.population, pbt.seed)
    for point in points:  # a config the trials cannot build fails here, not in every trial
        apply_hyperparameters(base, point)
    if not resume:
        if out.exists() and any(out.iterdir()):
            raise ConfigError(
                f"--out {out} exists and is not empty: continue it with --resume {out} or "
                "choose a new directory"
            )
        out.mkdir(parents=True, exist_ok=True)
        save_experiment(base, pbt, out)
    elif pbt.synch:
        raise PBTError(
            f"--resume {out}: this experiment ran with pbt.synch = true, which cannot be "
            "resumed (Tune's synchronous PBT waits forever when the restored trials stand at "
            "different rounds); start it again, or run without --synch to be able to resume"
        )
    elif not tune.Tuner.can_restore(str(out / TUNE_DIR)):
        raise PBTError(
            f"--resume {out}: no Tune experiment in {out / TUNE_DIR} (stopped before it "
            "started); start a new pbt instead"
        )
    # Tune warns on every restarted trial whose result.json it has not synced yet: harmless
    logging.getLogger("ray.tune.logger.logger").setLevel(logging.ERROR)
    owns_ray = not ray.is_initialized()
    if owns_ray:
        kwargs: dict[str, Any] = {"include_dashboard": False} if address is None else {}
        ray.init(address=address, log_to_driver=False, **kwargs)
    try:
        import random

        random.seed(pbt.seed)  # PBT's choices of donor and perturbation
        domains = {name: tune.loguniform(r.lo, r.hi) for name, r in space.items()}

        def clip(config: dict[str, Any]) -> dict[str, Any]:
            return {k: space[k].clip(v) if k in space else v for k, v in config.items()}

        scheduler = PopulationBasedTraining(
            time_attr="round", perturbation_interval=1, hyperparam_mutations=domains,
            quantile_fraction=pbt.quantile_fraction,
            resample_probability=pbt.resample_probability,
            perturbation_factors=(pbt.perturbation_factors[0], pbt.perturbation_factors[1]),
             custom_explore_fn=clip,
            synch=pbt.synch,
        )  # fmt: skip
        trainable = tune.with_resources(
            tune.with_parameters(tune_trainable, base=base, pbt=pbt, out=str(out)),
            {"cpu": pbt.trial_cpus},
        )
        callback = _progress_callback(tune, steps)
        if resume:
            tuner = tune.Tuner.restore(
                str(out / TUNE_DIR), trainable=trainable, resume_errored=True
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=domains,
                tune_config=tune.TuneConfig(
                    metric="score", mode="max", scheduler=scheduler, num_samples=pbt.population,
                    reuse_actors=True,  # a restarted trial skips starting Python and torch
                    search_alg=BasicVariantGenerator(
                        points_to_evaluate=points
                    ),
                ),
                run_config=tune.RunConfig(
                    name=TUNE_DIR, storage_path=str(out), verbose=0, callbacks=[callback],
                    # a trial's last round ends it: PBT does not perturb a finished trial
                    stop={"env_steps": steps},
                ),
            )  # fmt: skip
        results = tuner.fit()
        errors = [_first_line(e) for e in results.errors]
        if errors:
            raise PBTError(
                f"{len(errors)} trial(s) failed ({'; '.join(errors)}); the tracebacks are in "
                f"{out / TUNE_DIR}/*/error.txt; fix the cause and continue with --resume {out}"
            )
    finally:
        if owns_ray:
            ray.shutdown()
    return read_history(out)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _progress_callback(tune: Any, steps: int) -> Any:
    """A Tune callback printing a line per trial round (Tune's own tables are off). It holds
    no console: Tune pickles its callbacks with the experiment for ``Tuner.restore``."""

    class PBTProgress(tune.Callback):
        def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: Any,
                            **info: Any) -> None:  # fmt: skip
            score = result.get("score")
            Console().print(
                f"{trial_label(trial.trial_id)}: round {result.get('round')} at "
                f"{result.get('env_steps', 0):,}/{steps:,} env steps, score "
                + ("n/a" if score is None else f"{score:.2f}")
            )

    return PBTProgress()


# --- history and summary ---------------------------------------------------------------


def read_history(out: str | Path) -> list[dict[str, Any]]:
    """Every trial's ``pbt.jsonl`` lines, in the order they were written."""
    lines = []
    for path in sorted((Path(out) / HISTORY).glob("*.jsonl")):
        lines.extend(_read_lines(path))
    return sorted(lines, key=lambda r: r.get("t", 0.0))


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _steps(n: int) -> str:
    return f"{n / 1e6:.3g}M" if n >= 1_000_000 else f"{n / 1e3:.3g}k" if n >= 1000 else str(n)


def _grouped(values: Mapping[str, float]) -> dict[str, str]:
    """Formatted values, the objective weights as one ``weights [g, l, e, en, f, s]`` entry
    (objectives not searched shown as ``-``) and the hinge coefficients as ``hinges``."""
    out: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for name, h in HYPERPARAMETERS.items():
        if h.group in ("weights", "hinges"):
            groups.setdefault(h.group, []).append(name)
        elif name in values:
            out[name] = _fmt(values[name])
    for group, names in groups.items():
        if any(n in values for n in names):
            out[group] = "[" + ", ".join(_fmt(values[n]) if n in values else "-" for n in names)
            out[group] += "]"
    return out


def lineage(event: Mapping[str, Any]) -> str:
    """``at 200k copied trial_1 (412.0); lr 0.0003 -> 0.00036`` (changed values only: the
    donor's hyperparameters, then what the exploiting trial continues with)."""
    donor, new = _grouped(event["donor_hyperparameters"]), _grouped(event["new"])
    changes = [f"{k} {donor[k]} -> {v}" for k, v in new.items() if donor.get(k, v) != v]
    score = event["donor_score"]
    head = (
        f"at {_steps(event['env_steps'])} copied {event['donor']} "
        f"({'n/a' if score is None else f'{score:.2f}'})"
    )
    return head + ("; " + ", ".join(changes) if changes else "; no change")


@dataclasses.dataclass
class TrialSummary:
    label: str
    rounds: int
    env_steps: int
    final: float
    best: float
    hyperparameters: dict[str, float]
    lineage: list[str]


def summarize(history: Sequence[Mapping[str, Any]]) -> list[TrialSummary]:
    """One :class:`TrialSummary` per trial, best final score first."""
    trials: dict[str, TrialSummary] = {}
    for r in history:
        s = trials.setdefault(
            r["trial"], TrialSummary(r["trial"], 0, 0, math.nan, -math.inf, {}, [])
        )
        if r["event"] == "round":
            score = math.nan if r["score"] is None else float(r["score"])  # null: not finite
            s.rounds, s.env_steps, s.final = r["round"], r["env_steps"], score
            s.best = max(s.best, score) if math.isfinite(score) else s.best
            s.hyperparameters = r["hyperparameters"]
        elif r["event"] == "exploit":
            s.lineage.append(lineage(r))
    return sorted(trials.values(), key=lambda s: -s.final if math.isfinite(s.final) else math.inf)


def summary_table(history: Sequence[Mapping[str, Any]], title: str = "PBT population") -> Table:
    table = Table(title=title)
    for col in ("trial", "final score", "best score", "env steps", "hyperparameters", "lineage"):
        table.add_column(col, justify="right" if "score" in col or col == "env steps" else "left")
    for s in summarize(history):
        table.add_row(
            s.label, f"{s.final:.2f}", f"{s.best:.2f}", f"{s.env_steps:,}",
            ", ".join(f"{k} {v}" for k, v in _grouped(s.hyperparameters).items()),
            "\n".join(s.lineage) or "-",
        )  # fmt: skip
    return table


def unfinished(out: str | Path) -> int:
    """Trials of the experiment in ``out`` that did not reach their env steps (0 when done)."""
    base, pbt = load_experiment(out)
    done = [s for s in summarize(read_history(out)) if s.env_steps >= pbt.trial_steps(base)]
    return pbt.population - len(done)


def print_summary(out: str | Path, console: Console) -> Path:
    """The population table and the best trial's run directory (by final score)."""
    out = Path(out)
    history = read_history(out)
    if not history:
        raise ConfigError(f"{out}: no trial history ({HISTORY}/*.jsonl) to summarise")
    console.print(summary_table(history, f"PBT population in {out} (scores: validation return "
                                         "under the base config's objective)"))  # fmt: skip
    best = summarize(history)[0]
    run_dir = out / TRIALS / best.label
    console.print(
        f"best trial: {best.label} (final score {best.final:.2f}); run directory {run_dir}\n"
        f"evaluate it: impala-hybrid eval --run {run_dir}"
    )
    return run_dir
