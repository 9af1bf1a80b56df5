"""Train a Stable-Baselines3 baseline (A2C, PPO, SAC, TD3) and save it; load it back.

What SB3 does for us: the algorithms, their networks, rollout and replay buffers, GAE, target
networks, entropy tuning, gSDE, seeding (``set_random_seed``: Python, NumPy, torch, and
``env.seed``), the training loop, and ``model.zip``. We use it unmodified, so the baselines
are the reference implementations, not our re-implementations.

What we write by hand, and why:

* the env side (``relaxation.py``, ``vec_env.py``): SB3 cannot act in a hybrid space, and its
  ``DummyVecEnv`` would step our batched simulator one env at a time;
* :func:`sb3_kwargs`: the typed config's hyperparameters as SB3 arguments (the zoo's
  ``lin_<x>`` schedules and ``noise_std``, which the zoo's own loader translates too);
* the run directory, so a baseline's run is read like any other: ``model.zip`` (SB3's),
  ``sb3_config.yaml`` (:class:`~impala_hybrid.algos.sb3.config.SB3Config`, reloadable),
  ``monitor.csv`` (SB3's ``VecMonitor``: return, length and wall time of every training
  episode), ``run.json`` (env steps and seconds of training) and, with ``normalize``,
  ``vecnormalize.pkl`` (SB3's running statistics, which the policy needs);
* :class:`ValidationCallback`: greedy evaluations during training on the validation episodes,
  written to ``eval.jsonl`` as the trainer writes ours (``env_steps``, ``wall_s`` of training
  without the evaluations, ``return_mean``, ``return_std``), and the best one kept as
  ``best_model.zip`` (with ``best_vecnormalize.pkl``), chosen by the trainer's own rule
  (``evaluation.selection.is_new_best``). SB3's ``EvalCallback`` does the same on a Gym env with
  SB3's ``evaluate_policy``; ours uses our evaluation (common random numbers, the same
  validation seeds as every other algorithm), so the checkpoints are chosen alike.

Evaluation is ours (``policy.py``), not SB3's ``evaluate_policy``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize

from impala_hybrid.algos.sb3.config import SB3Config, linear_schedule
from impala_hybrid.algos.sb3.policy import SB3Policy
from impala_hybrid.algos.sb3.relaxation import Relaxation
from impala_hybrid.algos.sb3.vec_env import RelaxedVecEnv
from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.evaluation.selection import DEFAULT_SELECTION, check_selection, judge
from impala_hybrid.jsonsafe import json_safe
from impala_hybrid.threads import torch_threads

_CLASSES: dict[str, type[BaseAlgorithm]] = {"a2c": A2C, "ppo": PPO, "sac": SAC, "td3": TD3}
MODEL_FILE, CONFIG_FILE, MONITOR_FILE, RUN_FILE, NORMALIZE_FILE = (
    "model.zip", "sb3_config.yaml", "monitor.csv", "run.json", "vecnormalize.pkl",
)  # fmt: skip
BEST_PREFIX, EVAL_FILE = "best_", "eval.jsonl"

#: ``make_env(num_envs) -> vector env`` (``SAME_STEP`` autoreset, as ``envs.factory`` makes).
EnvFactory = Callable[[int], gym.vector.VectorEnv]


def algorithm_class(algo: str) -> type[BaseAlgorithm]:
    """The SB3 class of an ``SB3Config.algo`` name."""
    return _CLASSES[algo]


@dataclasses.dataclass
class SB3Run:
    """A trained (or loaded) baseline: its config, the SB3 model, and the model as a policy."""

    config: SB3Config
    model: BaseAlgorithm
    policy: SB3Policy
    env_steps: int
    seconds: float


def default_env_factory(cfg: SB3Config) -> EnvFactory:
    """``cfg.env`` with ``cfg.env_kwargs`` through ``envs.factory.make_vector_env`` (the UAV
    env's native batched vector env; ``SyncVectorEnv`` of copies for any other)."""
    return lambda n: make_vector_env(cfg.env, n, cfg.env_kwargs)


def sb3_kwargs(cfg: SB3Config, action_space: gym.Space[Any]) -> dict[str, Any]:
    """SB3 constructor arguments of ``cfg`` for an env acting in ``action_space``."""
    kwargs: dict[str, Any] = {k: linear_schedule(v) for k, v in cfg.resolved_hyperparams().items()}
    noise_std = kwargs.pop("noise_std", None)
    if noise_std is not None:
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"noise_std needs a Box action space, got {action_space}")
        dim = int(np.prod(action_space.shape))
        kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), np.full(dim, float(noise_std)))
    return kwargs


def make_sb3_env(
    cfg: SB3Config, make_env: EnvFactory | None = None, monitor: str | None = None
) -> VecEnv:
    """``VecMonitor(RelaxedVecEnv(make_env(cfg.num_envs)))`` (``monitor``: its CSV path),
    behind ``VecNormalize`` with ``cfg.normalize`` (outside the monitor, so the monitor logs
    the env's own rewards).

    VecNormalize keeps SB3's defaults, including ``gamma = 0.99`` for the return statistics
    that scale rewards. The zoo's loader passes the algorithm's gamma instead; for its A2C
    Pendulum-v1 entry (gamma 0.9) that gave a greedy return of -922.7 on seed 0 here, against
    -161.5 with 0.99 (the zoo's benchmark table: -163.0).
    """
    venv = (make_env or default_env_factory(cfg))(cfg.num_envs)
    env: VecEnv = VecMonitor(RelaxedVecEnv(venv, relax=cfg.action_space == "relaxed"), monitor)
    return VecNormalize(env) if cfg.normalize else env


def _relaxation(env: VecEnv) -> Relaxation | None:
    inner = env.unwrapped
    assert isinstance(inner, RelaxedVecEnv)
    return inner.relaxation


def _policy(model: BaseAlgorithm, env: VecEnv, name: str) -> SB3Policy:
    """``model`` as a greedy policy behind ``env``'s relaxation and normaliser (whose
    statistics ``normalize_obs`` reads without updating them)."""
    normalizer = env if isinstance(env, VecNormalize) else None
    return SB3Policy(model, _relaxation(env), normalizer=normalizer, name=name)


class ValidationCallback(BaseCallback):
    """Greedy evaluations every ``every`` env steps and at the end (module docstring).

    ``evaluate(policy) -> (mean, std, result)``: the validation return of a policy, its
    sample std over the ``episodes`` episodes, and a JSON-able detail kept in the line; the
    detail's ``episode_returns`` (each episode's return, the same episodes every call), where
    present, let ``selection = paired`` judge each evaluation against the best one episode by
    episode, as the trainer does (``evaluation.selection.judge``).
    """

    def __init__(
        self,
        evaluate: Callable[[SB3Policy], tuple[float, float, dict[str, Any]]],
        every: int,
        episodes: int,
        out_dir: str | Path,
        selection: str = DEFAULT_SELECTION,
    ) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every = {every} is invalid: must be >= 1 env step")
        self.evaluate, self.every, self.episodes = evaluate, every, episodes
        self.selection = check_selection(selection)  # before training, not at its first check
        self.out = Path(out_dir)
        self.best: float | None = None
        self.best_returns: list[float] | None = None
        self.next_eval = every
        self.last_eval = -1
        self.eval_seconds = 0.0
        self.start = 0.0

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()
        (self.out / EVAL_FILE).write_text("")

    def _evaluate(self) -> None:
        t0 = time.perf_counter()
        wall = t0 - self.start - self.eval_seconds
        env = self.model.get_env()
        assert env is not None
        mean, std, result = self.evaluate(_policy(self.model, env, "sb3"))
        steps = int(self.model.num_timesteps)
        line = {"env_steps": steps, "wall_s": round(wall, 3), "return_mean": mean,
                "return_std": std, "result": result}  # fmt: skip
        with (self.out / EVAL_FILE).open("a") as f:
            f.write(json.dumps(json_safe(line), allow_nan=False) + "\n")
        improved, self.best, self.best_returns = judge(
            self.selection, mean, std, self.episodes, self.best,
            result.get("episode_returns"), self.best_returns,
        )  # fmt: skip
        if improved:
            self.model.save(self.out / (BEST_PREFIX + MODEL_FILE))
            if isinstance(env, VecNormalize):
                env.save(str(self.out / (BEST_PREFIX + NORMALIZE_FILE)))
        self.last_eval = steps
        self.eval_seconds += time.perf_counter() - t0

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self.next_eval:
            self._evaluate()
            while self.next_eval <= self.model.num_timesteps:
                self.next_eval += self.every
        return True

    def _on_training_end(self) -> None:
        if self.last_eval < self.model.num_timesteps:
            self._evaluate()

    @property
    def train_seconds(self) -> float:
        """Seconds of training so far, without the evaluations."""
        return time.perf_counter() - self.start - self.eval_seconds


def train_sb3(
    cfg: SB3Config,
    make_env: EnvFactory | None = None,
    out_dir: str | Path | None = None,
    callback: BaseCallback | None = None,
) -> SB3Run:
    """Train ``cfg`` for ``cfg.total_steps`` env steps; with ``out_dir``, write the run there.

    ``make_env(n)`` builds the vector env (default: :func:`default_env_factory`).
    ``callback``: SB3's, e.g. :class:`ValidationCallback` (``run.json``'s seconds then leave
    its evaluations out). Deterministic on CPU for a given seed (SB3 seeds everything it
    samples from).
    """
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    env = make_sb3_env(cfg, make_env, str(out / MONITOR_FILE) if out is not None else None)
    start = time.perf_counter()
    try:
        with torch_threads(cfg.torch_threads):
            model = algorithm_class(cfg.algo)(
                "MlpPolicy", env, seed=cfg.seed, device="cpu", verbose=0,
                **sb3_kwargs(cfg, env.action_space),
            )  # fmt: skip
            model.learn(total_timesteps=cfg.total_steps, callback=callback)
    finally:
        env.close()
    seconds = time.perf_counter() - start
    if isinstance(callback, ValidationCallback):
        seconds = callback.train_seconds
    if isinstance(env, VecNormalize):
        env.training = False  # frozen statistics from here on
    policy = _policy(model, env, f"sb3:{cfg.algo}")
    run = SB3Run(cfg, model, policy, int(model.num_timesteps), seconds)
    if out is not None:
        model.save(out / MODEL_FILE)
        if isinstance(env, VecNormalize):
            env.save(str(out / NORMALIZE_FILE))
        save_config(cfg, out / CONFIG_FILE)
        info = {"algo": cfg.algo, "env_steps": run.env_steps, "seconds": round(seconds, 3)}
        (out / RUN_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return run


def save_config(cfg: SB3Config, path: str | Path) -> None:
    """``cfg`` as YAML (:func:`load_config` reads it back equal)."""
    Path(path).write_text(yaml.safe_dump(json_safe(dataclasses.asdict(cfg)), sort_keys=False))


def load_config(path: str | Path) -> SB3Config:
    """The :class:`SB3Config` :func:`save_config` wrote (validated again)."""
    data = yaml.safe_load(Path(path).read_text())
    return SB3Config(**data)


def load_sb3(run_dir: str | Path, checkpoint: str = "last") -> SB3Run:
    """A run :func:`train_sb3` wrote, with its policy ready for our evaluation.

    ``checkpoint``: ``"last"`` (the model at the end) or ``"best"`` (the best validation
    evaluation of a :class:`ValidationCallback`; the last model when there is none).
    """
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint {checkpoint!r} is invalid: must be 'best' or 'last'")
    run = Path(run_dir)
    cfg = load_config(run / CONFIG_FILE)
    prefix = (
        BEST_PREFIX if checkpoint == "best" and (run / (BEST_PREFIX + MODEL_FILE)).is_file() else ""
    )
    model = algorithm_class(cfg.algo).load(run / (prefix + MODEL_FILE), device="cpu")
    # One env of the run's kind: its relaxation, and the spaces VecNormalize.load checks.
    env = RelaxedVecEnv(
        make_vector_env(cfg.env, 1, cfg.env_kwargs), relax=cfg.action_space == "relaxed"
    )
    normalizer = None
    if cfg.normalize:
        normalizer = VecNormalize.load(str(run / (prefix + NORMALIZE_FILE)), env)
        normalizer.training = False
    env.close()
    info = json.loads((run / RUN_FILE).read_text())
    policy = SB3Policy(model, env.relaxation, normalizer=normalizer, name=f"sb3:{cfg.algo}")
    return SB3Run(cfg, model, policy, int(info["env_steps"]), float(info["seconds"]))
