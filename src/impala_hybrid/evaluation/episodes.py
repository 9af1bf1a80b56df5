"""Greedy evaluation of a policy on any Gymnasium env: return, length and the env's own
episode-end ``info`` (such as ``success``), on fixed seeds.

The UAV env has its own harness (:mod:`impala_hybrid.evaluation.rollout`: common random
numbers, objectives, latency tails). Every other env goes through :func:`evaluate_episodes`,
which needs nothing from the env beyond the Gymnasium API, so a ``module:factory`` env is
evaluated the way it is trained.

Which episodes. ``num_envs`` copies are reset once with fixed seeds and then autoreset
(``SAME_STEP``); episode ``j = r * num_envs + i`` is copy ``i``'s ``r``-th episode, and the
first ``episodes`` of them are kept. Taking the first episodes *to finish* instead (as this
module's predecessor did) biases the sample towards short episodes: on a task where failing
ends an episode early, the success rate came out too low. Seeds: with ``split`` (``"eval"``
for reported numbers, ``"validation"`` for checkpoint selection during training) copy ``i``
is reset with :func:`~impala_hybrid.evaluation.rollout.episode_seeds` ``(seed, num_envs,
split)[i]``, so the splits never share episodes; without it with ``seed + i`` (Gymnasium's
``reset(seed=seed)``), what the learning tests were written against.

Info. Gymnasium's vector envs report the last step's ``info`` of an episode under
``infos["final_info"]`` (``SAME_STEP`` autoreset); a native vector env that has no
``final_info`` is read at the top level. Every key whose value is a number (bool, int or
float; one per env) is recorded per episode, NaN where an episode did not report it, and
:meth:`EpisodeStats.summary` averages it over the episodes that did. Non-numeric and nested
values (strings, arrays, ``episode`` dicts) are skipped.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.evaluation.rollout import episode_seeds

Policy = Callable[[np.ndarray], Any]


@dataclasses.dataclass
class EpisodeStats:
    """Per-episode results, ``[episodes]`` arrays in episode order (see module docstring)."""

    returns: np.ndarray
    lengths: np.ndarray
    info: dict[str, np.ndarray]  # numeric info keys at episode end (NaN where absent)

    def summary(self) -> dict[str, Any]:
        """JSON-ready means (and the return's sample std) over the episodes."""
        n = int(self.returns.shape[0])
        std = float(self.returns.std(ddof=1)) if n > 1 else 0.0
        info = {}
        for key, vals in self.info.items():
            seen = vals[~np.isnan(vals)]
            info[key] = float(seen.mean()) if seen.size else math.nan
        return {
            "episodes": n,
            "return": {"mean": float(self.returns.mean()), "std": std},
            "length": {"mean": float(self.lengths.mean())},
            "info": info,
        }


def _numeric(value: Any, n: int) -> np.ndarray | None:
    """``value`` as ``[n]`` float64 if it is one number per env, else None."""
    if not isinstance(value, np.ndarray) or value.shape != (n,) or value.dtype.kind not in "biuf":
        return None
    return value.astype(np.float64)


def _episode_end_info(infos: dict[str, Any], n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``key -> (values [n], present [n])`` of the numeric info of episodes that just ended."""
    source = infos.get("final_info", infos)
    out = {}
    for key, value in source.items():
        if key.startswith("_") or key in ("final_info", "final_obs"):
            continue
        vals = _numeric(value, n)
        if vals is None:
            continue
        present = source.get(f"_{key}")
        mask = np.asarray(present, bool) if present is not None else np.ones(n, bool)
        out[key] = (vals, mask)
    return out


def evaluate_episodes(
    policy: Policy,
    env_id: str,
    episodes: int,
    seed: int,
    *,
    env_kwargs: dict[str, Any] | None = None,
    num_envs: int = 8,
    split: str | None = None,
) -> EpisodeStats:
    """Run ``policy`` (``obs [N, ...] -> batched env action``, optionally with ``reset(n)``
    and ``observe_done(done)``, as :class:`~impala_hybrid.evaluation.policy.TorchPolicy` and
    the deployed policies have) for ``episodes`` whole episodes (see module docstring)."""
    if episodes < 1 or num_envs < 1:
        raise ValueError(f"episodes = {episodes} and num_envs = {num_envs} must both be >= 1")
    rounds = -(-episodes // num_envs)
    env = make_vector_env(env_id, num_envs, env_kwargs)
    returns = np.full((rounds, num_envs), np.nan)
    lengths = np.zeros((rounds, num_envs))
    info: dict[str, np.ndarray] = {}
    try:
        seeds: Any = seed if split is None else episode_seeds(seed, num_envs, split).tolist()
        obs, _ = env.reset(seed=seeds)
        if callable(getattr(policy, "reset", None)):
            policy.reset(num_envs)  # type: ignore[attr-defined]
        running, steps = np.zeros(num_envs), np.zeros(num_envs)
        done_count = np.zeros(num_envs, np.int64)
        rows = np.arange(num_envs)
        while done_count.min() < rounds:
            obs, reward, term, trunc, infos = env.step(policy(obs))
            running += np.asarray(reward, np.float64).reshape(num_envs, -1)[:, 0]
            steps += 1
            done = np.asarray(term, bool) | np.asarray(trunc, bool)
            keep = done & (done_count < rounds)
            r = done_count[keep]
            returns[r, rows[keep]] = running[keep]
            lengths[r, rows[keep]] = steps[keep]
            if keep.any():
                for key, (vals, present) in _episode_end_info(infos, num_envs).items():
                    table = info.setdefault(key, np.full((rounds, num_envs), np.nan))
                    ok = keep & present
                    table[done_count[ok], rows[ok]] = vals[ok]
            done_count += done
            running[done] = 0.0
            steps[done] = 0.0
            if callable(getattr(policy, "observe_done", None)):
                policy.observe_done(done)  # type: ignore[attr-defined]
    finally:
        env.close()
    return EpisodeStats(
        returns.reshape(-1)[:episodes],
        lengths.reshape(-1)[:episodes],
        {k: v.reshape(-1)[:episodes] for k, v in info.items()},
    )
