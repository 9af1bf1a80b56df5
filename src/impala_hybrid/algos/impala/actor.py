"""The actor: step a vector env with a policy for ``T`` steps and return a :class:`Batch`.

The env must autoreset in Gymnasium's ``SAME_STEP`` mode: every step is a real transition
(no wasted reset steps in the unroll), ``obs[t + 1]`` is the next episode's first observation
when step ``t`` ended an episode (so ``first[t + 1] = done[t]``), and the final observation of
a truncated episode comes in ``infos["final_obs"]`` for the learner's bootstrap.

Actors store the behaviour log-probability of each action *per component* (discrete and
continuous for hybrid actions) so the learner can clip joint or per-component ratios.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from impala_hybrid.models.actor_critic import ActorCritic
from impala_hybrid.models.distributions import HybridAction
from impala_hybrid.types import Action, Batch

RewardFn = Callable[[np.ndarray, dict[str, Any]], np.ndarray]


def scalar_reward(reward: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """The env's scalar reward as ``[N, 1]``."""
    return np.asarray(reward, np.float32).reshape(-1, 1)


class Actor:
    """Runs unrolls on one vector env; holds the env's current observation and LSTM state."""

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        model: ActorCritic,
        unroll_length: int,
        *,
        seed: int,
        reward_fn: RewardFn = scalar_reward,
        num_rewards: int = 1,
        desync_steps: int = 0,
    ) -> None:
        mode = env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"the actor needs a vector env with autoreset_mode SAME_STEP, got {mode!r}"
            )
        self.env = env
        self.model = model
        self.unroll_length = unroll_length
        self.reward_fn = reward_fn
        self.num_rewards = num_rewards
        self.num_envs = env.num_envs
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        obs, _ = env.reset(seed=seed)
        self.obs = torch.as_tensor(np.asarray(obs, np.float32).reshape(self.num_envs, -1))
        self.first = torch.ones(self.num_envs, dtype=torch.bool)
        self.core_state = model.initial_state(self.num_envs)
        self._ep_return = np.zeros(self.num_envs)
        self._ep_length = np.zeros(self.num_envs, np.int64)
        self.episode_returns: list[float] = []  # completed episodes since the last drain
        self.episode_lengths: list[int] = []
        self.env_steps = 0
        # Desynchronised episode phases: env i's first episode is cut (a truncation, so the
        # learner bootstraps) after cut[i] ~ U{1..desync_steps} steps; 0 = no cut pending.
        # Without it every env of a vector env starts, and with fixed-length episodes ends,
        # together: each batch then sees one phase of the episode only (one time-of-episode
        # window, all truncation bootstraps in the same update), a strongly correlated,
        # cyclic gradient. Drawn from the actor's seed, so runs stay reproducible. Measured on
        # the UAV env: no gain (docs/results.md), so TrainConfig leaves it off. Restarting one
        # env uses reset(options={"reset_mask": ...}) (Gymnasium's vector API, >= 1.1).
        self._cut = np.zeros(self.num_envs, np.int64)
        if desync_steps > 0:
            rng = np.random.default_rng([seed, 0xDE5C])
            self._cut = rng.integers(1, desync_steps + 1, self.num_envs)

    def drain_episodes(self) -> tuple[list[float], list[int]]:
        """Completed episodes' returns and lengths since the last call."""
        out = (self.episode_returns, self.episode_lengths)
        self.episode_returns, self.episode_lengths = [], []
        return out

    def state_dict(self) -> dict[str, Any]:
        """Everything the next unroll depends on besides the model: observation, episode-start
        flags, LSTM state, the sampling generator, episode trackers, the step counter and,
        where the env supports ``get_state`` (the native UAV env), the env itself.

        ``env`` is None for other envs (Gymnasium's ``SyncVectorEnv`` holds arbitrary Python
        objects per env, which cannot be saved without pickling code); see
        :meth:`load_state_dict` for what resuming then does.
        """
        get_state = getattr(self.env, "get_state", None)
        return {
            "obs": self.obs.clone(),
            "first": self.first.clone(),
            "core_state": [s.clone() for s in self.core_state],
            "generator": self.generator.get_state(),
            "ep_return": self._ep_return.copy(),
            "ep_length": self._ep_length.copy(),
            "episode_returns": list(self.episode_returns),
            "episode_lengths": list(self.episode_lengths),
            "env_steps": self.env_steps,
            "cut": self._cut.copy(),
            "env": get_state() if callable(get_state) else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        With a saved env state the next unroll is exactly the one the saved actor would have
        produced. Without one (env not saveable, or this env cannot ``set_state``) the envs
        restart: they are reset with a seed derived from ``(seed, env_steps)`` (deterministic,
        distinct from the initial seed), every env starts a new episode and the unfinished
        episodes are dropped from the return statistics. The sampling generator is still
        restored, so such a resume is reproducible but not identical to an uninterrupted run.
        """
        self.env_steps = int(state["env_steps"])
        self.generator.set_state(state["generator"])
        if "cut" in state:  # absent in checkpoints written before desynchronisation existed
            self._cut = np.asarray(state["cut"], np.int64).copy()
        set_state = getattr(self.env, "set_state", None)
        if state.get("env") is not None and callable(set_state):
            set_state(state["env"])
            obs = torch.as_tensor(state["obs"])
            if obs.shape != self.obs.shape:
                raise ValueError(
                    f"saved obs has shape {tuple(obs.shape)}, expected {tuple(self.obs.shape)}"
                )
            self.obs = obs.clone()
            self.first = torch.as_tensor(state["first"]).clone()
            self.core_state = tuple(torch.as_tensor(s).clone() for s in state["core_state"])
            self._ep_return = np.asarray(state["ep_return"], np.float64).copy()
            self._ep_length = np.asarray(state["ep_length"], np.int64).copy()
            self.episode_returns = [float(x) for x in state["episode_returns"]]
            self.episode_lengths = [int(x) for x in state["episode_lengths"]]
            return
        restart_seed = int(
            np.random.SeedSequence([self.seed, self.env_steps]).generate_state(1, np.uint32)[0]
        )
        obs, _ = self.env.reset(seed=restart_seed)
        self.obs = torch.as_tensor(np.asarray(obs, np.float32).reshape(self.num_envs, -1))
        self.first = torch.ones(self.num_envs, dtype=torch.bool)
        self.core_state = self.model.initial_state(self.num_envs)
        self._ep_return = np.zeros(self.num_envs)
        self._ep_length = np.zeros(self.num_envs, np.int64)
        self.episode_returns, self.episode_lengths = [], []

    def unroll(self, policy_version: int = 0) -> Batch:
        """``T`` steps of every env: a :class:`Batch` of normal (not inference) tensors.

        The loop runs under ``torch.inference_mode`` (cheaper than ``no_grad``: no version
        counters or view tracking on the actor's hot path) and writes into buffers allocated
        before it, so the batch it returns can be trained on directly.
        """
        t_len, n = self.unroll_length, self.num_envs
        obs_dim = self.obs.shape[1]
        obs_buf = torch.empty(t_len + 1, n, obs_dim)
        first_buf = torch.empty(t_len + 1, n, dtype=torch.bool)
        final_obs = torch.zeros(t_len, n, obs_dim)
        rewards = torch.empty(t_len, n, self.num_rewards)
        terminated = torch.empty(t_len, n, dtype=torch.bool)
        truncated = torch.empty(t_len, n, dtype=torch.bool)
        logps: list[torch.Tensor] = []
        actions: list[Action] = []
        start_state = tuple(s.clone() for s in self.core_state)
        obs, first, core_state = self.obs, self.first, self.core_state
        with torch.inference_mode():
            for t in range(t_len):
                obs_buf[t] = obs
                first_buf[t] = first
                out = self.model(obs[None], first[None], core_state, with_values=False)
                dist = self.model.distribution({k: v[0] for k, v in out.params.items()})
                action = dist.sample(self.generator)
                logps.append(dist.log_prob_parts(action))
                actions.append(action)
                env_action = self.model.action.to_env(dist.to_env(action))
                next_obs, reward, term, trunc, info = self.env.step(env_action)
                term = np.asarray(term, bool)
                trunc = np.asarray(trunc, bool)
                if self._cut.any():
                    next_obs, trunc, info = self._cut_first_episodes(next_obs, term, trunc, info)
                rewards[t] = torch.from_numpy(
                    np.asarray(self.reward_fn(np.asarray(reward), info), np.float32)
                )
                terminated[t] = torch.from_numpy(term)
                truncated[t] = torch.from_numpy(trunc)
                if trunc.any():
                    fo = info["final_obs"]
                    for i in np.flatnonzero(trunc):
                        final_obs[t, i] = torch.as_tensor(np.asarray(fo[i], np.float32).reshape(-1))
                done = term | trunc
                self._track_episodes(np.asarray(reward, np.float64).reshape(n, -1)[:, 0], done)
                obs = torch.from_numpy(np.asarray(next_obs, np.float32).reshape(n, -1))
                first = torch.from_numpy(done)
                core_state = out.core_state
            obs_buf[t_len] = obs
            first_buf[t_len] = first
        # Outside inference mode: clones and stacks of inference tensors are normal tensors.
        self.obs, self.first = obs.clone(), first.clone()
        self.core_state = tuple(s.clone() for s in core_state)
        self.env_steps += t_len * n
        stacked: Action
        if isinstance(actions[0], HybridAction):
            hybrid: list[HybridAction] = actions  # type: ignore[assignment]
            stacked = HybridAction(
                torch.stack([a.discrete for a in hybrid]),
                torch.stack([a.continuous for a in hybrid]),
            )
        else:
            stacked = torch.stack(actions)  # type: ignore[arg-type]
        return Batch(
            obs=obs_buf,
            first=first_buf,
            actions=stacked,
            behaviour_logp=torch.stack(logps),
            rewards=rewards,
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
            core_state=start_state,
            policy_version=torch.full((n,), policy_version, dtype=torch.int64),
        )

    def _cut_first_episodes(
        self, next_obs: Any, term: np.ndarray, trunc: np.ndarray, info: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Truncate the envs whose desynchronising cut falls on this step: their next
        observation becomes ``final_obs`` and they restart (``reset_mask``, streams continued)."""
        n = self.num_envs
        running = ~(term | trunc)
        cut = running & (self._ep_length + 1 == self._cut)
        self._cut[~running | cut] = 0  # one cut per env, in its first episode only
        if not cut.any():
            return next_obs, trunc, info
        obs = np.array(next_obs, np.float32).reshape(n, -1)  # a copy: reset may reuse buffers
        final_obs = np.zeros_like(obs)
        if trunc.any():
            final_obs[trunc] = np.stack(
                [
                    np.asarray(info["final_obs"][i], np.float32).reshape(-1)
                    for i in np.flatnonzero(trunc)
                ]
            )
        final_obs[cut] = obs[cut]
        reset_obs, _ = self.env.reset(options={"reset_mask": cut})
        obs[cut] = np.asarray(reset_obs, np.float32).reshape(n, -1)[cut]
        return obs, trunc | cut, {**info, "final_obs": final_obs}

    def _track_episodes(self, reward: np.ndarray, done: np.ndarray) -> None:
        self._ep_return += reward
        self._ep_length += 1
        for i in np.flatnonzero(done):
            self.episode_returns.append(float(self._ep_return[i]))
            self.episode_lengths.append(int(self._ep_length[i]))
        self._ep_return[done] = 0.0
        self._ep_length[done] = 0
