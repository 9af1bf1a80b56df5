"""``UAVNetVectorEnv``: a native batched ``gymnasium.vector.VectorEnv`` (one kernel call a step).

``gymnasium.make_vec("impala_hybrid/UAVNet-v0", num_envs=N)`` returns this class, not N
copies stepped in a Python loop. It follows the Gymnasium 1.x vector API:

* ``single_observation_space`` / ``single_action_space`` and their batched versions;
* separate ``terminations`` (only with the optional collapse termination) and
  ``truncations`` (the time limit: a learner must bootstrap there);
* autoreset in Gymnasium's ``NEXT_STEP`` mode (default: the step after an episode ends
  returns the reset observation with reward 0) or ``SAME_STEP`` (the reset observation is
  returned in the same step and the last observation of the finished episode is in
  ``infos["final_obs"]``, the mode IMPALA actors use so no step is wasted) or ``DISABLED``;
* infos as a dict of arrays with ``_key`` masks: ``vector_reward [N, 6]`` every step
  (MO-Gymnasium's key), ``constraint_costs [N, 3]`` every step (``CONSTRAINT_NAMES``), and
  ``episode`` (per-episode statistics) when episodes end.

Unlike Gymnasium's ``SyncVectorEnv`` (an object array of per-env observations),
``infos["final_obs"]`` here is a dense ``[N, 29]`` array whose rows are valid where
``infos["_final_obs"]`` is True; indexing one row works the same in both.

``reward_mode="vector"`` returns the ``[N, 6]`` vector reward from ``step`` (MO-Gymnasium's
convention) instead of the scalarised one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from impala_hybrid.envs.config import (
    CONSTRAINT_NAMES,
    N_INTENSITY,
    N_OBJECTIVES,
    N_TRANSFER,
    OBS_DIM,
    ZONE_STRUCTURE,
    UAVNetConfig,
)
from impala_hybrid.envs.sim import UAVNetSim, parse_actions

REWARD_MODES = ("scalar", "vector")


def make_spaces(
    config: UAVNetConfig | None = None,
) -> tuple[gym.spaces.Box, gym.spaces.Dict, gym.spaces.Box]:
    """Single observation, action and reward spaces of the UAV env; the reward space holds
    the sure per-step bounds of each objective under ``config`` (``envs/bounds.py``; an
    infinite side where none exists)."""
    from impala_hybrid.envs.bounds import objective_bounds

    obs = gym.spaces.Box(0.0, 1.0, (OBS_DIM,), np.float32)
    act = gym.spaces.Dict(
        {
            "transfer": gym.spaces.Discrete(N_TRANSFER),
            "intensity": gym.spaces.Box(0.0, 1.0, (N_INTENSITY,), np.float32),
        }
    )
    bounds = objective_bounds(config)
    low = bounds.step_lower.astype(np.float32)
    high = bounds.step_upper.astype(np.float32)
    reward = gym.spaces.Box(low, high, (N_OBJECTIVES,), np.float32)
    return obs, act, reward


def resolve_config(config: UAVNetConfig | None, overrides: dict[str, Any]) -> UAVNetConfig:
    """A config from an optional base plus field overrides (``make(..., dt=0.05)``)."""
    base = config if config is not None else UAVNetConfig()
    if not isinstance(base, UAVNetConfig):
        raise TypeError(f"config must be a UAVNetConfig, got {type(base)!r}")
    if not overrides:
        return base
    known = set(UAVNetConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown UAVNetConfig field(s) {unknown}; known fields: {sorted(known)}")
    return base.replace(**overrides)


class UAVNetVectorEnv(VectorEnv):
    """Batched UAV emergency-response network; see the module docstring."""

    zone_structure = ZONE_STRUCTURE
    constraint_names = CONSTRAINT_NAMES  # info['constraint_costs'] columns
    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
        config: UAVNetConfig | None = None,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        reward_mode: str = "scalar",
        copy: bool = True,
        **overrides: Any,
    ) -> None:
        self.config = resolve_config(config, overrides)
        if reward_mode not in REWARD_MODES:
            raise ValueError(
                f"reward_mode = {reward_mode!r} is invalid: must be one of {REWARD_MODES}"
            )
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.reward_mode = reward_mode
        self.copy = copy
        self.sim = UAVNetSim(self.config, num_envs)
        self.num_envs = self.sim.num_envs
        obs_space, act_space, rew_space = make_spaces(self.config)
        self.single_observation_space = obs_space
        self.single_action_space = act_space
        self.observation_space = batch_space(obs_space, self.num_envs)
        self.action_space = batch_space(act_space, self.num_envs)
        self.reward_space = rew_space
        self.render_mode = None
        self._needs_reset = np.zeros(self.num_envs, np.bool_)
        self._seeded = False

    @property
    def state(self) -> Any:
        """The simulator state arrays (read them; heuristics and tests use this)."""
        return self.sim.state

    _BUFFERS = ("obs", "reward_vec", "reward", "terminated", "truncated")

    def get_state(self) -> dict[str, Any]:
        """A copy of everything that determines future steps, for exact resume.

        That is all :class:`~impala_hybrid.envs.core.UAVState` arrays (queues, regimes,
        episode accumulators and the per-env random streams), the simulator's output buffers
        and the autoreset bookkeeping. Config and packed parameters are not included: they
        are rebuilt from the run's config.
        """
        s = self.sim.state
        return {
            "state": {f.name: getattr(s, f.name).copy() for f in dataclasses.fields(s)},
            "buffers": {name: getattr(self.sim, name).copy() for name in self._BUFFERS},
            "needs_reset": self._needs_reset.copy(),
            "seeded": bool(self._seeded),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state` output (copied in place; shapes and dtypes must match)."""
        s = self.sim.state
        targets = {f"state.{f.name}": getattr(s, f.name) for f in dataclasses.fields(s)}
        targets.update({f"buffers.{n}": getattr(self.sim, n) for n in self._BUFFERS})
        targets["needs_reset"] = self._needs_reset
        sources = {f"state.{k}": v for k, v in state["state"].items()}
        sources.update({f"buffers.{k}": v for k, v in state["buffers"].items()})
        sources["needs_reset"] = state["needs_reset"]
        if set(sources) != set(targets):
            raise ValueError(f"env state has arrays {sorted(sources)}, expected {sorted(targets)}")
        for key, dst in targets.items():
            src = np.asarray(sources[key])
            if src.shape != dst.shape or src.dtype != dst.dtype:
                raise ValueError(
                    f"env state {key} has shape {src.shape} {src.dtype}, expected "
                    f"{dst.shape} {dst.dtype} (a different num_envs or config?)"
                )
        for key, dst in targets.items():
            dst[...] = sources[key]
        self._seeded = bool(state["seeded"])

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all (or ``options["reset_mask"]``) environments.

        ``seed``: an int gives environment i the seed ``seed + i`` (Gymnasium's convention),
        a list gives one seed each. Without a seed, a first reset draws seeds from entropy
        and later resets continue each environment's streams.
        """
        super().reset(seed=seed if isinstance(seed, int | np.integer) else None)
        mask = np.ones(self.num_envs, np.bool_)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], np.bool_)
            if mask.shape != (self.num_envs,):
                raise ValueError(
                    f"options['reset_mask'] has shape {mask.shape}, expected ({self.num_envs},)"
                )
        seeds: np.ndarray | None = None
        if seed is not None:
            if isinstance(seed, int | np.integer):
                seeds = int(seed) + np.arange(self.num_envs)
            else:
                seeds = np.asarray(seed, np.int64)
                if seeds.shape != (self.num_envs,):
                    raise ValueError(f"seed list has {seeds.size} seeds for {self.num_envs} envs")
        elif not self._seeded:
            seeds = (
                np.random.SeedSequence().generate_state(self.num_envs, np.uint64).astype(np.int64)
            )
        if seeds is not None:
            self.sim.seed(seeds, mask)
            self._seeded = True
        obs = self.sim.reset(mask)
        self._needs_reset[mask] = False
        return self._out(obs), {}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        sim = self.sim
        transfer, intensity = parse_actions(actions, self.num_envs)
        infos: dict[str, Any] = {}
        resetting = self._needs_reset.any()
        if resetting:  # NEXT_STEP: these environments reset instead of stepping
            mask = self._needs_reset.copy()
            sim.step(transfer, intensity, active=~mask)
            sim.reset(mask)
            sim.reward[mask] = 0.0
            sim.reward_vec[mask] = 0.0
            sim.constraint_costs[mask] = 0.0
            sim.terminated[mask] = False
            sim.truncated[mask] = False
            self._needs_reset[:] = False
        else:
            sim.step(transfer, intensity)
        infos["vector_reward"] = self._out(sim.reward_vec)
        infos["constraint_costs"] = self._out(sim.constraint_costs)
        done = sim.terminated | sim.truncated
        if done.any():
            infos["episode"] = sim.episode_stats(done)
            infos["_episode"] = done.copy()
            if self.autoreset_mode == AutoresetMode.SAME_STEP:
                final = np.zeros_like(sim.obs)
                final[done] = sim.obs[done]
                infos["final_obs"] = final
                infos["_final_obs"] = done.copy()
                sim.reset(done)
            elif self.autoreset_mode == AutoresetMode.NEXT_STEP:
                self._needs_reset = done
        reward = sim.reward_vec if self.reward_mode == "vector" else sim.reward
        return (
            self._out(sim.obs),
            self._out(reward),
            self._out(sim.terminated),
            self._out(sim.truncated),
            infos,
        )

    def _out(self, x: np.ndarray) -> np.ndarray:
        return x.copy() if self.copy else x
