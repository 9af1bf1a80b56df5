"""IMPALA-discrete: IMPALA over a discretised action set, the baseline that shows what the
hybrid head is worth.

A hybrid action space (``Discrete(K)`` with a ``Box(D)`` of continuous parameters, or a
parameterised one; ``models/spaces.py``) becomes ``Discrete(K * L)``: action ``i`` is the
discrete choice ``k = i // L`` with *every* continuous parameter at the same fraction
``(j + 1) / L`` (``j = i % L``) of its range, ``x_d = low_d + (j + 1) / L (high_d - low_d)``.
On the UAV env (``K = 6`` transfers, ``D = 6`` intensities in ``[0, 1]``) ``L = 4`` gives 24
actions: each transfer with all nodes at speed 0.25, 0.5, 0.75 or 1. One shared level, not
a grid per dimension: a grid would have ``K * L^D`` actions (24,576 for ``L = 4``), too many
for a categorical head to explore; the shared level is the coarsest set that still lets the
policy trade speed (energy) against service. Levels start above 0 because speed 0 stops a
node.

:class:`ActionTable` decodes indices into the env's own actions (used by the wrapper and by
evaluation, so the learned policy runs on the unwrapped env); :class:`DiscretisedVectorEnv`
wraps a vector env (``TrainConfig.discrete_levels``, made by ``runtime.serial.make_env``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv

from impala_hybrid.models.distributions import HybridAction
from impala_hybrid.models.spaces import action_spec
from impala_hybrid.validation import ConfigError


class ActionTable:
    """The ``K * L`` discretised actions of a hybrid ``space`` (see module doc)."""

    def __init__(self, space: gym.Space[Any], levels: int) -> None:
        if levels < 2:
            raise ConfigError(
                f"TrainConfig.discrete_levels = {levels} is invalid: 0 (native actions) or "
                ">= 2 levels"
            )
        spec = action_spec(space)
        if spec.num_actions == 0 or spec.action_dim == 0 or spec.low is None:
            raise ConfigError(
                f"TrainConfig.discrete_levels = {levels} is invalid for action space {space}: "
                "it discretises hybrid (discrete + continuous) actions only"
            )
        self.spec = spec
        self.levels = levels
        self.size = spec.num_actions * levels
        fraction = (np.arange(levels) + 1.0) / levels  # [L]
        span = (spec.high - spec.low).astype(np.float64)
        self._params = (spec.low + fraction[:, None] * span).astype(np.float32)  # [L, D]

    def decode(self, index: Any) -> Any:
        """Batched env actions for indices ``[N]`` (ints in ``[0, K * L)``)."""
        idx = np.asarray(index, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.size):
            raise ValueError(f"discretised action out of range [0, {self.size}): {idx.tolist()}")
        k, j = np.divmod(idx, self.levels)
        action = HybridAction(torch.from_numpy(k), torch.from_numpy(self._params[j]))
        return self.spec.to_env(action)


class DiscretisedVectorEnv(VectorEnv):
    """A vector env whose hybrid actions are replaced by :class:`ActionTable`'s indices;
    observations, rewards and infos pass through."""

    def __init__(self, env: VectorEnv, levels: int) -> None:
        self.env = env
        self.table = ActionTable(env.single_action_space, levels)
        self.num_envs = env.num_envs
        self.single_observation_space = env.single_observation_space
        self.observation_space = env.observation_space
        self.single_action_space = gym.spaces.Discrete(self.table.size)
        self.action_space = gym.spaces.MultiDiscrete(np.full(self.num_envs, self.table.size))
        self.metadata = env.metadata
        for name in ("config", "zone_structure", "constraint_names", "num_objectives"):
            if hasattr(env, name):
                setattr(self, name, getattr(env, name))

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        return self.env.reset(seed=seed, options=options)  # type: ignore[arg-type]

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        return self.env.step(self.table.decode(actions))

    def close(self, **kwargs: Any) -> None:
        self.env.close(**kwargs)


class DecodedPolicy:
    """A policy trained on discretised actions, acting on the unwrapped env: its indices
    decoded by the table (for evaluation next to every other policy)."""

    def __init__(self, policy: Any, table: ActionTable) -> None:
        self.policy = policy
        self.table = table

    def reset(self, num_envs: int) -> None:
        self.policy.reset(num_envs)

    def observe_done(self, done: np.ndarray) -> None:
        self.policy.observe_done(done)

    def __call__(self, obs: np.ndarray) -> Any:
        return self.table.decode(self.policy(obs))
