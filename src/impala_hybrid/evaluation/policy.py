"""A trained model as a policy (obs -> env action), and its returns on fixed seeds.

``TorchPolicy`` turns an :class:`~impala_hybrid.models.actor_critic.ActorCritic` into the same
callable interface the classical heuristics have (``obs [N, ...] -> batched env action``), so
one evaluation harness serves both. Deterministic by default (the distribution's mode: the
policy one deploys); ``deterministic=False`` samples with its own seeded generator;
``discrete_choice="sample"`` draws only the discrete choice (Gumbel noise from a seeded NumPy
generator, :func:`~impala_hybrid.deploy.inference.gumbel_noise`, as every exported artifact
of such a policy does, so the two take the same actions) and keeps the continuous parameters
at their mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from impala_hybrid.deploy.inference import DISCRETE_CHOICES, gumbel_noise
from impala_hybrid.evaluation.episodes import evaluate_episodes
from impala_hybrid.models.actor_critic import ActorCritic
from impala_hybrid.threads import torch_threads


class TorchPolicy:
    """Callable policy over batched observations, keeping LSTM state between calls.

    Each call runs on ``threads`` intra-op threads (default 1, see
    :mod:`impala_hybrid.threads`: with torch's one per core, evaluating on a busy machine
    was 3-10x slower) and leaves the process's setting as it was, and in float32 even where
    the network trains its trunk in bfloat16 (``ActorCritic.full_precision``): the policy
    evaluated is the one exported artifacts compute.
    """

    def __init__(
        self,
        model: ActorCritic,
        *,
        deterministic: bool = True,
        seed: int = 0,
        threads: int = 1,
        discrete_choice: str = "mode",
    ) -> None:
        if discrete_choice not in DISCRETE_CHOICES:
            raise ValueError(
                f"discrete_choice = {discrete_choice!r} is invalid: must be one of "
                f"{DISCRETE_CHOICES}"
            )
        self.model = model
        self.threads = threads
        self.deterministic = deterministic
        self.discrete_choice = discrete_choice
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.state: tuple[torch.Tensor, ...] = ()
        self.first: torch.Tensor | None = None

    def reset(self, num_envs: int) -> None:
        self.state = self.model.initial_state(num_envs)
        self.first = torch.ones(num_envs, dtype=torch.bool)

    def observe_done(self, done: np.ndarray) -> None:
        """Mark environments whose next observation starts a new episode."""
        self.first = torch.as_tensor(np.asarray(done, bool))

    def __call__(self, obs: np.ndarray) -> Any:
        with torch_threads(self.threads), torch.no_grad(), self.model.full_precision():
            return self._act(obs)

    def _act(self, obs: np.ndarray) -> Any:
        x = torch.as_tensor(np.asarray(obs, np.float32).reshape(len(obs), -1))
        if self.first is None or self.first.shape[0] != x.shape[0]:
            self.reset(x.shape[0])
        assert self.first is not None
        out = self.model(x[None], self.first[None], self.state, with_values=False)
        self.state = out.core_state
        self.first = torch.zeros_like(self.first)
        dist = self.model.distribution({k: v[0] for k, v in out.params.items()})
        if not self.deterministic:
            action = dist.sample(self.generator)
        elif self.discrete_choice == "sample" and self.model.action.num_actions:
            noise = gumbel_noise(self.rng, x.shape[0], self.model.action.num_actions)
            action = dist.choice_mode(torch.from_numpy(noise))
        else:
            action = dist.mode()
        return self.model.action.to_env(dist.to_env(action))


class WithPreference:
    """A preference-conditioned policy (``envs/preference.py``) held at objective weights
    ``w``: every observation gets ``w`` appended, the layout it was trained on. The policy
    one deploys for an operator's chosen trade-off."""

    def __init__(self, policy: Any, weights: np.ndarray) -> None:
        self.policy = policy
        self.weights = np.asarray(weights, np.float32).reshape(-1)

    def reset(self, num_envs: int) -> None:
        self.policy.reset(num_envs)

    def observe_done(self, done: np.ndarray) -> None:
        self.policy.observe_done(done)

    def __call__(self, obs: np.ndarray) -> Any:
        x = np.asarray(obs, np.float32).reshape(len(obs), -1)
        w = np.broadcast_to(self.weights, (len(x), len(self.weights)))
        return self.policy(np.concatenate([x, w], axis=1))


def evaluate_returns(
    model: ActorCritic,
    env_id: str,
    episodes: int,
    seed: int,
    *,
    env_kwargs: dict[str, Any] | None = None,
    num_envs: int = 8,
    deterministic: bool = True,
) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes on envs seeded from ``seed`` (episode
    ``j`` is env ``j % num_envs``'s ``j // num_envs``-th; see ``evaluation.episodes``)."""
    policy = TorchPolicy(model, deterministic=deterministic, seed=seed)
    stats = evaluate_episodes(
        policy, env_id, episodes, seed, env_kwargs=env_kwargs, num_envs=num_envs
    )
    return stats.returns
