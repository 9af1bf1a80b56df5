"""``RelaxedVecEnv``: a Gymnasium vector env as a Stable-Baselines3 ``VecEnv``, actions relaxed.

SB3 steps its own ``VecEnv`` API (``reset() -> obs``, ``step_async``/``step_wait`` returning
``obs, rewards, dones, infos`` with a list of per-env info dicts), not Gymnasium's vector API.
Its ``DummyVecEnv`` would step ``N`` single envs in a Python loop; this adapter instead drives
one Gymnasium vector env, so on the UAV env (``envs/vector.py``) a step of all ``N`` envs is
one batched kernel call and the relaxed actions are decoded for the whole batch in one NumPy
call (``relaxation.py``). Python touches single envs only to build the info dicts SB3 needs,
and only for the envs whose episode just ended.

What the learner gets:

* observations as the env gives them (the UAV env's flat ``[N, 29]`` in ``[0, 1]``);
* rewards: the env's scalar reward, the scalarisation the IMPALA runs learn from
  (``reward_setup`` with a scalar critic passes the env reward through; ``reward_mode``
  ``"vector"`` envs are refused: SB3 has no vector critic);
* ``dones = terminated | truncated``; on those envs ``infos[i]["terminal_observation"]`` is
  the last observation of the finished episode and ``infos[i]["TimeLimit.truncated"]`` says
  whether the episode was cut by the time limit (not terminated), so SB3 bootstraps there
  exactly as V-trace does; the returned observation is already the next episode's first
  (the env must autoreset in Gymnasium's ``SAME_STEP`` mode, as ``envs.factory`` makes them).

Episode statistics for SB3's logger and ``monitor.csv`` come from wrapping this in SB3's
``VecMonitor`` (``algos/sb3/train.py``), which sums the rewards returned here.

The ``N`` envs of a native vector env are rows of one batched simulator, not ``N`` objects, so
the per-env calls of SB3's API act on the batch: :meth:`get_attr` returns the batch's
attribute once per index, :meth:`env_method` calls the batch's method once and returns its
result once per index, and :meth:`set_attr`/:meth:`env_method` on a strict subset of envs
raise. A vector env of copies (Gymnasium's ``SyncVectorEnv``) is asked per copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from impala_hybrid.algos.sb3.relaxation import Relaxation


class RelaxedVecEnv(VecEnv):
    """SB3 ``VecEnv`` over a ``SAME_STEP`` Gymnasium vector env (see module docstring).

    ``relax=False`` keeps the env's own action space (a ``Discrete`` or ``Box`` SB3 can act in
    directly, as for the standard-env checks); ``relax=True`` (default) acts in
    :attr:`relaxation`'s ``Box(-1, 1, (D + K,))``.
    """

    def __init__(self, venv: gym.vector.VectorEnv, *, relax: bool = True) -> None:
        if venv.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"RelaxedVecEnv needs a vector env that autoresets in SAME_STEP mode (SB3's "
                f"convention), got {venv.metadata.get('autoreset_mode')!r}; make it with "
                "impala_hybrid.envs.factory.make_vector_env"
            )
        self.venv = venv
        self.relaxation = Relaxation.of(venv.single_action_space) if relax else None
        action_space = self.relaxation.space if self.relaxation else venv.single_action_space
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, action_space)

    def reset(self) -> VecEnvObs:
        seeds: list[int] | None = None
        if any(s is not None for s in self._seeds):
            if any(s is None for s in self._seeds):
                raise ValueError(f"seeds {self._seeds}: give every env a seed or none")
            seeds = [int(s) for s in self._seeds if s is not None]
        options = self._options[0] if self._options else {}
        if any(o != options for o in self._options):
            raise ValueError("reset options differ between envs; a vector env takes one dict")
        obs, _ = self.venv.reset(seed=seeds, options=options or None)  # type: ignore[arg-type]
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait called without step_async")
        actions, self._actions = self._actions, None
        env_actions = self.relaxation.decode(actions) if self.relaxation else actions
        obs, reward, terminated, truncated, infos = self.venv.step(env_actions)
        reward = np.asarray(reward, np.float32)
        if reward.shape != (self.num_envs,):
            raise ValueError(
                f"rewards have shape {reward.shape}, expected ({self.num_envs},): SB3 learns "
                "a scalar reward (use the env's scalar reward_mode)"
            )
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        dones = terminated | truncated
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            out[i]["terminal_observation"] = infos["final_obs"][i]
            out[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, reward, dones, out

    def close(self) -> None:
        self.venv.close()

    # --- per-env calls of SB3's API (see module docstring) ---------------------------------

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int | np.integer):
            return [int(indices)]
        return [int(i) for i in indices]

    def _all(self, indices: VecEnvIndices, what: str) -> list[int]:
        idx = self._indices(indices)
        if sorted(idx) != list(range(self.num_envs)):
            raise ValueError(
                f"{what} on envs {idx}: a vector env acts on all its {self.num_envs} envs at once"
            )
        return idx

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        idx = self._indices(indices)
        if hasattr(self.venv, "get_attr"):  # copies (SyncVectorEnv): ask each
            values = self.venv.get_attr(attr_name)
            return [values[i] for i in idx]
        return [getattr(self.venv, attr_name)] * len(idx)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._all(indices, f"set_attr({attr_name!r})")
        if hasattr(self.venv, "set_attr"):
            self.venv.set_attr(attr_name, [value] * self.num_envs)
        else:
            setattr(self.venv, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        idx = self._all(indices, f"env_method({method_name!r})")
        if hasattr(self.venv, "call"):  # copies: one result each
            results = self.venv.call(method_name, *method_args, **kwargs)
            return [results[i] for i in idx]
        return [getattr(self.venv, method_name)(*method_args, **kwargs)] * len(idx)

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        idx = self._indices(indices)
        envs: Sequence[gym.Env[Any, Any]] | None = getattr(self.venv, "envs", None)
        if envs is None:  # a native batch has no per-env wrappers
            return [False] * len(idx)
        return [is_wrapped(envs[i], wrapper_class) for i in idx]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs
