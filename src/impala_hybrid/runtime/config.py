"""``TrainConfig``: one typed object that describes a training run (which algorithm, env,
model, hyper-parameters, process layout), and how its rewards are set up for the learner.

It lives on the runtime floor (envs -> ops/models -> algos -> runtime -> experiments -> cli)
because every runtime takes one; YAML files and ``--set`` overrides load into it
(``experiments/config_io.py``) and are validated by the same dataclasses
(``validation.py``). The presets are ``experiments/spec.py``'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from impala_hybrid.algos.a3c.config import A3CConfig, check_a3c
from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.deploy.inference import DISCRETE_CHOICES
from impala_hybrid.evaluation.selection import DEFAULT_SELECTION, SELECTIONS
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.validation import ConfigError, spec, validate


@dataclasses.dataclass(frozen=True)
class LocalConfig:
    """Process layout of the local runtime (``runtime/local.py``; ignored by ``serial``)."""

    num_actors: int = spec(2, "actor processes", lo=1)
    envs_per_actor: int = spec(32, "environments each actor steps as one batch", lo=1)
    slots_per_actor: int | None = spec(
        None, "shared rollout slots each actor owns (default: enough for 2 batches, >= 2)", lo=1
    )
    max_policy_lag: int | None = spec(
        None, "drop unrolls produced more than this many updates ago (off if null)", lo=0
    )
    actor_check_s: float = spec(1.0, "seconds between actor liveness checks", lo=0.01)
    max_restarts: int = spec(10, "actor restarts allowed before the run fails", lo=0)
    learners: int = spec(
        1, "synchronous learners: this process and learners - 1 forked learner processes, "
        "each stepping on a shard of every batch and all-reducing gradients (gloo)", lo=1,
    )  # fmt: skip

    def __post_init__(self) -> None:
        validate(self)


@dataclasses.dataclass(frozen=True)
class RayConfig:
    """Cluster layout of the Ray runtime (``runtime/ray.py``; ignored by the others)."""

    address: str | None = spec(
        None, "Ray cluster to join: null starts a Ray instance for the run; 'auto' joins the "
        "one `ray start` runs on this node; 'HOST:PORT' or 'ray://HOST:PORT' a remote one",
    )  # fmt: skip
    num_actors: int = spec(2, "actor processes (Ray actors)", lo=1)
    envs_per_actor: int = spec(32, "environments each actor steps as one batch", lo=1)
    actor_cpus: float = spec(
        1.0, "CPUs Ray reserves for each actor (a fraction packs several on a core)",
        lo=0.0, lo_open=True,
    )  # fmt: skip
    unrolls_in_flight: int | None = spec(
        None, "unrolls each actor may have queued, running or waiting for the learner "
        "(backpressure; default: enough for 2 batches, >= 2)", lo=1,
    )  # fmt: skip
    max_policy_lag: int | None = spec(
        None, "drop unrolls produced more than this many updates ago (off if null)", lo=0
    )
    max_restarts: int = spec(10, "actor re-creations allowed before the run fails", lo=0)
    learners: int = spec(
        1, "synchronous learners (see learner_placement for where they run), each stepping "
        "on a shard of every batch and all-reducing gradients (torch.distributed: gloo, or "
        "NCCL when every learner holds a GPU)", lo=1,
    )  # fmt: skip
    learner_cpus: float = spec(
        1.0, "CPUs Ray reserves for each learner actor beyond the driver's", lo=0.0, lo_open=True
    )
    learner_placement: str = spec(
        "auto", "where the learners run: 'driver' (rank 0 in the driver process, ranks 1.. as "
        "Ray actors), 'actor' (every rank a Ray actor, on whichever node has its resources), "
        "'auto' ('actor' when the cluster has a GPU for every learner, else 'driver')",
        choices=("auto", "driver", "actor"),
    )  # fmt: skip
    learner_gpus: float | None = spec(
        None, "GPUs Ray reserves for each learner actor (null: 1 when the cluster has one for "
        "every learner, else 0); a learner that holds a GPU trains on it (NCCL between ranks)",
        lo=0.0,
    )  # fmt: skip

    def __post_init__(self) -> None:
        validate(self)
        if self.address is not None and not self.address.strip():
            raise ConfigError(
                "RayConfig.address = '' is invalid: null (a Ray instance for the run), "
                "'auto' or 'HOST:PORT'"
            )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A whole training run."""

    env: str = spec(
        "impala_hybrid/UAVNet-v0", "Gymnasium id (e.g. CartPole-v1) or module:factory path"
    )
    env_kwargs: dict[str, Any] = dataclasses.field(
        default_factory=dict, metadata={"doc": "keyword arguments for the env"}
    )
    num_envs: int = spec(32, "environments stepped by the (serial) actor", lo=1)
    total_steps: int = spec(1_000_000, "env steps to train for", lo=1)
    seed: int = spec(0, "seed of everything (envs, sampling, initialisation)", lo=0)
    algorithm: str = spec(
        "impala", "impala: actors ship trajectories to a learner, V-trace (algo section; any "
        "runtime); a3c: asynchronous workers apply their own gradients to a shared model "
        "(Mnih et al. 2016; a3c section, algo's hyperparameters; runtime serial or local)",
        choices=("impala", "a3c"),
    )  # fmt: skip
    desync_episodes: int = spec(
        0, "cut each env's first episode after a uniform random 1..N steps, so the envs' "
        "episode phases differ (about the episode length; 0: off)", lo=0,
    )  # fmt: skip
    warm_start: str | None = spec(
        None, "UAV env: behaviour-clone this classical policy (e.g. threshold) into the network "
        "before IMPALA (algos/impala/warm_start.py); null: learn from scratch",
    )  # fmt: skip
    warm_start_steps: int = spec(
        200_000, "env steps of the classical policy's demonstrations (with warm_start)", lo=1
    )
    warm_start_updates: int = spec(
        2000, "behaviour-cloning minibatch updates (512 samples each; with warm_start)", lo=1
    )
    critic: str = spec(
        "scalar", "scalar critic, or a vector critic with one value per objective (UAV env)",
        choices=("scalar", "vector"),
    )  # fmt: skip
    preference: str = spec(
        "none", "multi-objective envs: 'dirichlet' draws each episode's objective weights w "
        "from Dirichlet(preference_alpha) and gives them to the policy and the vector critic "
        "as extra observation entries (envs/preference.py), so one run learns a policy for "
        "every trade-off; needs critic = 'vector'", choices=("none", "dirichlet"),
    )  # fmt: skip
    preference_alpha: float = spec(
        1.0, "Dirichlet concentration of the per-episode weights, per objective (1 with "
        "preference_center = uniform: uniform on the simplex; larger: closer to the centre)",
        lo=0.0, lo_open=True,
    )  # fmt: skip
    preference_center: str = spec(
        "uniform", "where the per-episode weights centre: 'uniform' (mean 1/K each) or 'env' "
        "(mean: the env's own weights, e.g. the UAV default scalarisation; Dirichlet "
        "parameters K * preference_alpha * w0)", choices=("uniform", "env"),
    )  # fmt: skip
    discrete_levels: int = spec(
        0, "IMPALA-discrete: 0 keeps the env's hybrid actions; L >= 2 replaces them by "
        "Discrete(K * L): each discrete choice with every continuous parameter at the same "
        "level (j + 1) / L of its range (algos/discretised.py)", lo=0,
    )  # fmt: skip
    serial_lag: int = spec(
        0, "serial runtime: the actor acts with the weights of this many learner steps ago, "
        "a deterministic stand-in for the policy lag of actors that run ahead (0: the "
        "learner's own model; V-trace's ratios are then exactly 1)", lo=0,
    )  # fmt: skip
    discrete_choice: str = spec(
        "mode", "how the evaluated and deployed policy takes the discrete part of its action: "
        "mode (the most probable choice) or sample (drawn from the policy with a seeded "
        "generator; continuous parameters at their mode): where the learned choice stays "
        "spread out, its argmax is not the policy the learner trained (docs/results.md)",
        choices=DISCRETE_CHOICES,
    )  # fmt: skip
    torch_threads: int = spec(1, "intra-op threads of the learner", lo=1)
    log_interval: int = spec(10, "learner steps between progress records", lo=1)
    # Run-directory settings (experiments/trainer.py); train_serial ignores them.
    eval_interval: int = spec(
        100_000, "env steps between greedy evaluations on fixed seeds; 0: only at the end", lo=0
    )
    eval_episodes: int = spec(32, "episodes per evaluation (fixed seeds)", lo=1)
    eval_seed: int = spec(0, "seed of the evaluation episodes (the same at every evaluation)", lo=0)
    selection: str = spec(
        DEFAULT_SELECTION, "how an evaluation is judged against the best so far for best.pt: "
        "mean (within one standard error of the best mean, the episodes taken as independent) "
        "or paired "
        "(within one standard error of the per-episode differences from the best evaluation: "
        "the episodes are the same every time, so the comparison is paired; "
        "evaluation/selection.py)", choices=SELECTIONS,
    )  # fmt: skip
    checkpoint_interval: int = spec(
        100_000, "env steps between checkpoints (last.pt); one is also written at the end", lo=1
    )
    model: ModelConfig = dataclasses.field(
        default_factory=ModelConfig, metadata={"doc": "network architecture"}
    )
    algo: IMPALAConfig = dataclasses.field(
        default_factory=IMPALAConfig, metadata={"doc": "learner hyper-parameters"}
    )
    local: LocalConfig = dataclasses.field(
        default_factory=LocalConfig, metadata={"doc": "process layout of the local runtime"}
    )
    ray: RayConfig = dataclasses.field(
        default_factory=RayConfig, metadata={"doc": "cluster layout of the Ray runtime"}
    )
    a3c: A3CConfig = dataclasses.field(
        default_factory=A3CConfig, metadata={"doc": "worker layout of A3C (algorithm = a3c)"}
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.algorithm == "a3c":
            check_a3c(self.algo, self.model)
        if self.discrete_levels == 1:
            raise ConfigError(
                "TrainConfig.discrete_levels = 1 is invalid: 0 (the env's own actions) or >= 2"
            )
        if self.preference != "none" and self.critic != "vector":
            raise ConfigError(
                f"TrainConfig.preference = {self.preference!r} is invalid with critic = "
                f"{self.critic!r}: each step is scalarised with its episode's weights after "
                "V-trace, which needs a vector critic; set critic = 'vector'"
            )
        if self.warm_start is not None:
            from impala_hybrid import UAVNET_ID
            from impala_hybrid.envs.heuristics import HEURISTICS

            if self.env != UAVNET_ID:
                raise ConfigError(
                    f"TrainConfig.warm_start = {self.warm_start!r} is invalid for env "
                    f"{self.env!r}: the classical policies act on {UAVNET_ID} only (use null)"
                )
            if self.warm_start not in HEURISTICS:
                raise ConfigError(
                    f"TrainConfig.warm_start = {self.warm_start!r} is invalid: must be null or "
                    f"one of {sorted(HEURISTICS)}"
                )
        if not self.algo.entropy_moves_means and self.model.continuous_kind == "beta":
            raise ConfigError(
                "IMPALAConfig.entropy_moves_means = False is invalid with model.continuous_kind "
                "= 'beta': it detaches a Gaussian head's means, and a Beta has none (its "
                "entropy bonus pulls both concentrations toward 1); set it true or use "
                "continuous_kind = 'squashed_gaussian'"
            )
        if self.algo.batch_size % self.num_envs != 0:
            raise ConfigError(
                f"TrainConfig.num_envs = {self.num_envs} is invalid: algo.batch_size = "
                f"{self.algo.batch_size} must be a multiple of it (the serial actor fills a "
                "batch with whole unrolls of all its environments)"
            )


RewardSetup = tuple[Callable[[np.ndarray, dict[str, Any]], np.ndarray], torch.Tensor]


def reward_setup(cfg: TrainConfig, env: Any) -> RewardSetup:
    """The reward components the critic learns and the weights that scalarise them.

    A scalar critic learns the env's reward. A vector critic (``critic = "vector"``) learns
    each objective of ``info["vector_reward"]`` separately plus one more component for what
    the scalar reward adds beyond the weighted objectives (the constraint hinges), so the
    weighted sum of the components is exactly the scalar reward.

    With ``algo.lagrange`` the components between the objectives and that last one are the
    constraints' slacks ``limit_i - cost_i`` (``info["constraint_costs"]``, limits from
    ``env.config.constraint_limits()``), weighted by the learner's multipliers (initially
    ``algo.lagrange_init``; :func:`constraint_components` says where they are), so the
    scalarised reward is the Lagrangian ``w . r - sum_i lambda_i (cost_i - limit_i)``.
    """
    from impala_hybrid.algos.impala.actor import scalar_reward

    if cfg.critic == "scalar":
        if cfg.algo.lagrange:
            raise ConfigError(
                "IMPALAConfig.lagrange = true is invalid with TrainConfig.critic = 'scalar': "
                "the multipliers weight cost components of a vector critic; set critic = "
                "'vector'"
            )
        return scalar_reward, torch.ones(1)
    env_cfg = getattr(env, "config", None)
    weights_cfg = getattr(env_cfg, "weights", None)
    if weights_cfg is None:
        raise ConfigError(
            f"TrainConfig.critic = 'vector' is invalid for env {cfg.env!r}: it needs an env "
            "with info['vector_reward'] and config.weights (such as impala_hybrid/UAVNet-v0)"
        )
    w = np.asarray(weights_cfg, np.float32)
    if not cfg.algo.lagrange:

        def vector_reward(reward: np.ndarray, info: dict[str, Any]) -> np.ndarray:
            vec = np.asarray(info["vector_reward"], np.float32)
            rest = np.asarray(reward, np.float32) - vec @ w
            return np.concatenate([vec, rest[:, None]], axis=1)

        return vector_reward, torch.as_tensor(np.append(w, 1.0).astype(np.float32))
    if not hasattr(env_cfg, "constraint_limits"):
        raise ConfigError(
            f"IMPALAConfig.lagrange = true is invalid for env {cfg.env!r}: it needs an env "
            "that reports info['constraint_costs'] and config.constraint_limits() (such as "
            "impala_hybrid/UAVNet-v0)"
        )
    if getattr(env_cfg, "constraint_hinges", False):
        raise ConfigError(
            "env_kwargs.constraint_hinges = true is invalid with IMPALAConfig.lagrange = true: "
            "the learned multipliers replace the fixed hinges; set constraint_hinges = false"
        )
    limits = np.asarray(env_cfg.constraint_limits(), np.float32)  # type: ignore[union-attr]

    def lagrangian_reward(reward: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        vec = np.asarray(info["vector_reward"], np.float32)
        slack = limits - np.asarray(info["constraint_costs"], np.float32)
        rest = np.asarray(reward, np.float32) - vec @ w
        return np.concatenate([vec, slack, rest[:, None]], axis=1)

    lam = np.full(len(limits), cfg.algo.lagrange_init, np.float32)
    return lagrangian_reward, torch.as_tensor(np.concatenate([w, lam, [1.0]]).astype(np.float32))


def constraint_components(cfg: TrainConfig, env: Any) -> dict[str, int]:
    """Name -> index of each reward component that is a constraint's slack
    (:func:`reward_setup` with ``algo.lagrange``; none otherwise): the learner's multipliers
    weight them. Names from ``env.constraint_names`` when the env has them (the UAV env:
    ``CONSTRAINT_NAMES``), else ``c0, c1, ...``."""
    if not cfg.algo.lagrange:
        return {}
    n_obj = len(env.config.weights)
    count = len(env.config.constraint_limits())
    names = getattr(env, "constraint_names", None) or tuple(f"c{i}" for i in range(count))
    return {name: n_obj + i for i, name in enumerate(names)}
