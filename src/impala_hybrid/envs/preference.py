"""Preference-conditioned episodes: a weight vector ``w`` per episode, appended to every
observation, so that one policy and one vector critic learn every trade-off at once.

A multi-objective env here is one with ``config.weights`` (its default scalarisation, ``K``
objectives) and ``info["vector_reward"] [N, K]`` (MO-Gymnasium's convention), such as the
UAV network. :class:`PreferenceVectorEnv` wraps its ``SAME_STEP`` vector env: at the start
of each episode of each env it draws ``w`` on the simplex (Dirichlet(``alpha``): ``alpha =
1`` is uniform over the simplex; or one fixed ``w`` for evaluation), and every observation
becomes ``[obs, w]`` (``K`` more entries, in ``[0, 1]``). So ``w`` reaches the policy and the
critic as an input, and travels with every step of the batch, per column: the learner reads
it back from the last ``K`` observation entries and scalarises each step's V-trace values
with its own ``w`` (``Learner`` with ``preference_dims = K``). The final observation of an
episode (``info["final_obs"]``, bootstrapped when truncated) carries the episode's own
``w``, not the next episode's. Rewards are passed through (the actor's reward function takes
the vector from the info, as for any vector critic); ``info["preference"] [N, K]`` holds
the ``w`` of the step just taken.

Why a wrapper and not a model input of its own: the observation is what every runtime
already moves, stores and normalises, and what the deployed policy takes, so ``w`` needs no
new field anywhere (the deployed policy's input is documented as ``[obs, w]``). What
Gymnasium offers (``gymnasium.vector.VectorObservationWrapper``) transforms observations
without the episode boundaries this needs, so the wrapper is written against the vector
API directly (reset with ``reset_mask``, ``final_obs`` in ``SAME_STEP`` mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv

from impala_hybrid.validation import ConfigError


def simplex_point(w: Sequence[float], k: int, name: str = "weights") -> np.ndarray:
    """``w`` as a ``[k]`` float32 point of the simplex (scaled to sum 1), or a
    :class:`ConfigError` naming ``name``."""
    arr = np.asarray(w, np.float64).reshape(-1)
    if arr.shape != (k,) or not np.isfinite(arr).all() or (arr < 0).any() or arr.sum() <= 0:
        raise ConfigError(
            f"{name} = {list(w)!r} is invalid: {k} finite numbers >= 0 with a positive sum "
            "(they are scaled to sum to 1)"
        )
    return (arr / arr.sum()).astype(np.float32)


class PreferenceVectorEnv(VectorEnv):
    """See the module docstring. The per-episode draw is Dirichlet with parameters ``K *
    alpha * center`` (``center`` scaled to sum 1; default uniform, so ``alpha = 1`` is
    uniform on the simplex); ``fixed``: one ``w`` for every episode instead (evaluation at
    a preference)."""

    def __init__(
        self,
        env: VectorEnv,
        *,
        alpha: float = 1.0,
        center: Sequence[float] | None = None,
        fixed: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        weights = getattr(getattr(env, "config", None), "weights", None)
        if weights is None:
            raise ConfigError(
                "TrainConfig.preference needs a multi-objective env: one with config.weights "
                "and info['vector_reward'] (such as impala_hybrid/UAVNet-v0)"
            )
        if not alpha > 0:
            raise ConfigError(f"preference alpha = {alpha!r} is invalid: allowed range (0, inf)")
        self.env = env
        self.config = env.config  # type: ignore[attr-defined]
        self.num_objectives = k = len(weights)
        self.num_envs = env.num_envs
        self.alpha = float(alpha)
        mean = np.full(k, 1.0 / k) if center is None else simplex_point(center, k, "center")
        if (mean <= 0).any():
            raise ConfigError(
                f"preference center = {list(center or [])!r} is invalid: every objective "
                "needs a positive weight for a Dirichlet centred on it"
            )
        self.concentration = k * self.alpha * mean  # Dirichlet parameters, mean = mean
        self.fixed = None if fixed is None else simplex_point(fixed, k, "preference weights")
        self._rng = np.random.default_rng(seed)
        inner = env.single_observation_space
        if not isinstance(inner, gym.spaces.Box) or len(inner.shape) != 1:
            raise ConfigError(
                f"preference conditioning needs a flat Box observation, got {inner!r}"
            )
        low = np.concatenate([inner.low, np.zeros(k, np.float32)]).astype(np.float32)
        high = np.concatenate([inner.high, np.ones(k, np.float32)]).astype(np.float32)
        self.single_observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, self.num_envs
        )
        self.single_action_space = env.single_action_space
        self.action_space = env.action_space
        self.metadata = env.metadata
        for name in ("zone_structure", "constraint_names"):
            if hasattr(env, name):
                setattr(self, name, getattr(env, name))
        self.preference = np.zeros((self.num_envs, k), np.float32)
        self._draw(np.ones(self.num_envs, bool))

    def _draw(self, mask: np.ndarray) -> None:
        n = int(mask.sum())
        if n == 0:
            return
        if self.fixed is not None:
            self.preference[mask] = self.fixed
        else:
            draw = self._rng.dirichlet(self.concentration, size=n)
            self.preference[mask] = draw.astype(np.float32)

    def _with(self, obs: Any, w: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32).reshape(self.num_envs, -1)
        return np.concatenate([obs, w], axis=1)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """A new ``w`` for the envs that reset (all, or ``options["reset_mask"]``); a
        ``seed`` also seeds the draws (from its first value)."""
        obs, info = self.env.reset(seed=seed, options=options)  # type: ignore[arg-type]
        if seed is not None:
            first = seed if isinstance(seed, int) else int(seed[0])
            self._rng = np.random.default_rng([first, 0x5EED])
        mask = (options or {}).get("reset_mask")
        self._draw(np.ones(self.num_envs, bool) if mask is None else np.asarray(mask, bool))
        return self._with(obs, self.preference), info

    def step(self, actions: Any) -> tuple[np.ndarray, Any, Any, Any, dict[str, Any]]:
        obs, reward, term, trunc, info = self.env.step(actions)
        info = dict(info)
        info["preference"] = self.preference.copy()
        if "final_obs" in info:  # the finished episode's last observation, with its own w
            fo = info["final_obs"]
            if np.asarray(fo).dtype.kind == "O":  # SyncVectorEnv: None where none ended
                width = self.env.single_observation_space.shape[0]  # type: ignore[index]
                rows = np.zeros((self.num_envs, width), np.float32)
                for i in np.flatnonzero([row is not None for row in fo]):
                    rows[i] = np.asarray(fo[i], np.float32).reshape(-1)
                fo = rows
            info["final_obs"] = self._with(fo, self.preference)  # native envs: one dense array
        done = np.asarray(term, bool) | np.asarray(trunc, bool)
        self._draw(done)  # SAME_STEP: those rows of obs already begin the next episode
        return self._with(obs, self.preference), reward, term, trunc, info

    def close(self, **kwargs: Any) -> None:
        self.env.close(**kwargs)
