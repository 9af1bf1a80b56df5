"""The hybrid-to-Box relaxation: one ``Box(-1, 1)`` action for algorithms that know only Boxes.

Stable-Baselines3's A2C, PPO, SAC and TD3 act in a ``Box`` (SAC and TD3 in nothing else), our
envs in a hybrid space (``models/spaces.py``: one ``Discrete(K)`` and one ``Box(D)``, or the
parameterised ``Discrete(K)`` with one ``Box_k`` per action). The relaxation is the standard
baseline for hybrid actions (Hausknecht and Stone 2016, "Deep reinforcement learning in
parameterized action space", ICLR: one real output per discrete action, the argmax acts):

* relaxed action ``a in [-1, 1]^(D + K)``, laid out ``[x_1 .. x_D, s_1 .. s_K]``;
* continuous part: ``x_j`` rescaled affinely from ``[-1, 1]`` to the env's ``[low_j,
  high_j]`` (``-1 -> low``, ``0 -> midpoint``, ``1 -> high``). ``[-1, 1]`` rather than the
  env's own bounds because SAC and TD3 squash with ``tanh`` into ``[-1, 1]`` and SB3's env
  checker asks for a symmetric normalised Box; all dimensions share one scale;
* discrete part: ``argmax_k s_k`` (ties go to the lowest index, NumPy's rule, so decoding is
  deterministic). In a parameterised space every action's parameters are in ``x`` (all ``D =
  sum_k D_k`` of them, the concatenation of ``ActionSpec.segments``); only the chosen action's
  own ``Box_k`` slice matters to the env, as in Hausknecht and Stone's P-DDPG.

What the learner sees is a plain continuous-control task; nothing tells it that only one slice
of the parameters counts, which is the handicap this baseline is meant to have.

A plain ``Discrete(K)`` or ``Box(D)`` space relaxes the same way (``D = 0`` or ``K = 0``), so
a discrete env can be given to SAC or TD3. Relaxed actions outside ``[-1, 1]`` or not finite
raise :class:`RelaxationError`: SB3 clips or squashes every action it sends, so one outside is
a caller's bug, and the UAV env never clips silently either.

:class:`RelaxedActionWrapper` applies the relaxation to a single Gymnasium env;
``algos/sb3/vec_env.py`` applies it to a whole vector env in one batched NumPy call.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space, iterate

from impala_hybrid.models.distributions import HybridAction
from impala_hybrid.models.spaces import ActionSpec, action_spec


class RelaxationError(ValueError):
    """A relaxed action of the wrong shape, not finite, or outside ``[-1, 1]``."""


@dataclasses.dataclass(frozen=True, eq=False)
class Relaxation:
    """A hybrid (or plain) action space and its ``Box(-1, 1, (D + K,))`` relaxation.

    Compared by identity (``eq=False``): the spec holds bound arrays, which ``==`` on the
    generated ``__eq__`` would turn into an ambiguous-truth-value error.
    """

    spec: ActionSpec

    @classmethod
    def of(cls, space: gym.Space[Any]) -> Relaxation:
        """The relaxation of a single env's action space (any space ``action_spec`` takes)."""
        return cls(action_spec(space))

    @property
    def num_continuous(self) -> int:
        """``D``: the first ``D`` relaxed dimensions are the continuous parameters."""
        return self.spec.action_dim

    @property
    def num_discrete(self) -> int:
        """``K``: the last ``K`` relaxed dimensions score the discrete choices."""
        return self.spec.num_actions

    @property
    def space(self) -> gym.spaces.Box:
        """The relaxed single-env action space."""
        return gym.spaces.Box(-1.0, 1.0, (self.num_continuous + self.num_discrete,), np.float32)

    def split(self, relaxed: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``[N, D + K]`` relaxed actions -> (discrete ``[N]`` int64 or None, continuous
        ``[N, D]`` float32 in the env's bounds or None); checks shape, finiteness, range."""
        a = np.asarray(relaxed)
        width = self.num_continuous + self.num_discrete
        if a.ndim != 2 or a.shape[1] != width:
            raise RelaxationError(
                f"relaxed actions have shape {a.shape}, expected (N, {width}): "
                f"{self.num_continuous} parameters then {self.num_discrete} choice scores"
            )
        bad = ~np.isfinite(a) | (a < -1.0) | (a > 1.0)
        if bad.any():
            n, j = np.argwhere(bad)[0]
            raise RelaxationError(
                f"relaxed action [{n}, {j}] = {a[n, j]!r} is invalid: must be a finite number "
                "in [-1, 1] (clip before decoding)"
            )
        discrete = continuous = None
        if self.num_discrete:
            discrete = np.argmax(a[:, self.num_continuous :], axis=1).astype(np.int64)
        if self.num_continuous:
            assert self.spec.low is not None and self.spec.high is not None
            low, high = self.spec.low, self.spec.high
            x = low + (a[:, : self.num_continuous].astype(np.float64) + 1.0) * 0.5 * (high - low)
            # The affine map can overshoot a bound by a rounding error; the env checks bounds.
            continuous = np.clip(x, low, high).astype(np.float32)
        return discrete, continuous

    def decode(self, relaxed: np.ndarray) -> Any:
        """``[N, D + K]`` relaxed actions -> the batched env action (a vector env's layout)."""
        discrete, continuous = self.split(relaxed)
        if discrete is not None and continuous is not None:
            # The same assembly (Dict/Tuple keys, parameter segments) the IMPALA actor uses.
            action = HybridAction(torch.from_numpy(discrete), torch.from_numpy(continuous))
            return self.spec.to_env(action)
        return discrete if discrete is not None else continuous


class RelaxedActionWrapper(gym.ActionWrapper[Any, np.ndarray, Any]):
    """A single Gymnasium env with a hybrid (or plain) action space, acting in its relaxation.

    Observations, rewards and infos are the env's own; only the action space changes.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.relaxation = Relaxation.of(env.action_space)
        self.action_space = self.relaxation.space
        self._batched = batch_space(env.action_space, 1)

    def action(self, action: np.ndarray) -> Any:
        batched = self.relaxation.decode(np.asarray(action).reshape(1, -1))
        return next(iter(iterate(self._batched, batched)))
