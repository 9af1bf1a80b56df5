"""Small envs that test one property of the learner each, fast enough for CI.

* :class:`ParamChoiceEnv` (``impala_hybrid/ParamChoice-v0``): a parameterised-action task with
  a ``Tuple(Discrete(K), Box(-1, 1, (1,)))`` action where only the chosen discrete action's
  parameter matters: the observation is ``c in [-1, 1]^K`` and choosing ``k`` with parameter
  ``x`` pays ``1 - |x - c_k|``. Every ``k`` is worth the same at its own optimum ``x = c_k``,
  so a policy that keeps its discrete choice stochastic needs a parameter *conditioned on the
  choice*: the gated hybrid head. A factorized head must pick one ``x`` for all choices.
* :class:`TargetEnv` (``impala_hybrid/Target-v0``): a continuous contextual bandit, action
  ``x in [-2, 2]^D``, reward ``-||x - c||^2 / D`` for the observed target ``c in [-1, 1]^D``.

* :class:`TradeOffVectorEnv` (``impala_hybrid/TradeOff-v0``, a native vector env): two
  objectives with a concave front, for preference conditioning. Action ``a in [0, 1]``,
  vector reward ``(sqrt(a), sqrt(1 - a))``, so under weights ``w`` the best action is
  ``a* = w_1^2 / (w_1^2 + w_2^2)``, known in closed form and different for every ``w``.

All are one-step episodes (terminated after each step): the critic's target is the
immediate reward, so what is being tested is the policy head and its log-probs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv


class ParamChoiceEnv(gym.Env[np.ndarray, Any]):
    """See module docstring."""

    def __init__(self, num_choices: int = 3) -> None:
        if num_choices < 2:
            raise ValueError(f"num_choices = {num_choices} is invalid: must be >= 2")
        self.k = num_choices
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (num_choices,), np.float32)
        self.action_space = gym.spaces.Tuple(
            (gym.spaces.Discrete(num_choices), gym.spaces.Box(-1.0, 1.0, (1,), np.float32))
        )
        self._c = np.zeros(num_choices, np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._c = self.np_random.uniform(-1, 1, self.k).astype(np.float32)
        return self._c.copy(), {}

    def step(self, action: tuple[int, np.ndarray]) -> tuple[np.ndarray, float, bool, bool, dict]:
        k, x = int(action[0]), float(np.asarray(action[1]).reshape(-1)[0])
        reward = 1.0 - abs(x - float(self._c[k]))
        return self._c.copy(), reward, True, False, {}


class TargetEnv(gym.Env[np.ndarray, np.ndarray]):
    """See module docstring."""

    def __init__(self, dim: int = 2) -> None:
        self.dim = dim
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (dim,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (dim,), np.float32)
        self._c = np.zeros(dim, np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._c = self.np_random.uniform(-1, 1, self.dim).astype(np.float32)
        return self._c.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        err = np.asarray(action, np.float64).reshape(-1) - self._c
        return self._c.copy(), float(-(err @ err) / self.dim), True, False, {}


@dataclasses.dataclass(frozen=True)
class TradeOffConfig:
    """The toy's scalarisation (what ``PreferenceVectorEnv`` and the vector critic read)."""

    weights: tuple[float, float] = (0.5, 0.5)


class TradeOffVectorEnv(VectorEnv):
    """See module docstring. ``SAME_STEP`` autoreset: every step ends an episode, the next
    observation (always 0) starts the next one, and ``info["final_obs"]`` holds the last."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        weights: tuple[float, float] = (0.5, 0.5),
        autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
    ) -> None:
        if AutoresetMode(autoreset_mode) != AutoresetMode.SAME_STEP:
            raise ValueError("TradeOffVectorEnv supports only SAME_STEP autoreset")
        self.config = TradeOffConfig(tuple(weights))  # type: ignore[arg-type]
        self.num_envs = num_envs
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.single_action_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._obs = np.zeros((num_envs, 1), np.float32)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        return self._obs.copy(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        a = np.clip(np.asarray(actions, np.float64).reshape(self.num_envs), 0.0, 1.0)
        vec = np.stack([np.sqrt(a), np.sqrt(1.0 - a)], axis=1).astype(np.float32)
        reward = (vec @ np.asarray(self.config.weights, np.float32)).astype(np.float32)
        done = np.ones(self.num_envs, bool)
        info = {"vector_reward": vec, "final_obs": self._obs.copy(), "_final_obs": done.copy()}
        return self._obs.copy(), reward, done, np.zeros(self.num_envs, bool), info
