"""``UAVNetEnv``: the single-environment Gymnasium face (``gymnasium.make``).

A batch of one on the same kernel as the vector env, so environment 0 of a vector env seeded
with ``s`` and a single env seeded with ``s`` follow the same trajectory under the same
actions. No autoreset: after ``terminated`` or ``truncated``, call ``reset()``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from impala_hybrid.envs.config import (
    CONSTRAINT_NAMES,
    N_INTENSITY,
    ZONE_STRUCTURE,
    UAVNetConfig,
)
from impala_hybrid.envs.sim import ActionError, UAVNetSim, parse_actions
from impala_hybrid.envs.vector import REWARD_MODES, make_spaces, resolve_config


class UAVNetEnv(gym.Env[np.ndarray, dict[str, Any]]):
    """One UAV emergency-response network; see ``impala_hybrid.envs.vector`` for the layout."""

    zone_structure = ZONE_STRUCTURE
    constraint_names = CONSTRAINT_NAMES  # info['constraint_costs'] columns
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self, config: UAVNetConfig | None = None, *, reward_mode: str = "scalar", **overrides: Any
    ) -> None:
        self.config = resolve_config(config, overrides)
        if reward_mode not in REWARD_MODES:
            raise ValueError(
                f"reward_mode = {reward_mode!r} is invalid: must be one of {REWARD_MODES}"
            )
        self.reward_mode = reward_mode
        self.sim = UAVNetSim(self.config, 1)
        self.observation_space, self.action_space, self.reward_space = make_spaces(self.config)
        self._seeded = False
        self._done = True

    @property
    def state(self) -> Any:
        return self.sim.state

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.sim.seed(np.array([seed], np.int64))
            self._seeded = True
        elif not self._seeded:
            self.sim.seed(np.array([int(self.np_random.integers(0, 2**62))], np.int64))
            self._seeded = True
        obs = self.sim.reset()
        self._done = False
        return obs[0].copy(), {}

    def step(self, action: dict[str, Any]) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("UAVNetEnv.step called after the episode ended: call reset()")
        if not isinstance(action, dict) or set(action) != {"transfer", "intensity"}:
            raise ActionError(
                f"action must be a dict with keys 'transfer' (int in [0, 5]) and 'intensity' "
                f"(6 floats in [0, 1]), got {action!r}"
            )
        # One env's action, exactly: a batched (1, 6) intensity or a (1,) transfer is the
        # vector env's layout, and reshaping it here would hide a mixed-up caller.
        transfer, intensity = np.asarray(action["transfer"]), np.asarray(action["intensity"])
        if transfer.shape != ():
            raise ActionError(
                f"action['transfer'] has shape {transfer.shape}, expected (): one integer in "
                "[0, 5] (batched actions go to the vector env, gymnasium.make_vec)"
            )
        if intensity.shape != (N_INTENSITY,):
            raise ActionError(
                f"action['intensity'] has shape {intensity.shape}, expected ({N_INTENSITY},): "
                "six floats in [0, 1] (batched actions go to the vector env, gymnasium.make_vec)"
            )
        batched = {"transfer": transfer.reshape(1), "intensity": intensity.reshape(1, -1)}
        sim = self.sim
        sim.step(*parse_actions(batched, 1))
        terminated = bool(sim.terminated[0])
        truncated = bool(sim.truncated[0])
        info: dict[str, Any] = {
            "vector_reward": sim.reward_vec[0].copy(),
            "constraint_costs": sim.constraint_costs[0].copy(),
        }
        if terminated or truncated:
            self._done = True
            stats = sim.episode_stats(np.ones(1, np.bool_))
            info["episode"] = {k: v[0] for k, v in stats.items()}
        reward: Any = (
            sim.reward_vec[0].copy() if self.reward_mode == "vector" else float(sim.reward[0])
        )
        return sim.obs[0].copy(), reward, terminated, truncated, info
