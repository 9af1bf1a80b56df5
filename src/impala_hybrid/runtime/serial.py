"""The serial runtime: one process alternating actor unrolls and learner steps.

It is the reference the faster runtimes are checked against: with a fixed seed, two runs give
identical metrics (sampling uses the actor's own ``torch.Generator``, envs are seeded, the
learner runs single-threaded by default). The actor acts with the learner's own model, so the
policy lag is zero and V-trace's ratios are exactly one on the first pass over an unroll.

Wiring (the whole data flow of this runtime):

    env (SAME_STEP vector env) -> Actor.unroll(version) -> Batch [T, B] -> Learner.step
    -> metrics; the actor's next unroll sees the updated weights (same module).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from impala_hybrid.algos.impala.actor import Actor
from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.experiments.spec import TrainConfig, reward_setup
from impala_hybrid.models.actor_critic import ActorCritic
from impala_hybrid.models.spaces import action_spec, obs_dim
from impala_hybrid.types import Batch


@dataclasses.dataclass
class TrainResult:
    """What a run leaves behind in memory."""

    learner: Learner
    history: list[dict[str, float]]  # one record per log interval
    episode_returns: list[float]  # every completed training episode, in order

    @property
    def model(self) -> ActorCritic:
        return self.learner.model


def build(cfg: TrainConfig) -> tuple[Any, Learner, Actor]:
    """Env, learner and actor for ``cfg`` (seeded)."""
    torch.manual_seed(cfg.seed)
    env = make_vector_env(cfg.env, cfg.num_envs, cfg.env_kwargs)
    spec = action_spec(
        env.single_action_space,
        continuous_kind=cfg.model.continuous_kind,  # type: ignore[arg-type]
        hybrid_mode=cfg.model.hybrid_mode,  # type: ignore[arg-type]
    )
    reward_fn, weights = reward_setup(cfg, env)
    model = ActorCritic(obs_dim(env.single_observation_space), spec, cfg.model, len(weights))
    learner = Learner(model, cfg.algo, total_samples=cfg.total_steps, reward_weights=weights)
    actor = Actor(
        env,
        learner.model,
        cfg.algo.unroll_length,
        seed=cfg.seed,
        reward_fn=reward_fn,
        num_rewards=len(weights),
    )
    return env, learner, actor


Callback = Callable[[dict[str, float], Learner], None]


def train_serial(cfg: TrainConfig, callback: Callback | None = None) -> TrainResult:
    """Train until ``cfg.total_steps`` env steps.

    ``callback(record, learner)`` runs after each progress record (every ``log_interval``
    learner steps and at the end): for logging, evaluation or early stopping by exception.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    try:
        env, learner, actor = build(cfg)
        per_step = cfg.algo.batch_size // cfg.num_envs
        history: list[dict[str, float]] = []
        returns: list[float] = []
        window: list[float] = []
        sums: dict[str, float] = {}
        count = 0
        while learner.samples < cfg.total_steps:
            parts = [actor.unroll(learner.version) for _ in range(per_step)]
            metrics = learner.step(parts[0] if per_step == 1 else Batch.concat(parts))
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            ep_returns, _ = actor.drain_episodes()
            returns.extend(ep_returns)
            window.extend(ep_returns)
            if count == cfg.log_interval or learner.samples >= cfg.total_steps:
                record = {k: v / count for k, v in sums.items()}
                record["env_steps"] = float(learner.samples)
                record["episodes"] = float(len(returns))
                record["episode_return"] = float(np.mean(window)) if window else float("nan")
                history.append(record)
                if callback is not None:
                    callback(record, learner)
                sums, count, window = {}, 0, []
        env.close()
        return TrainResult(learner, history, returns)
    finally:
        torch.set_num_threads(threads)
