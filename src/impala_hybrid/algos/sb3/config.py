"""``SB3Config``: one Stable-Baselines3 baseline run, and the RL Zoo hyperparameters it starts from.

Hyperparameters come from the RL Baselines3 Zoo (Raffin, github.com/DLR-RM/rl-baselines3-zoo,
``hyperparams/{a2c,ppo,sac,td3}.yml`` at commit ``22e3ff2``, April 2026), the tuned settings
SB3's authors publish per algorithm and env. The UAV env has no zoo entry; it is a continuous-
control task once relaxed (``relaxation.py``: a ``Box(-1, 1, (12,))``), so :data:`ZOO` takes
each algorithm's zoo entry for Pendulum-v1, the zoo's small continuous-control task, except:

* ``gamma = 0.99`` for all four: the discount defines the objective, so the baselines
  optimise the same discounted return as the IMPALA runs (``uav_hybrid``: 0.99). The zoo's
  0.9 (A2C, PPO) and 0.98 (TD3) are tuned to Pendulum's 200-step swing-up, not to a 1000-step
  episode whose queues react over tens of steps.
* no ``normalize`` (VecNormalize) for A2C: the zoo normalises Pendulum because its
  observations (angular velocity up to 8) and rewards (down to -16 a step) are badly scaled;
  the UAV observations are in ``[0, 1]`` by construction and its rewards are O(1) a step.
  ``normalize = true`` turns it on for any algorithm.

Per algorithm, and why the zoo's Pendulum entry is the right start:

* **A2C** (``a2c.yml`` Pendulum-v1, "almost tuned"): 8 envs, ``n_steps = 8``,
  ``gae_lambda = 0.9``, ``vf_coef = 0.4``, ``ent_coef = 0``, ``max_grad_norm = 0.5``, RMSprop,
  no advantage normalisation, learning rate linear from ``7e-4``, gSDE with ``log_std_init =
  -2`` and no orthogonal init. SB3's A2C defaults (the A3C paper's Atari setting: 5-step
  rollouts, no GAE, a constant rate) are what the zoo keeps for discrete tasks only; every
  continuous-control A2C entry of the zoo uses this recipe, with gSDE (state-dependent
  exploration, Raffin et al. 2022, "Smooth exploration for robotic reinforcement learning",
  CoRL), which improved A2C and PPO on those authors' continuous-control benchmarks.
* **PPO** (``ppo.yml`` Pendulum-v1): 4 envs, ``n_steps = 1024``, ``gae_lambda = 0.95``,
  10 epochs, ``lr = 1e-3``, ``clip_range = 0.2``, ``ent_coef = 0``, gSDE resampled every 4
  steps; SB3's minibatch of 64. Long rollouts suit the UAV env's long episodes.
* **SAC** (``sac.yml`` Pendulum-v1): only ``lr = 1e-3`` differs from SB3's defaults (which
  the zoo's MuJoCo entries use unchanged): buffer 1M, batch 256, ``tau = 0.005``, one
  gradient step per env step, automatic entropy tuning, 2x256 networks.
* **TD3** (``td3.yml`` Pendulum-v1): Gaussian exploration noise ``std = 0.1``,
  ``lr = 1e-3``, 400x300 networks, a 200k buffer, ``learning_starts = 10000`` (random
  actions first, to fill the buffer), one gradient step per env step.

``base = "sb3"`` starts from SB3's own defaults instead, for the standard-env presets below,
which copy the zoo's entry for that env verbatim (:data:`ZOO_STANDARD`). ``hyperparams``
overrides either base key by key; keys are SB3 constructor arguments, plus ``noise_std``
(SAC/TD3: ``NormalActionNoise`` of that std on every action dimension, the zoo's
``noise_type: normal``); a string ``"lin_<x>"`` is the zoo's linear schedule from ``x`` to 0.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

from impala_hybrid import UAVNET_ID
from impala_hybrid.validation import ConfigError, spec, validate

ALGOS = ("a2c", "ppo", "sac", "td3")

#: Each algorithm's defaults on the UAV env (see module docstring for sources and reasons).
ZOO: dict[str, dict[str, Any]] = {
    "a2c": {
        "n_steps": 8, "gae_lambda": 0.9, "vf_coef": 0.4, "ent_coef": 0.0, "max_grad_norm": 0.5,
        "use_rms_prop": True, "normalize_advantage": False, "learning_rate": "lin_7e-4",
        "use_sde": True, "policy_kwargs": {"log_std_init": -2.0, "ortho_init": False},
        "gamma": 0.99,
    },
    "ppo": {
        "n_steps": 1024, "gae_lambda": 0.95, "n_epochs": 10, "ent_coef": 0.0,
        "learning_rate": 1e-3, "clip_range": 0.2, "use_sde": True, "sde_sample_freq": 4,
        "gamma": 0.99,
    },
    "sac": {"learning_rate": 1e-3, "gamma": 0.99},
    "td3": {
        "buffer_size": 200_000, "learning_starts": 10_000, "noise_std": 0.1, "train_freq": 1,
        "gradient_steps": 1, "learning_rate": 1e-3, "policy_kwargs": {"net_arch": [400, 300]},
        "gamma": 0.99,
    },
}  # fmt: skip
#: The zoo's ``n_envs`` for those entries (SAC and TD3: the zoo's default, one env).
ZOO_N_ENVS = {"a2c": 8, "ppo": 4, "sac": 1, "td3": 1}

#: SB3 constructor arguments a config may not set: the run decides them (env, seed, device,
#: logging) or they are objects YAML cannot hold (``action_noise``: use ``noise_std``).
_RESERVED = {
    "self", "policy", "env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model",
    "action_noise", "rollout_buffer_class", "replay_buffer_class",
}  # fmt: skip


@functools.cache
def allowed_hyperparams(algo: str) -> tuple[str, ...]:
    """The ``hyperparams`` keys ``algo`` takes: its SB3 constructor's, plus ``noise_std``."""
    from impala_hybrid.algos.sb3.train import algorithm_class

    names = set(inspect.signature(algorithm_class(algo).__init__).parameters) - _RESERVED
    if algo in ("sac", "td3"):
        names.add("noise_std")
    return tuple(sorted(names))


def linear_schedule(value: Any) -> Any:
    """A number as is; the zoo's ``"lin_<x>"`` as SB3's schedule ``progress -> progress * x``
    (SB3's ``progress_remaining`` goes from 1 at the start to 0 at the end)."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[len("lin_") :])
        return lambda progress: progress * start
    return value


@dataclasses.dataclass(frozen=True)
class SB3Config:
    """A Stable-Baselines3 baseline run (see module docstring)."""

    algo: str = spec("ppo", "Stable-Baselines3 algorithm", choices=ALGOS)
    env: str = spec(UAVNET_ID, "Gymnasium id (e.g. Pendulum-v1) or module:factory path")
    env_kwargs: dict[str, Any] = dataclasses.field(
        default_factory=dict, metadata={"doc": "keyword arguments for the env"}
    )
    total_steps: int = spec(
        100_000, "env steps to train for (on-policy algorithms finish their last rollout)", lo=1
    )
    seed: int = spec(0, "seed of SB3 (networks, sampling) and of the envs (env i: seed + i)", lo=0)
    n_envs: int | None = spec(
        None, "environments stepped as one batch (null: the zoo's for the algorithm)", lo=1
    )
    action_space: str = spec(
        "relaxed", "relaxed: act in the hybrid-to-Box relaxation (relaxation.py); native: the "
        "env's own Discrete or Box (standard envs)", choices=("relaxed", "native"),
    )  # fmt: skip
    base: str = spec(
        "zoo", "hyperparameters start from ZOO[algo] (the UAV defaults) or from SB3's own",
        choices=("zoo", "sb3"),
    )  # fmt: skip
    hyperparams: dict[str, Any] = dataclasses.field(
        default_factory=dict,
        metadata={"doc": "SB3 constructor arguments over the base, plus noise_std; lin_X strings"},
    )
    normalize: bool = spec(
        False, "SB3's VecNormalize: observations and rewards scaled by running statistics "
        "while training (the zoo's normalize: true); the observation statistics are saved "
        "with the model and applied when it acts",
    )  # fmt: skip
    torch_threads: int = spec(1, "torch intra-op threads while training", lo=1)

    def __post_init__(self) -> None:
        validate(self)
        if not isinstance(self.hyperparams, dict):
            raise ConfigError(
                f"SB3Config.hyperparams = {self.hyperparams!r} is invalid: must be a mapping"
            )
        allowed = allowed_hyperparams(self.algo)
        for key, value in self.hyperparams.items():
            if key not in allowed:
                raise ConfigError(
                    f"SB3Config.hyperparams[{key!r}] is invalid for algo {self.algo!r}: "
                    f"allowed keys are {list(allowed)}"
                )
            if isinstance(value, str) and value.startswith("lin_"):
                try:
                    float(value[len("lin_") :])
                except ValueError:
                    raise ConfigError(
                        f"SB3Config.hyperparams[{key!r}] = {value!r} is invalid: a linear "
                        "schedule is 'lin_<number>'"
                    ) from None
        noise = self.hyperparams.get("noise_std")
        if noise is not None and (not isinstance(noise, int | float) or noise <= 0):
            raise ConfigError(
                f"SB3Config.hyperparams['noise_std'] = {noise!r} is invalid: allowed range is "
                "(0, inf)"
            )

    @property
    def num_envs(self) -> int:
        """``n_envs``, or the zoo's for the algorithm."""
        return self.n_envs if self.n_envs is not None else ZOO_N_ENVS[self.algo]

    def resolved_hyperparams(self) -> dict[str, Any]:
        """The base (``ZOO[algo]`` or nothing) with ``hyperparams`` over it, as written."""
        base = ZOO[self.algo] if self.base == "zoo" else {}
        return {**base, **self.hyperparams}


# --- the zoo's entries for standard envs, verbatim (the honesty checks train these) --------

#: ``(algo, env) -> SB3Config fields`` copying the zoo's entry (``n_timesteps`` as
#: ``total_steps``, ``normalize``, ``n_envs``, the rest as ``hyperparams``) from the files
#: named in the module docstring. SAC and TD3 act through the relaxation (for a Box it is the
#: same rescaling to ``[-1, 1]`` SB3 does itself, so it tests the wrapper's continuous part
#: for free); A2C and PPO act in the env's own space, as the zoo tuned them. One difference:
#: VecNormalize's return discount is SB3's 0.99, not the entry's gamma (``train.make_sb3_env``).
ZOO_STANDARD: dict[tuple[str, str], dict[str, Any]] = {
    ("a2c", "CartPole-v1"): {
        "action_space": "native", "n_envs": 8, "total_steps": 500_000,
        "hyperparams": {"ent_coef": 0.0},
    },
    ("a2c", "Pendulum-v1"): {
        "action_space": "native", "n_envs": 8, "total_steps": 1_000_000, "normalize": True,
        "hyperparams": {
            "ent_coef": 0.0, "max_grad_norm": 0.5, "n_steps": 8, "gae_lambda": 0.9,
            "vf_coef": 0.4, "gamma": 0.9, "use_rms_prop": True, "normalize_advantage": False,
            "learning_rate": "lin_7e-4", "use_sde": True,
            "policy_kwargs": {"log_std_init": -2.0, "ortho_init": False},
        },
    },
    ("ppo", "CartPole-v1"): {
        "action_space": "native", "n_envs": 8, "total_steps": 100_000,
        "hyperparams": {
            "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20,
            "ent_coef": 0.0, "learning_rate": "lin_0.001", "clip_range": "lin_0.2",
        },
    },
    ("ppo", "Pendulum-v1"): {
        "action_space": "native", "n_envs": 4, "total_steps": 100_000,
        "hyperparams": {
            "n_steps": 1024, "gae_lambda": 0.95, "gamma": 0.9, "n_epochs": 10, "ent_coef": 0.0,
            "learning_rate": 1e-3, "clip_range": 0.2, "use_sde": True, "sde_sample_freq": 4,
        },
    },
    ("sac", "Pendulum-v1"): {
        "action_space": "relaxed", "n_envs": 1, "total_steps": 20_000,
        "hyperparams": {"learning_rate": 1e-3},
    },
    ("td3", "Pendulum-v1"): {
        "action_space": "relaxed", "n_envs": 1, "total_steps": 20_000,
        "hyperparams": {
            "gamma": 0.98, "buffer_size": 200_000, "learning_starts": 10_000, "noise_std": 0.1,
            "gradient_steps": 1, "train_freq": 1, "learning_rate": 1e-3,
            "policy_kwargs": {"net_arch": [400, 300]},
        },
    },
}  # fmt: skip


def zoo_preset(
    algo: str, env: str, hyperparams: dict[str, Any] | None = None, **changes: Any
) -> SB3Config:
    """The zoo's settings for a standard env (:data:`ZOO_STANDARD`); ``hyperparams`` are
    merged over the zoo's key by key, ``changes`` (``total_steps``, ``seed``, ...) replace
    fields."""
    if (algo, env) not in ZOO_STANDARD:
        raise ConfigError(
            f"no zoo preset for algo {algo!r} on env {env!r}: presets are {sorted(ZOO_STANDARD)}"
        )
    entry = ZOO_STANDARD[(algo, env)]
    merged = {**entry["hyperparams"], **(hyperparams or {})}
    fields = {**entry, "hyperparams": merged, **changes}
    return SB3Config(algo=algo, env=env, base="sb3", **fields)
