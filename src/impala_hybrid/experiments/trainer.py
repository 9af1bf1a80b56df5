"""The run directory on top of a runtime: logs, evaluation, checkpoints, stop and resume.

A runtime (``RUNTIMES``: ``serial``, ``local`` or ``ray``; ``ALGORITHMS`` for algorithms
with their own, such as A3C's workers) knows how to take one learner step and how to snapshot
itself. Everything a user keeps from a run lives here, in one directory::

    runs/NAME/
      config.yaml               the resolved TrainConfig (loads back equal; --resume reads it)
      metrics.jsonl             one JSON line per progress record (learner metrics, fps, ...)
      eval.jsonl                one line per evaluation (greedy policy next to the baselines)
      events.out.tfevents.*     TensorBoard: train/* and eval/* scalars over env steps
      checkpoints/last.pt       latest state (every checkpoint_interval env steps, at the end,
                                and on Ctrl-C / SIGTERM)
      checkpoints/best.pt       state at the best evaluation return so far (the later one on
                                ties within one standard error, ``is_new_best``; with
                                ``selection = paired`` the standard error of the
                                per-episode differences from the best evaluation)

Evaluation runs every ``eval_interval`` env steps and at the end, on the same fixed seeds
every time: on the UAV env with ``evaluation.rollout.evaluate`` (common random numbers, so
the trained policy and the classical ``local_only``/``maxweight`` baselines, computed once,
face identical sample paths); on other envs with ``evaluation.episodes.evaluate_episodes``
(return, length and the env's numeric episode-end ``info`` such as ``success``).
Evaluation never touches the training state, so it does not change the training run.

Pausing: ``Trainer.run(until=N)`` ends the session at the first learner step at or past ``N``
env steps, evaluates there and writes ``last.pt``, as the end of the run does; a new
``Trainer`` on that checkpoint continues (population-based training trains in such rounds,
``experiments/pbt.py``).

Stopping: SIGINT or SIGTERM sets a flag; the current learner step finishes, ``last.pt`` is
written and :meth:`Trainer.run` returns 130 (SIGINT) or 143 (SIGTERM). A second signal
interrupts at once (``KeyboardInterrupt``); the atomic write keeps the previous ``last.pt``.

Resume (:func:`resume_run`) reads ``config.yaml`` and ``checkpoints/last.pt`` and continues
to ``total_steps``. Evaluations and checkpoints due at the step a run stopped at run first,
and log lines beyond the checkpoint (a crash after it) are dropped, so on the native UAV env
a stopped and resumed serial run writes the same metrics, evaluations and weights as an
uninterrupted one (only wall-clock fields differ). On other envs the actor restarts its envs
at the resume point (``Actor.load_state_dict``), so the continuation is reproducible but not
identical.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from impala_hybrid import UAVNET_ID
from impala_hybrid.evaluation.selection import judge
from impala_hybrid.experiments.config_io import (
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from impala_hybrid.jsonsafe import json_safe
from impala_hybrid.models.actor_critic import resolve_trunk_dtype
from impala_hybrid.runtime.a3c import A3CRun
from impala_hybrid.runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from impala_hybrid.runtime.config import TrainConfig
from impala_hybrid.runtime.health import CliffWatch
from impala_hybrid.runtime.local import LocalRun
from impala_hybrid.runtime.progress import LearnerView
from impala_hybrid.runtime.ray import RayRun
from impala_hybrid.runtime.serial import SerialRun, torch_threads
from impala_hybrid.validation import ConfigError


class Runtime(Protocol):
    """What the trainer needs from a runtime (see :class:`~.serial.SerialRun`)."""

    name: str
    learner: LearnerView

    @property
    def exact_resume(self) -> bool: ...

    @property
    def env_steps(self) -> int: ...

    @property
    def done(self) -> bool: ...

    def step(self) -> dict[str, float] | None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


#: ``--runtime`` choices: name -> factory taking the config. Add faster runtimes here.
RUNTIMES: dict[str, Callable[[TrainConfig], Runtime]] = {
    "serial": SerialRun,
    "local": LocalRun,
    "ray": RayRun,
}

#: Algorithms that bring their own runtime (``TrainConfig.algorithm`` -> its factory and the
#: ``--runtime`` names it accepts); ``impala`` runs on any of :data:`RUNTIMES`.
ALGORITHMS: dict[str, tuple[Callable[[TrainConfig], Runtime], tuple[str, ...]]] = {
    "a3c": (A3CRun, ("serial", "local")),
}

BASELINES = ("local_only", "maxweight")
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: Keys of metrics.jsonl and eval.jsonl lines that depend on wall-clock time (everything
#: else is exact).
TIME_KEYS = ("wall_s", "fps", "fps_runtime")
#: A runtime's own rate since it started is logged under this name, apart from the trainer's
#: ``fps`` (per second of training, the last window): for the local and Ray runtimes env steps
#: per wall-clock second, evaluation and checkpoint pauses included; for A3C per second of
#: stepping in this session.
RUNTIME_FPS = {"fps": "fps_runtime"}
#: Seconds between plain progress lines when the console is not a terminal (piped, logged),
#: where the live progress bar is off: without them a run with eval_interval=0 said nothing
#: until it ended.
PLAIN_PROGRESS_S = 30.0


class RunDirError(Exception):
    """A run directory that cannot be started or resumed (exists, or lacks its files)."""


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(json_safe(record), allow_nan=False)


# --- evaluation -----------------------------------------------------------------------------


def run_policy(cfg: TrainConfig, model: Any, weights: Sequence[float] | None = None) -> Any:
    """The deployed policy of a trained ``model`` on the env's own observations and actions:
    a :class:`TorchPolicy` (greedy, or with its discrete choice drawn where
    ``cfg.discrete_choice`` is ``sample``: a fresh generator at seed 0 each call, so every
    evaluation sees the same draws), held at objective weights ``weights`` when the run is
    preference-conditioned (default: the env's own scalarisation, ``config.weights``, scaled
    to sum to 1), its indices decoded for IMPALA-discrete (``cfg.discrete_levels``)."""
    from impala_hybrid.algos.discretised import DecodedPolicy
    from impala_hybrid.envs.preference import simplex_point
    from impala_hybrid.evaluation.policy import TorchPolicy, WithPreference
    from impala_hybrid.runtime.serial import make_env

    policy: Any = TorchPolicy(model, discrete_choice=cfg.discrete_choice)
    if cfg.preference == "none" and not cfg.discrete_levels:
        return policy
    probe = make_env(cfg, 1)
    if cfg.preference != "none":
        k, default = probe.num_objectives, probe.config.weights
        w = default if weights is None else weights
        policy = WithPreference(policy, simplex_point(w, k, "preference weights"))
    if cfg.discrete_levels:  # indices -> the env's own actions
        policy = DecodedPolicy(policy, probe.table)
    probe.close()
    return policy


def objective_names(cfg: TrainConfig) -> tuple[str, ...] | None:
    """The objectives whose weights end a preference-conditioned run's observations (None
    for other runs): the UAV env's ``OBJECTIVE_NAMES``, else ``objective_0, ...``."""
    from impala_hybrid.envs.config import OBJECTIVE_NAMES
    from impala_hybrid.runtime.serial import make_env

    if cfg.preference == "none":
        return None
    if cfg.env == UAVNET_ID:
        return OBJECTIVE_NAMES
    probe = make_env(cfg, 1)
    k = probe.num_objectives
    probe.close()
    return tuple(f"objective_{i}" for i in range(k))


class Evaluator:
    """Greedy evaluation on fixed seeds; baselines (UAV env only) computed once."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.uav = cfg.env == UAVNET_ID

    def _uav(self, policy: Any, name: str, per_episode: bool = False) -> dict[str, Any]:
        from impala_hybrid.envs.config import UAVNetConfig
        from impala_hybrid.evaluation.rollout import evaluate

        res = evaluate(
            policy,
            UAVNetConfig(**self.cfg.env_kwargs),
            episodes=1,
            num_envs=self.cfg.eval_episodes,
            seed=self.cfg.eval_seed,
            split="validation",  # selects the best checkpoint: never the reported "eval" seeds
            name=name,
        )
        return res.to_dict(per_episode=per_episode)

    def baselines(self) -> dict[str, dict[str, Any]]:
        """``name -> result`` of the classical policies on the evaluation seeds (UAV only)."""
        if not self.uav:
            return {}
        from impala_hybrid.envs.config import UAVNetConfig
        from impala_hybrid.envs.heuristics import make_heuristic

        env_cfg = UAVNetConfig(**self.cfg.env_kwargs)
        return {name: self._uav(make_heuristic(name, env_cfg), name) for name in BASELINES}

    def __call__(self, learner: LearnerView) -> dict[str, Any]:
        """:meth:`policy_result` of the learner's greedy policy (:func:`run_policy`)."""
        model = learner.model
        model.eval()
        try:
            return self.policy_result(run_policy(self.cfg, model))
        finally:
            model.train()

    def policy_result(self, policy: Any) -> dict[str, Any]:
        """A policy's return (mean, std) on the validation episodes and, on the UAV env, the
        full result; on other envs the mean episode length and the means of the numeric
        episode-end ``info`` keys (such as ``success``). Any policy callable (a Stable-
        Baselines3 baseline's too), so that every algorithm's checkpoints are chosen alike."""
        from impala_hybrid.evaluation.episodes import evaluate_episodes

        if self.uav:
            res = self._uav(policy, "impala", per_episode=True)
            per_episode = res.pop("per_episode")
            return {
                "return_mean": res["return"]["mean"],
                "return_std": res["return"]["std"],
                "episode_returns": per_episode["return"],
                "result": res,
            }
        episodes = evaluate_episodes(
            policy,
            self.cfg.env,
            self.cfg.eval_episodes,
            self.cfg.eval_seed,
            env_kwargs=self.cfg.env_kwargs,
            num_envs=min(self.cfg.eval_episodes, 8),
            split="validation",  # selects the best checkpoint, as on the UAV env
        )
        stats = episodes.summary()
        return {
            "return_mean": stats["return"]["mean"],
            "return_std": stats["return"]["std"],
            "episode_returns": episodes.returns.tolist(),
            "length_mean": stats["length"]["mean"],
            "info": stats["info"],
        }


# --- the trainer ----------------------------------------------------------------------------


@dataclasses.dataclass
class TrainerState:
    """The trainer's own counters; saved in every checkpoint next to the runtime state."""

    next_eval: int
    next_checkpoint: int
    last_eval_step: int = -1
    best_return: float | None = None
    # per-episode validation returns of the evaluation with the best mean (``best_return``):
    # what ``selection = paired`` compares each evaluation with
    best_returns: list[float] | None = None
    learner_steps: int = 0
    train_seconds: float = 0.0  # time spent in learner steps, all sessions
    # time spent in validations and checkpoints between learner steps, all sessions: the
    # local and Ray runtimes' actors keep filling their free slots meanwhile, so the learner
    # then trains a backlog faster than the actors make it (see the done line)
    pause_seconds: float = 0.0
    baselines: dict[str, Any] = dataclasses.field(default_factory=dict)
    cliff: dict[str, Any] = dataclasses.field(default_factory=dict)  # CliffWatch state


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}"


def done_rates(env_steps: int, train_s: float, pause_s: float, runtime: str) -> str:
    """The run's own training rate, all sessions, as the done line states it: env steps over
    training seconds (the figure ``make bench``'s end-to-end column is compared with;
    validations and checkpoints are not in ``train_seconds``). On the serial runtime nothing
    runs during those pauses, so that figure is the rate. On the others the actors keep
    filling their free slots meanwhile (the UAV preset's 16 slots ahead: 32,768 env steps a
    pause) and the learner then trains that backlog at its own speed, so where the actors
    are the bottleneck the figure overstates the rate (measured: 140k with a validation
    every 250k, 171k with one every 100k, 121k with none, the same run otherwise;
    docs/benchmarks.md); counting the pauses as training time understates it. Both are
    stated, the rate lying between them."""
    rate = env_steps / train_s if train_s > 0 else float("nan")
    text = f"{rate:,.0f} env steps/s"
    if runtime != "serial" and pause_s > 0:
        low = env_steps / (train_s + pause_s)
        text += (
            f"; {low:,.0f} with the {pause_s:.1f} s of validations and checkpoints counted, "
            "in which the actors run on: the rate lies between"
        )
    return text


def _next_multiple(steps: int, interval: int) -> int:
    return (steps // interval + 1) * interval


class Trainer:
    """Drives a runtime and owns the run directory (see the module docstring).

    Create with :func:`start_run` or :func:`resume_run`. ``on_step(trainer)`` runs after
    every learner step (tests use it to send a signal; it may call :meth:`request_stop`).
    ``evaluator`` replaces the config's own (population-based training ranks trials that
    perturb the objective weights with the base config's, so every score is on one scale).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        *,
        runtime: str = "serial",
        checkpoint: dict[str, Any] | None = None,
        console: Console | None = None,
        on_step: Callable[[Trainer], None] | None = None,
        evaluator: Evaluator | None = None,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
        self.cfg = cfg
        self.run_dir = run_dir
        self.runtime_name = runtime
        self.console = console or Console()
        self.on_step = on_step
        self.stop_signal: int | None = None
        self.evaluator = evaluator or Evaluator(cfg)
        self.last_eval: dict[str, Any] | None = None  # the latest eval.jsonl line
        self.runtime = self._make_runtime()
        self.resumed_from: int | None = None
        self.state = TrainerState(
            next_eval=cfg.eval_interval if cfg.eval_interval > 0 else -1,
            next_checkpoint=cfg.checkpoint_interval,
        )
        self.watch = CliffWatch()
        if checkpoint is not None:
            self._restore(checkpoint)
            self.resumed_from = self.runtime.env_steps
            if self.state.cliff:
                self.watch.load_state_dict(self.state.cliff)

    def _make_runtime(self) -> Runtime:
        factory = RUNTIMES[self.runtime_name]
        algorithm = self.cfg.algorithm
        if algorithm in ALGORITHMS:
            factory, accepted = ALGORITHMS[algorithm]
            if self.runtime_name not in accepted:
                raise ConfigError(
                    f"TrainConfig.algorithm = {algorithm!r} is invalid with runtime "
                    f"{self.runtime_name!r}: it runs its own worker processes; use runtime "
                    + " or ".join(repr(r) for r in accepted)
                )
        if self.cfg.serial_lag and (self.runtime_name != "serial" or algorithm != "impala"):
            raise ConfigError(
                f"TrainConfig.serial_lag = {self.cfg.serial_lag} is invalid with runtime "
                f"{self.runtime_name!r} and algorithm {algorithm!r}: it emulates policy lag "
                "in the serial runtime's IMPALA (other runtimes have a real lag); set it to 0"
            )
        try:
            return factory(self.cfg)
        except TypeError as e:  # e.g. env_kwargs the env's constructor does not take
            raise ConfigError(
                f"cannot make env {self.cfg.env!r} with env_kwargs {self.cfg.env_kwargs!r}: {e}"
            ) from None

    def _restore(self, ckpt: dict[str, Any]) -> None:
        path = self.run_dir / LAST
        name = ckpt.get("runtime")
        if name != self.runtime_name:
            raise CheckpointError(
                f"checkpoint {path} was written by runtime {name!r} and cannot continue under "
                f"{self.runtime_name!r}; drop --runtime (resume uses the checkpoint's runtime)"
            )
        try:
            self.runtime.load_state_dict(ckpt["state"])
            fields = {f.name for f in dataclasses.fields(TrainerState)}
            self.state = TrainerState(**{k: v for k, v in ckpt["trainer"].items() if k in fields})
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {path} does not fit this run's config ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else 'missing entry'})"
            ) from None

    # --- control ---

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop after the current learner step and write ``last.pt`` (as SIGINT does)."""
        if self.stop_signal is None:
            self.stop_signal = signum

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is not None:  # second signal: stop now (last.pt stays intact)
            raise KeyboardInterrupt
        self.stop_signal = signum

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set in the main thread
            return
        previous = {s: signal.signal(s, self._on_signal) for s in EXIT_STATUS}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # --- files ---

    def _payload(self) -> dict[str, Any]:
        self.state.cliff = self.watch.state_dict()
        return {
            "runtime": self.runtime_name,
            "config": config_to_dict(self.cfg),
            "env_steps": self.runtime.env_steps,
            "saved_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "state": self.runtime.state_dict(),
            "trainer": dataclasses.asdict(self.state),
        }

    def save(self, which: str = LAST) -> Path:
        return save_checkpoint(self.run_dir / which, self._payload())

    def _truncate_logs(self, env_steps: int) -> None:
        """Drop log lines written after the checkpoint being resumed (a crash after it)."""
        for name in (METRICS_FILE, EVAL_FILE):
            path = self.run_dir / name
            if not path.exists():
                continue
            keep = []
            for line in path.read_text().splitlines():
                try:
                    steps = json.loads(line).get("env_steps", 0)
                except (json.JSONDecodeError, AttributeError):
                    continue  # a line cut by the crash
                if steps is not None and steps <= env_steps:
                    keep.append(line)
            path.write_text("".join(f"{line}\n" for line in keep))

    # --- the loop ---

    def _evaluate(self, writer: Any, eval_log: Any) -> None:
        steps = self.runtime.env_steps
        result = self.evaluator(self.runtime.learner)
        st = self.state
        st.last_eval_step = steps
        ret = result["return_mean"]
        # wall_s: seconds of training so far (as in metrics.jsonl), for curves against time
        line: dict[str, Any] = {"env_steps": steps, "wall_s": round(st.train_seconds, 3), **result}
        if st.baselines:
            line["baselines"] = {k: v["return"]["mean"] for k, v in st.baselines.items()}
        self.last_eval = line
        stderr = result["return_std"] / math.sqrt(self.cfg.eval_episodes)
        warning = self.watch.on_eval(steps, ret, stderr)
        if warning is not None:
            line["warning"] = warning
        eval_log.write(_json_line(line) + "\n")
        eval_log.flush()
        writer.add_scalar("eval/return_mean", ret, steps)
        for k, v in line.get("baselines", {}).items():
            writer.add_scalar(f"eval/baseline_{k}", v, steps)
        for k, v in result.get("info", {}).items():
            writer.add_scalar(f"eval/info_{k}", v, steps)
        improved, st.best_return, st.best_returns = judge(
            self.cfg.selection, ret, result["return_std"], self.cfg.eval_episodes,
            st.best_return, result.get("episode_returns"), st.best_returns,
        )  # fmt: skip
        msg = f"eval @ {steps:,} steps: return {_fmt(ret)} ± {_fmt(result['return_std'])}"
        if result.get("info"):
            msg += "; " + ", ".join(f"{k} {_fmt(v)}" for k, v in result["info"].items())
        if "baselines" in line:
            msg += " (" + ", ".join(f"{k} {v:.2f}" for k, v in line["baselines"].items()) + ")"
        # escaped: rich would read "[best]" as a markup tag and print nothing
        self.console.print(escape(msg + (" [best]" if improved else "")))
        if warning is not None:
            self._warn(warning)
        if improved:
            self.save(BEST)

    def _warn(self, message: str) -> None:
        self.console.print(Text("warning: " + message, style="bold yellow"))

    def _periodic(self, writer: Any, eval_log: Any) -> None:
        """Evaluations and checkpoints due at the current step."""
        st, steps = self.state, self.runtime.env_steps
        if 0 <= st.next_eval <= steps:
            st.next_eval = _next_multiple(steps, self.cfg.eval_interval)
            self._evaluate(writer, eval_log)
        if st.next_checkpoint <= steps:
            st.next_checkpoint = _next_multiple(steps, self.cfg.checkpoint_interval)
            self.save(LAST)

    def _log(
        self, record: dict[str, float], writer: Any, metrics_log: Any, fps: float
    ) -> dict[str, Any]:
        # Two rates, one name each: ``fps`` is env steps per second of training over the last
        # window (what the progress line shows; evaluation and checkpoint pauses left out, as
        # in ``wall_s``); ``fps_runtime`` is the runtime's own figure since it started (see
        # RUNTIME_FPS). Both once wrote to ``fps``, the runtime's silently winning.
        fields = {RUNTIME_FPS.get(k, k): v for k, v in record.items() if k != "env_steps"}
        fields["fps"] = fps
        line = {
            "env_steps": int(record["env_steps"]),
            "learner_steps": self.state.learner_steps,
            "wall_s": round(self.state.train_seconds, 3),
            **{k: round(v, 1) if k in ("fps", "fps_runtime") else v for k, v in fields.items()},
        }
        metrics_log.write(_json_line(line) + "\n")
        metrics_log.flush()
        for k, v in fields.items():
            writer.add_scalar(f"train/{k}", v, line["env_steps"])
        return line

    def run(self, until: int | None = None) -> int:
        """Train to ``total_steps`` (or ``until`` env steps, if sooner: a pause, see the
        module docstring) or until a stop signal; returns the exit status."""
        from torch.utils.tensorboard import SummaryWriter

        cfg, rt, st = self.cfg, self.runtime, self.state
        if self.resumed_from is not None:
            self._truncate_logs(self.resumed_from)
            how = "exact" if rt.exact_resume else "envs restarted, not bit-exact"
            self.console.print(f"resuming {self.run_dir} at {rt.env_steps:,} env steps ({how})")
        else:
            trunk = ""  # which precision model.trunk_dtype = auto chose on this machine
            if cfg.model.trunk_dtype == "auto":
                trunk = f", trunk {resolve_trunk_dtype('auto')} (auto)"
            self.console.print(
                f"training {cfg.env} for {cfg.total_steps:,} env steps into {self.run_dir} "
                f"({cfg.algorithm}, runtime {self.runtime_name}, seed {cfg.seed}{trunk})"
            )
        purge = None if self.resumed_from is None else self.resumed_from + 1
        writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge)
        columns = (
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
            TextColumn("{task.fields[fps]} fps"),
            TextColumn("return {task.fields[ret]}"),
            TextColumn("lag {task.fields[lag]}"),
            TextColumn("eval {task.fields[eval]}"),
            TimeRemainingColumn(),
        )
        progress = Progress(*columns, console=self.console, disable=not self.console.is_terminal)
        task = progress.add_task(
            "train", total=cfg.total_steps, completed=rt.env_steps, fps="-", ret="-", lag="-",
            eval="-" if st.best_return is None else f"{st.best_return:.2f}",
        )  # fmt: skip
        try:
            with (
                torch_threads(cfg.torch_threads),
                self._signals(),
                progress,
                open(self.run_dir / METRICS_FILE, "a") as metrics_log,
                open(self.run_dir / EVAL_FILE, "a") as eval_log,
            ):
                if self.resumed_from is None and self.evaluator.uav:
                    st.baselines = self.evaluator.baselines()
                window_steps, window_time = rt.env_steps, 0.0
                last_line = time.monotonic()
                while self.stop_signal is None:
                    t_pause = time.perf_counter()
                    self._periodic(writer, eval_log)
                    st.pause_seconds += time.perf_counter() - t_pause
                    if rt.done or self.stop_signal is not None:
                        break
                    if until is not None and rt.env_steps >= until:
                        break
                    t0 = time.perf_counter()
                    record = rt.step()
                    dt = time.perf_counter() - t0
                    st.train_seconds += dt
                    window_time += dt
                    st.learner_steps += 1
                    if record is not None:
                        fps = (rt.env_steps - window_steps) / max(window_time, 1e-9)
                        window_steps, window_time = rt.env_steps, 0.0
                        self._log(record, writer, metrics_log, fps)
                        warning = self.watch.on_record(rt.env_steps, record.get("entropy"))
                        if warning is not None:
                            self._warn(warning)
                        ret = record.get("episode_return", math.nan)
                        progress.update(
                            task,
                            completed=rt.env_steps,
                            fps=f"{fps:,.0f}",
                            ret="-" if math.isnan(ret) else f"{ret:.2f}",
                            lag=f"{record.get('policy_lag_mean', 0.0):.1f}",
                            eval="-" if st.best_return is None else f"{st.best_return:.2f}",
                        )
                        if progress.disable and time.monotonic() - last_line >= PLAIN_PROGRESS_S:
                            last_line = time.monotonic()
                            self.console.print(
                                f"train {rt.env_steps:,}/{cfg.total_steps:,} env steps, "
                                f"{fps:,.0f} fps, return {_fmt(ret)}"
                            )
                    if self.on_step is not None:
                        self.on_step(self)
                if self.stop_signal is None and st.last_eval_step != rt.env_steps:
                    self._evaluate(writer, eval_log)
                self.save(LAST)
        finally:
            writer.close()
            rt.close()
        if self.stop_signal is not None:
            name = signal.Signals(self.stop_signal).name
            self.console.print(
                f"{name}: stopped at {rt.env_steps:,} env steps; wrote {self.run_dir / LAST}. "
                f"Continue with: impala-hybrid train --resume {self.run_dir}"
            )
            return EXIT_STATUS.get(signal.Signals(self.stop_signal), 130)
        if not rt.done:
            self.console.print(
                f"paused at {rt.env_steps:,} env steps (until {until:,}); wrote "
                f"{self.run_dir / LAST}"
            )
            return 0
        self.console.print(
            f"done: {rt.env_steps:,} env steps in {st.train_seconds:.1f} s of training "
            f"({done_rates(rt.env_steps, st.train_seconds, st.pause_seconds, self.runtime_name)}"
            f"); best eval return {_fmt(st.best_return)}; run directory {self.run_dir}"
        )
        return 0


# --- entry points -----------------------------------------------------------------------------


def start_run(
    cfg: TrainConfig,
    out: str | Path,
    *,
    runtime: str = "serial",
    console: Console | None = None,
    on_step: Callable[[Trainer], None] | None = None,
    evaluator: Evaluator | None = None,
) -> Trainer:
    """A new run in ``out``, which must not exist or be empty; writes ``config.yaml``."""
    run_dir = Path(out)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise RunDirError(
            f"--out {run_dir} exists and is not empty: continue it with --resume {run_dir} "
            "or choose a new directory"
        )
    trainer = Trainer(
        cfg, run_dir, runtime=runtime, console=console, on_step=on_step, evaluator=evaluator
    )
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / CONFIG_FILE)
    return trainer


def resume_run(
    run_dir: str | Path,
    *,
    overrides: tuple[str, ...] | list[str] = (),
    runtime: str | None = None,
    console: Console | None = None,
    on_step: Callable[[Trainer], None] | None = None,
) -> Trainer:
    """Continue the run in ``run_dir`` from ``config.yaml`` and ``checkpoints/last.pt``.

    ``overrides`` (``--set``) may change the config, e.g. raise ``total_steps``; fields that
    differ from the checkpoint's config are reported, and the continuation is then no longer
    the uninterrupted run's. A changed model shape fails as a :class:`CheckpointError`.
    ``runtime`` defaults to the one that wrote the checkpoint (its state only loads there), so
    the ``--resume RUN_DIR`` a stopped run prints works whatever runtime it ran on. A run that
    already reached ``total_steps`` is refused with a :class:`RunDirError` saying how to
    extend it, rather than "resumed" into doing nothing.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise RunDirError(f"--resume {run_dir}: no {CONFIG_FILE} there (not a run directory)")
    last = run_dir / LAST
    if not last.is_file():
        raise RunDirError(
            f"--resume {run_dir}: no {LAST} (the run stopped before its first checkpoint); "
            "start it again in a new directory"
        )
    cfg = load_config(config_path, overrides=overrides)
    ckpt = load_checkpoint(last)
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"checkpoint {last} has no config")
    try:
        saved = config_from_dict(ckpt["config"], source=f"{last} config")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    done_steps = ckpt.get("env_steps")
    if isinstance(done_steps, int) and done_steps >= cfg.total_steps:
        raise RunDirError(
            f"--resume {run_dir}: the run is finished ({done_steps:,} of total_steps = "
            f"{cfg.total_steps:,} env steps); to train further raise it, e.g. "
            f"--set total_steps={2 * cfg.total_steps}"
        )
    if runtime is None:
        runtime = str(ckpt.get("runtime", "serial"))
    c = console or Console()
    changed = _diff(config_to_dict(saved), config_to_dict(cfg))
    if changed:
        c.print(f"note: config differs from the checkpoint's: {'; '.join(changed)}")
        save_config(cfg, config_path)
    return Trainer(cfg, run_dir, runtime=runtime, checkpoint=ckpt, console=c, on_step=on_step)


def load_run_model(run_dir: str | Path, checkpoint: str = "best") -> tuple[TrainConfig, Any]:
    """The trained model of a run directory: ``(config, ActorCritic)`` in eval mode.

    ``checkpoint`` is ``"best"`` (the best evaluation; falls back to ``"last"`` when the run
    never evaluated) or ``"last"``. Errors name the directory and what is missing.
    """
    from impala_hybrid.experiments.spec import reward_setup
    from impala_hybrid.runtime.serial import build_model, make_env

    if checkpoint not in ("best", "last"):
        raise RunDirError(f"checkpoint {checkpoint!r} is invalid: must be 'best' or 'last'")
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise RunDirError(f"{run_dir}: no {CONFIG_FILE} there (not a run directory)")
    path = run_dir / (BEST if checkpoint == "best" else LAST)
    if checkpoint == "best" and not path.is_file():
        path = run_dir / LAST
    if not path.is_file():
        raise RunDirError(f"{run_dir}: no checkpoint ({BEST} or {LAST}) to load")
    cfg = load_config(config_path)
    state = load_checkpoint(path).get("state", {})
    try:
        model_state = state["learner"]["model"]
    except (KeyError, TypeError):
        raise CheckpointError(f"checkpoint {path} holds no learner model") from None
    env = make_env(cfg, 1)
    _, weights = reward_setup(cfg, env)
    model = build_model(cfg, env, len(weights))
    env.close()
    try:
        model.load_state_dict(model_state)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not fit {config_path}: {e}") from None
    return cfg, model.eval()


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(_diff(va, vb, f"{prefix}{k}."))
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out
