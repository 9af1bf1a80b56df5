"""Small envs that test one property of the learner each, fast enough for CI.

* :class:`ParamChoiceEnv` (``impala_hybrid/ParamChoice-v0``): a parameterised-action task with
  a ``Tuple(Discrete(K), Box(-1, 1, (1,)))`` action where only the chosen discrete action's
  parameter matters: the observation is ``c in [-1, 1]^K`` and choosing ``k`` with parameter
  ``x`` pays ``1 - |x - c_k|``. Every ``k`` is worth the same at its own optimum ``x = c_k``,
  so a policy that keeps its discrete choice stochastic needs a parameter *conditioned on the
  choice*: the gated hybrid head. A factorized head must pick one ``x`` for all choices.
* :class:`TargetEnv` (``impala_hybrid/Target-v0``): a continuous contextual bandit, action
  ``x in [-2, 2]^D``, reward ``-||x - c||^2 / D`` for the observed target ``c in [-1, 1]^D``.

Both are one-step episodes (terminated after each step): the critic's target is the
immediate reward, so what is being tested is the policy head and its log-probs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


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
