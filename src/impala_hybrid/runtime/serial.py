"""The serial runtime: one process alternating actor unrolls and learner steps.

It is the reference the faster runtimes are checked against: with a fixed seed, two runs give
identical metrics (sampling uses the actor's own ``torch.Generator``, envs are seeded, the
learner runs single-threaded by default). The actor acts with the learner's own model, so the
policy lag is zero and V-trace's ratios are exactly one on the first pass over an unroll.

``TrainConfig.serial_lag = k`` gives the actor its own copy of the model holding the weights
of ``k`` learner steps ago instead (:class:`LaggedWeights`): the off-policy data of an
actor-learner layout whose actors run ``k`` updates behind, without its timing, so that
V-trace's clipping (``rho_bar``, ``c_bar``, per-component ratios) can be studied
reproducibly. An IMPALA actor's lag varies with timing (the local runtime's is ~15 updates
for the preset); this one is fixed.

Wiring (the whole data flow of this runtime):

    env (SAME_STEP vector env) -> Actor.unroll(version) -> Batch [T, B] -> Learner.step
    -> metrics; the actor's next unroll sees the updated weights (same module).

:class:`SerialRun` is that loop as an object stepped one learner step at a time, with
``state_dict``/``load_state_dict`` at learner-step boundaries for checkpoints;
:func:`train_serial` drives it to the end in memory.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from impala_hybrid.algos.comm import Comm
from impala_hybrid.algos.discretised import DiscretisedVectorEnv
from impala_hybrid.algos.impala.actor import Actor
from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.envs.preference import PreferenceVectorEnv
from impala_hybrid.models.actor_critic import ActorCritic
from impala_hybrid.models.spaces import action_spec, obs_dim
from impala_hybrid.models.zones import ZoneStructure
from impala_hybrid.runtime.allocator import keep_freed_memory
from impala_hybrid.runtime.config import TrainConfig, constraint_components, reward_setup
from impala_hybrid.runtime.progress import Budget, Progress
from impala_hybrid.runtime.replay import UnrollReplay
from impala_hybrid.threads import torch_threads
from impala_hybrid.types import Batch
from impala_hybrid.validation import ConfigError


@dataclasses.dataclass
class TrainResult:
    """What a run leaves behind in memory."""

    learner: Learner
    history: list[dict[str, float]]  # one record per log interval
    episode_returns: list[float]  # every completed training episode, in order

    @property
    def model(self) -> ActorCritic:
        return self.learner.model


def build_model(cfg: TrainConfig, env: Any, num_values: int) -> ActorCritic:
    """The network ``cfg.model`` describes for ``env``'s spaces, with ``num_values`` values."""
    spec = action_spec(
        env.single_action_space,
        continuous_kind=cfg.model.continuous_kind,  # type: ignore[arg-type]
        hybrid_mode=cfg.model.hybrid_mode,  # type: ignore[arg-type]
    )
    raw = getattr(env, "zone_structure", None)  # declared by envs with interchangeable zones
    zones = ZoneStructure(**raw) if raw is not None else None
    return ActorCritic(
        obs_dim(env.single_observation_space),
        spec,
        cfg.model,
        num_values,
        zones,
        action_advantages=cfg.algo.discrete_pg == "expected",
        action_critic=cfg.algo.continuous_pg != "sampled",
    )


def build_initial_model(cfg: TrainConfig, env: Any, num_values: int) -> ActorCritic:
    """:func:`build_model` for a new run: behaviour-cloned from ``cfg.warm_start`` if set
    (``algos/impala/warm_start.py``). A resumed run then loads its checkpoint over it."""
    model = build_model(cfg, env, num_values)
    if cfg.warm_start is not None:
        from impala_hybrid.algos.impala.warm_start import behaviour_clone, collect_demonstrations

        demos = collect_demonstrations(
            cfg.warm_start, cfg.env_kwargs, cfg.warm_start_steps, seed=cfg.seed + 7919
        )
        behaviour_clone(model, *demos, updates=cfg.warm_start_updates, seed=cfg.seed)
    return model


def make_env(
    cfg: TrainConfig, num_envs: int, *, seed: int = 0, preference: Sequence[float] | None = None
) -> Any:
    """``cfg``'s vector env of ``num_envs`` copies (``envs.factory.make_vector_env``), and
    for a preference-conditioned run (``cfg.preference``) wrapped so that each episode's
    objective weights are drawn (seeded by ``seed``) or fixed to ``preference``, and appended
    to the observations (``envs/preference.py``), and for IMPALA-discrete
    (``cfg.discrete_levels``) with discretised actions (``algos/discretised.py``). Every
    runtime makes its envs here."""
    env = make_vector_env(cfg.env, num_envs, cfg.env_kwargs)
    if cfg.preference == "none" and preference is not None:
        raise ConfigError(
            "preference weights are for a run trained with TrainConfig.preference = "
            f"'dirichlet'; this one has {cfg.preference!r}"
        )
    if cfg.preference != "none":
        own = getattr(getattr(env, "config", None), "weights", None)  # None: the wrapper says
        center = own if cfg.preference_center == "env" else None
        env = PreferenceVectorEnv(
            env, alpha=cfg.preference_alpha, center=center, fixed=preference, seed=seed
        )
    if cfg.discrete_levels:  # IMPALA-discrete
        env = DiscretisedVectorEnv(env, cfg.discrete_levels)
    return env


def preference_dims(cfg: TrainConfig, env: Any) -> int:
    """How many trailing observation entries are objective weights (0 without preference
    conditioning)."""
    return int(getattr(env, "num_objectives", 0)) if cfg.preference != "none" else 0


def build_learner(
    cfg: TrainConfig,
    env: Any,
    *,
    comm: Comm | None = None,
    device: torch.device | str = "cpu",
    warm: bool = True,
    kind: type[Learner] = Learner,
    **extra: Any,
) -> Learner:
    """The learner of ``cfg`` for ``env``'s spaces, the one place every runtime makes one:
    its model (:func:`build_initial_model`: warm-started if configured, unless ``warm`` is
    False or this is not rank 0 of ``comm``, whose weights then overwrite these), the
    reward components' weights and the constraint components (``runtime.config``).
    ``kind``: the learner class (A3C's subclass, ``algos/a3c``), given ``extra`` too."""
    _, weights = reward_setup(cfg, env)
    rank0 = comm is None or comm.rank == 0
    model = (build_initial_model if warm and rank0 else build_model)(cfg, env, len(weights))
    return kind(
        model,
        cfg.algo,
        total_samples=cfg.total_steps,
        reward_weights=weights,
        device=device,
        comm=comm,
        constraints=constraint_components(cfg, env),
        preference_dims=preference_dims(cfg, env),
        **extra,
    )


def build(cfg: TrainConfig) -> tuple[Any, Learner, Actor]:
    """Env, learner and actor for ``cfg`` (seeded). The actor acts with the learner's model,
    or with a copy of it when ``cfg.serial_lag`` asks for lagged weights."""
    keep_freed_memory()
    torch.manual_seed(cfg.seed)
    env = make_env(cfg, cfg.num_envs, seed=cfg.seed)
    reward_fn, weights = reward_setup(cfg, env)
    learner = build_learner(cfg, env)
    actor = Actor(
        env,
        copy.deepcopy(learner.model) if cfg.serial_lag else learner.model,
        cfg.algo.unroll_length,
        seed=cfg.seed,
        reward_fn=reward_fn,
        num_rewards=len(weights),
        desync_steps=cfg.desync_episodes,
    )
    return env, learner, actor


Callback = Callable[[dict[str, float], Learner], None]


def make_replay(cfg: TrainConfig) -> UnrollReplay | None:
    """The replay buffer ``cfg.algo`` asks for, or None when replay is off."""
    if cfg.algo.replay_proportion <= 0.0:
        return None
    return UnrollReplay(cfg.algo.replay_proportion, cfg.algo.replay_capacity, seed=cfg.seed)


class LaggedWeights:
    """The learner's weights of ``lag`` steps ago, for an actor's own model.

    Keeps the last ``lag + 1`` snapshots of the learner model's state (weights and buffers,
    e.g. observation-normalisation statistics), newest last; :meth:`sync` loads the oldest into
    the actor's model. Before ``lag`` updates have happened the oldest is the initial model,
    as for actors that started with the first weights.
    """

    def __init__(self, learner: Learner, target: torch.nn.Module, lag: int) -> None:
        self.learner, self.target, self.lag = learner, target, lag
        self.snapshots: deque[tuple[int, dict[str, torch.Tensor]]] = deque(maxlen=lag + 1)
        self.record()

    def record(self) -> None:
        """Snapshot the learner's current weights (after each learner step)."""
        state = {k: v.detach().clone() for k, v in self.learner.model.state_dict().items()}
        self.snapshots.append((self.learner.version, state))

    def sync(self) -> int:
        """Load the oldest snapshot into the actor's model; its version (the
        ``policy_version`` the unroll records, so the learner's ``policy_lag`` reads ``lag``)."""
        version, state = self.snapshots[0]
        self.target.load_state_dict(state)
        return version

    def state_dict(self) -> list[tuple[int, dict[str, torch.Tensor]]]:
        return list(self.snapshots)

    def load_state_dict(self, snapshots: list[tuple[int, dict[str, torch.Tensor]]]) -> None:
        self.snapshots.clear()
        self.snapshots.extend((int(v), s) for v, s in snapshots)


class SerialRun(Budget):
    """The serial training loop as an object: one learner step per :meth:`step`.

    Why an object: the run-directory layer (``experiments/trainer.py``) interleaves evaluation,
    checkpoints and signal handling between learner steps, and a checkpoint must capture the
    loop's own accumulators (the partial progress record), not only the learner and actor.
    :meth:`state_dict` at a learner-step boundary, loaded into a fresh ``SerialRun`` of the
    same config, continues exactly as the original would have on the native UAV env; on
    other envs the actor restarts its envs (see :meth:`Actor.load_state_dict`).
    """

    name = "serial"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.env, self.learner, self.actor = build(cfg)
        self.per_step = cfg.algo.batch_size // cfg.num_envs
        self.returns: list[float] = []  # episode returns completed in this process
        self.progress = Progress(cfg.log_interval)
        self.replay = make_replay(cfg)
        self.lagged = (
            LaggedWeights(self.learner, self.actor.model, cfg.serial_lag)
            if cfg.serial_lag
            else None
        )

    @property
    def exact_resume(self) -> bool:
        """True where :meth:`load_state_dict` restores the env exactly (the native UAV env)."""
        return callable(getattr(self.env, "set_state", None))

    def step(self) -> dict[str, float] | None:
        """One learner step; the progress record when one is due (every ``log_interval``
        learner steps and at the last step), else None."""
        actor, learner = self.actor, self.learner
        version = learner.version if self.lagged is None else self.lagged.sync()
        parts = [actor.unroll(version) for _ in range(self.per_step)]
        batch = parts[0] if self.per_step == 1 else Batch.concat(parts)
        fresh = batch.unroll_length * batch.batch_size
        if self.replay is not None:
            batch = self.replay.mix(batch)
        metrics = learner.step(batch, env_steps=fresh)
        if self.lagged is not None:
            self.lagged.record()
        ep_returns, _ = actor.drain_episodes()
        self.returns.extend(ep_returns)
        self.progress.add(metrics, ep_returns)
        return self.progress.record(learner.samples, last=self.done)

    def state_dict(self) -> dict[str, Any]:
        """Learner, actor (and env), global RNG states and the loop's accumulators."""
        return {
            "learner": self.learner.state_dict(),
            "actor": self.actor.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": _numpy_rng_state(),
                "python": _python_rng_state(),
            },
            "loop": self.progress.state_dict(),
            "replay": self.replay.state_dict() if self.replay is not None else None,
            "lagged": self.lagged.state_dict() if self.lagged is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["learner"])
        self.actor.load_state_dict(state["actor"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(_numpy_rng_from(rng["numpy"]))  # noqa: NPY002 (the global state)
        random.setstate(_python_rng_from(rng["python"]))
        self.progress.load_state_dict(state["loop"])
        if self.replay is not None and state.get("replay") is not None:
            self.replay.load_state_dict(state["replay"])
        if self.lagged is not None:
            if state.get("lagged") is None:
                self.lagged.snapshots.clear()  # a checkpoint without lag: start it from here
                self.lagged.record()
            else:
                self.lagged.load_state_dict(state["lagged"])

    def close(self) -> None:
        self.env.close()


def _numpy_rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # noqa: NPY002
    return {"name": name, "keys": keys, "pos": int(pos), "has_gauss": has_gauss, "gauss": gauss}


def _numpy_rng_from(d: dict[str, Any]) -> tuple[Any, ...]:
    keys = np.asarray(d["keys"], np.uint32)
    return (str(d["name"]), keys, int(d["pos"]), int(d["has_gauss"]), float(d["gauss"]))


def _python_rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": list(internal), "gauss": gauss}


def _python_rng_from(d: dict[str, Any]) -> tuple[Any, ...]:
    return (int(d["version"]), tuple(int(x) for x in d["internal"]), d["gauss"])


def run_to_completion(
    make_run: Callable[[TrainConfig], Any], cfg: TrainConfig, callback: Callback | None = None
) -> TrainResult:
    """Step a runtime object (``SerialRun``, ``LocalRun``) until its budget is spent.

    ``callback(record, learner)`` runs after each progress record (every ``log_interval``
    learner steps and at the end): for logging, evaluation or early stopping by exception.
    The runtime is closed (processes stopped) however the loop ends.
    """
    with torch_threads(cfg.torch_threads):
        run = make_run(cfg)
        history: list[dict[str, float]] = []
        try:
            while not run.done:
                record = run.step()
                if record is not None:
                    history.append(record)
                    if callback is not None:
                        callback(record, run.learner)
        finally:
            run.close()
        return TrainResult(run.learner, history, run.returns)


def train_serial(cfg: TrainConfig, callback: Callback | None = None) -> TrainResult:
    """Train with the serial runtime until ``cfg.total_steps`` env steps."""
    return run_to_completion(SerialRun, cfg, callback)
