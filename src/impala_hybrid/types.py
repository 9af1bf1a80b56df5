"""The data that moves from actors to the learner: a time-major batch of unrolls.

One layout for every runtime (serial, local processes, Ray) and every action space. An unroll
of ``T`` steps carries ``T + 1`` observations: ``obs[T]`` is the first observation of the next
unroll, so the learner can bootstrap from it (TorchBeast MonoBeast's overlapping buffers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from impala_hybrid.models.distributions import HybridAction

Action = Tensor | HybridAction


@dataclasses.dataclass
class Batch:
    """``T`` steps of ``B`` unrolls, time-major.

    Attributes:
        obs: ``[T + 1, B, *obs_shape]`` float32; ``obs[T]`` is the bootstrap observation.
        first: ``[T + 1, B]`` bool; ``obs[t]`` is the first observation of an episode (an LSTM
            core resets its state there).
        actions: stored actions (see ``models.distributions``): ``[T, B]`` int64,
            ``[T, B, D]`` float, or a :class:`HybridAction` of both.
        behaviour_logp: ``[T, B, C]`` per-component log-probabilities under the acting policy.
        rewards: ``[T, B, K]`` rewards, ``K = 1`` for a scalar critic, one per objective
            (plus constraint terms) for a vector critic.
        terminated: ``[T, B]`` bool; the episode ended in a terminal state (no bootstrap).
        truncated: ``[T, B]`` bool; the episode was cut by a time limit (bootstrap from
            ``final_obs``, never from ``obs[t + 1]``, which belongs to the next episode).
        final_obs: ``[T, B, *obs_shape]``; where ``truncated``, the last observation of the
            episode (zeros elsewhere).
        core_state: recurrent state at ``obs[0]``, a tuple of ``[B, H]`` tensors (empty
            without a recurrent core).
        policy_version: ``[B]`` int64, the learner version whose weights produced the unroll.
    """

    obs: Tensor
    first: Tensor
    actions: Action
    behaviour_logp: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    final_obs: Tensor
    core_state: tuple[Tensor, ...]
    policy_version: Tensor

    @property
    def unroll_length(self) -> int:
        return int(self.terminated.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.terminated.shape[1])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(x: Tensor) -> Tensor:
            return x.to(device, non_blocking=non_blocking)

        actions = (
            HybridAction(move(self.actions.discrete), move(self.actions.continuous))
            if isinstance(self.actions, HybridAction)
            else move(self.actions)
        )
        return Batch(
            obs=move(self.obs),
            first=move(self.first),
            actions=actions,
            behaviour_logp=move(self.behaviour_logp),
            rewards=move(self.rewards),
            terminated=move(self.terminated),
            truncated=move(self.truncated),
            final_obs=move(self.final_obs),
            core_state=tuple(move(s) for s in self.core_state),
            policy_version=move(self.policy_version),
        )

    def tensors(self) -> list[Tensor]:
        """Every tensor of the batch in a fixed order (for copies and shared memory)."""
        acts = (
            [self.actions.discrete, self.actions.continuous]
            if isinstance(self.actions, HybridAction)
            else [self.actions]
        )
        return [
            self.obs,
            self.first,
            *acts,
            self.behaviour_logp,
            self.rewards,
            self.terminated,
            self.truncated,
            self.final_obs,
            *self.core_state,
            self.policy_version,
        ]

    def columns(self, idx: Tensor) -> Batch:
        """The unrolls ``idx`` (``[k]`` int64 indices along the batch axis), as a new batch."""

        def pick(x: Tensor, dim: int = 1) -> Tensor:
            return x.index_select(dim, idx)

        actions = (
            HybridAction(pick(self.actions.discrete), pick(self.actions.continuous))
            if isinstance(self.actions, HybridAction)
            else pick(self.actions)
        )
        return Batch(
            obs=pick(self.obs),
            first=pick(self.first),
            actions=actions,
            behaviour_logp=pick(self.behaviour_logp),
            rewards=pick(self.rewards),
            terminated=pick(self.terminated),
            truncated=pick(self.truncated),
            final_obs=pick(self.final_obs),
            core_state=tuple(pick(s, 0) for s in self.core_state),
            policy_version=pick(self.policy_version, 0),
        )

    def share_memory_(self) -> Batch:
        """Move every tensor to shared memory (in place), for slots written by actor processes."""
        for t in self.tensors():
            t.share_memory_()
        return self

    def copy_(self, src: Batch) -> Batch:
        """Copy ``src`` into this batch's tensors (same layout), e.g. an unroll into its slot."""
        for dst, s in zip(self.tensors(), src.tensors(), strict=True):
            dst.copy_(s)
        return self

    def clone(self) -> Batch:
        """A deep copy with its own storage."""
        return Batch.concat([self])

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        """Join unrolls along the batch axis (dim 1 for time-major fields, 0 for per-unroll)."""
        if not batches:
            raise ValueError("Batch.concat needs at least one batch")

        def cat(xs: Sequence[Tensor], dim: int = 1) -> Tensor:
            return torch.cat(list(xs), dim=dim)

        first = batches[0]
        if isinstance(first.actions, HybridAction):
            acts: list[HybridAction] = [b.actions for b in batches]  # type: ignore[misc]
            actions: Action = HybridAction(
                cat([a.discrete for a in acts]), cat([a.continuous for a in acts])
            )
        else:
            actions = cat([b.actions for b in batches])  # type: ignore[misc]
        return Batch(
            obs=cat([b.obs for b in batches]),
            first=cat([b.first for b in batches]),
            actions=actions,
            behaviour_logp=cat([b.behaviour_logp for b in batches]),
            rewards=cat([b.rewards for b in batches]),
            terminated=cat([b.terminated for b in batches]),
            truncated=cat([b.truncated for b in batches]),
            final_obs=cat([b.final_obs for b in batches]),
            core_state=tuple(
                cat([b.core_state[i] for b in batches], dim=0) for i in range(len(first.core_state))
            ),
            policy_version=cat([b.policy_version for b in batches], dim=0),
        )
