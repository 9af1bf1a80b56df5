"""``A3CConfig``: the worker layout of A3C, and which IMPALA options A3C cannot take.

A3C's learning hyperparameters are IMPALA's, read from ``TrainConfig.algo``
(:class:`~impala_hybrid.algos.impala.config.IMPALAConfig`), not repeated here: the unroll
length ``T`` (the paper's ``t_max``), ``lr`` and its schedule, ``gamma``, ``lam`` (1: the
paper's n-step returns; less: GAE), ``entropy_coef`` (and the per-component weights of a
hybrid head), ``baseline_coef``, ``max_grad_norm``, ``reward_scale``/``reward_clip``,
``normalize_advantages``, ``optimizer`` with ``adam_eps`` or ``rmsprop_eps``/``rmsprop_alpha``
(the paper's shared RMSProp is ``optimizer = rmsprop``). The batch of one update is a worker's
``envs_per_worker`` envs times ``T`` steps; ``TrainConfig.num_envs``, ``algo.batch_size``
and the ``local`` and ``ray`` sections are IMPALA's and A3C ignores them.
"""

from __future__ import annotations

import dataclasses

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.validation import ConfigError, spec, validate


@dataclasses.dataclass(frozen=True)
class A3CConfig:
    """Worker processes of A3C (``runtime/a3c.py``; read only with ``algorithm = a3c``)."""

    workers: int = spec(2, "worker processes, each with its own envs and copy of the model", lo=1)
    envs_per_worker: int = spec(
        8, "environments each worker steps as one batch; one update learns from all of their "
        "T-step unrolls", lo=1,
    )  # fmt: skip
    optimizer_state: str = spec(
        "shared", "the optimizer's statistics (Adam's moments, RMSProp's mean square): "
        "'shared' by all workers in shared memory (the paper's shared RMSProp, the most robust "
        "in its comparison of optimizers), or 'per_worker' (each worker's own; not "
        "checkpointed)",
        choices=("shared", "per_worker"),
    )  # fmt: skip
    updates_per_step: int = spec(
        8, "updates each worker makes, on average, per trainer step: between steps the "
        "workers wait while the trainer logs, evaluates and checkpoints fixed weights", lo=1,
    )  # fmt: skip

    def __post_init__(self) -> None:
        validate(self)


def check_a3c(algo: IMPALAConfig, model: ModelConfig) -> None:
    """Refuse the IMPALA options (``TrainConfig.algo``, ``.model``) that do not carry over to
    A3C, naming the field.

    Each worker updates the shared parameters in its own process, so state a learner keeps
    besides the parameters and the optimizer statistics would be one copy per worker that the
    others never see: PopArt's statistics, Lagrange multipliers, adaptive entropy weights,
    observation-normalisation statistics. Replay is off-policy, and clips of the importance
    ratios below 1 would only scale A3C's on-policy targets (its ratios are exactly 1).
    Zone-tied networks cache their assembled weights by version counters that a write from
    another process does not bump, so the trainer would evaluate stale weights.
    """
    why = "is invalid with TrainConfig.algorithm = 'a3c'"
    off = {
        "IMPALAConfig.popart": (algo.popart, "PopArt's statistics are per-learner state"),
        "IMPALAConfig.lagrange": (algo.lagrange, "the multipliers are per-learner state"),
        "ModelConfig.obs_norm": (model.obs_norm, "its running statistics are per-learner state"),
    }
    for name, (value, reason) in off.items():
        if value:
            raise ConfigError(f"{name} = true {why}: {reason} (must be false)")
    for name in ("target_entropy_discrete", "target_entropy_continuous"):
        if getattr(algo, name) is not None:
            raise ConfigError(
                f"IMPALAConfig.{name} = {getattr(algo, name)!r} {why}: the adaptive weight is "
                "per-learner state (must be null)"
            )
    if algo.replay_proportion > 0.0:
        raise ConfigError(
            f"IMPALAConfig.replay_proportion = {algo.replay_proportion!r} {why}: A3C learns "
            "on-policy, from each unroll once; allowed range is [0, 0]"
        )
    for name in ("rho_bar", "c_bar", "pg_rho_bar"):
        value = getattr(algo, name)
        if value is not None and value < 1.0:
            raise ConfigError(
                f"IMPALAConfig.{name} = {value!r} {why}: on-policy ratios are 1, which a clip "
                "below 1 would only scale; allowed range is [1, inf)"
            )
    if model.structure == "zones":
        raise ConfigError(
            f"ModelConfig.structure = 'zones' {why}: its cached weights would not see the "
            "workers' writes (must be 'mlp')"
        )
