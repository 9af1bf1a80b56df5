"""Parameterised-action toy tasks in the standard layout ``Tuple(Discrete(K), Tuple(Box_1,
..., Box_K))``, where action ``k`` owns ``Box_k`` (sizes differ, some are empty), for the
learning tests of issue 13. Each reports ``info["success"]`` (0.0 or 1.0) at episode end, the
number the public benchmarks (Platform, Goal, Moving) report, and is used through the same
``module:factory`` path a user's env takes (``env=impala_hybrid.envs.param_toys:reach``).

Three difficulties:

* :class:`ReachEnv` (easy; one step): actions ``0: point(x in [-1, 1]^2)``, ``1: dial(y in
  [0, 4])``, ``2: pass()``. The observation says which action pays and the targets. The right
  action with parameters within ``tol`` of the target is a success; the reward is dense,
  ``1 - mean|x - c| / range`` for the right action (``pass`` pays 1 when it is right), 0 else.
* :class:`SequenceEnv` (medium; ``length`` steps): the same actions, but the right one changes
  at every step of the episode (a random schedule, the current step's entry observed). The
  episode is a success if every step was; each step pays the dense reward above.
* :class:`GoalEnv` (hard; sparse, multi-step, like the soccer goal task): a player on a line
  must ``move(dx in [-1, 1])`` (0.5 dx per step) to within ``0.15`` of the ball, then
  ``kick(angle in [-1, 1])`` within ``tol`` of the goal's direction; ``wait()`` does nothing.
  Kicking from too far or off target ends the episode with 0; only a goal pays (1). The right
  discrete action changes along the episode (move until there, then kick) and both parameters
  must be precise. At most ``max_steps`` steps (truncated).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

SPACE_K = 3  # point, dial, pass


def _action_space() -> gym.spaces.Tuple:
    """``Tuple(Discrete(3), Tuple(Box(-1, 1, (2,)), Box(0, 4, (1,)), Box((0,))))``."""
    return gym.spaces.Tuple(
        (
            gym.spaces.Discrete(SPACE_K),
            gym.spaces.Tuple(
                (
                    gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                    gym.spaces.Box(0.0, 4.0, (1,), np.float32),
                    gym.spaces.Box(0.0, 1.0, (0,), np.float32),
                )
            ),
        )
    )


class _Targets:
    """A right action and targets per step, and the dense reward of :class:`ReachEnv`."""

    RANGE = (2.0, 4.0)  # width of each parameterised action's Box, to normalise errors

    def __init__(self, tol: float) -> None:
        if not 0.0 < tol <= 1.0:
            raise ValueError(f"tol = {tol} is invalid: must be in (0, 1]")
        self.tol = tol

    def draw(self, rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
        return (
            int(rng.integers(SPACE_K)),
            rng.uniform(-1.0, 1.0, 2).astype(np.float32),
            rng.uniform(0.0, 4.0, 1).astype(np.float32),
        )

    @staticmethod
    def obs(k: int, point: np.ndarray, dial: np.ndarray) -> np.ndarray:
        """``[one-hot right action (3), point target (2), dial target / 4 (1)]``."""
        onehot = np.eye(SPACE_K, dtype=np.float32)[k]
        return np.concatenate([onehot, point, dial / 4.0]).astype(np.float32)

    def score(self, action: Any, k: int, point: np.ndarray, dial: np.ndarray) -> tuple[float, bool]:
        """``(reward, success)`` of one action against the targets."""
        chosen, params = int(action[0]), action[1]
        if chosen != k:
            return 0.0, False
        if k == 2:
            return 1.0, True
        target = point if k == 0 else dial
        err = float(np.abs(np.asarray(params[k], np.float64) - target).mean()) / self.RANGE[k]
        return 1.0 - err, err <= self.tol / 2.0


class ReachEnv(gym.Env[np.ndarray, Any]):
    """See module docstring (easy). ``obs_scale``, ``obs_shift``: the observation is
    ``obs_shift + obs_scale * obs`` (unbounded space unless the defaults), for the
    observation-normalisation ablation: raw values of a badly scaled env."""

    def __init__(self, tol: float = 0.1, obs_scale: float = 1.0, obs_shift: float = 0.0) -> None:
        self.targets = _Targets(tol)
        self.obs_scale, self.obs_shift = np.float32(obs_scale), np.float32(obs_shift)
        scaled = obs_scale != 1.0 or obs_shift != 0.0
        bound = np.inf if scaled else 1.0
        self.observation_space = gym.spaces.Box(-bound, bound, (6,), np.float32)
        self.action_space = _action_space()
        self._state = (0, np.zeros(2, np.float32), np.zeros(1, np.float32))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = self.targets.draw(self.np_random)
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return self.obs_shift + self.obs_scale * _Targets.obs(*self._state)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward, success = self.targets.score(action, *self._state)
        return self._obs(), reward, True, False, {"success": float(success)}


class SequenceEnv(gym.Env[np.ndarray, Any]):
    """See module docstring (medium). Observation: :class:`ReachEnv`'s plus the fraction of
    the episode elapsed."""

    def __init__(self, length: int = 4, tol: float = 0.1) -> None:
        if length < 1:
            raise ValueError(f"length = {length} is invalid: must be >= 1")
        self.length = length
        self.targets = _Targets(tol)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (7,), np.float32)
        self.action_space = _action_space()
        self._schedule: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._t = 0
        self._all_ok = True

    def _obs(self) -> np.ndarray:
        base = _Targets.obs(*self._schedule[min(self._t, self.length - 1)])
        return np.append(base, np.float32(self._t / self.length))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._schedule = [self.targets.draw(self.np_random) for _ in range(self.length)]
        self._t, self._all_ok = 0, True
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward, ok = self.targets.score(action, *self._schedule[self._t])
        self._all_ok &= ok
        self._t += 1
        done = self._t >= self.length
        info = {"success": float(self._all_ok)} if done else {}
        return self._obs(), reward, done, False, info


class GoalEnv(gym.Env[np.ndarray, Any]):
    """See module docstring (hard). Observation: ``[player, ball, goal direction, time left]``
    (positions in ``[-1, 1]``). Actions: ``0: move(dx in [-1, 1])``, ``1: kick(angle in
    [-1, 1])``, ``2: wait()``."""

    REACH = 0.15  # how close the player must be to kick
    STRIDE = 0.5  # distance of a full move

    def __init__(self, tol: float = 0.1, max_steps: int = 10) -> None:
        if not 0.0 < tol <= 1.0:
            raise ValueError(f"tol = {tol} is invalid: must be in (0, 1]")
        if max_steps < 2:
            raise ValueError(f"max_steps = {max_steps} is invalid: must be >= 2")
        self.tol, self.max_steps = tol, max_steps
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = gym.spaces.Tuple(
            (
                gym.spaces.Discrete(3),
                gym.spaces.Tuple(
                    (
                        gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
                        gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
                        gym.spaces.Box(0.0, 1.0, (0,), np.float32),
                    )
                ),
            )
        )
        self._player = self._ball = self._goal = 0.0
        self._t = 0

    def _obs(self) -> np.ndarray:
        left = 1.0 - 2.0 * self._t / self.max_steps
        return np.array([self._player, self._ball, self._goal, left], np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._player, self._ball, self._goal = self.np_random.uniform(-1.0, 1.0, 3).tolist()
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        k, params = int(action[0]), action[1]
        self._t += 1
        if k == 1:
            near = abs(self._player - self._ball) <= self.REACH
            angle = float(np.asarray(params[1]).reshape(-1)[0])
            goal = near and abs(angle - self._goal) <= self.tol
            return self._obs(), float(goal), True, False, {"success": float(goal)}
        if k == 0:
            dx = float(np.asarray(params[0]).reshape(-1)[0])
            self._player = float(np.clip(self._player + self.STRIDE * dx, -1.0, 1.0))
        truncated = self._t >= self.max_steps
        return self._obs(), 0.0, False, truncated, ({"success": 0.0} if truncated else {})


def reach(**kwargs: Any) -> ReachEnv:
    """``env=impala_hybrid.envs.param_toys:reach`` (``tol``, ``obs_scale``, ``obs_shift``)."""
    return ReachEnv(**kwargs)


def sequence(**kwargs: Any) -> SequenceEnv:
    """``env=impala_hybrid.envs.param_toys:sequence`` (``length``, ``tol``)."""
    return SequenceEnv(**kwargs)


def goal(**kwargs: Any) -> GoalEnv:
    """``env=impala_hybrid.envs.param_toys:goal`` (``tol``, ``max_steps``)."""
    return GoalEnv(**kwargs)
