"""``Learner.step(batch) -> metrics``: one IMPALA update, with no processes or queues.

Runtimes (serial, local processes, Ray) only feed batches to ``step`` and publish the
weights; everything about learning is here and in ``ops/``:

1. One forward pass over the ``T + 1`` observations of each unroll (time folded into the
   batch; an LSTM core resets at episode starts): distribution parameters and values.
2. Per-component log-ratios ``log pi(a) - log mu(a)`` ``[T, B, C]`` for V-trace (joint or
   per-component clipping, ``IMPALAConfig.ratio_mode``).
3. ``ops.vtrace`` with discounts ``gamma (1 - terminated)``; truncated steps bootstrap from
   the value of the episode's final observation. With a vector critic (``K`` values) V-trace
   runs per objective and the policy-gradient advantages are scalarised with the reward
   weights afterwards.
4. ``ops.losses``: policy gradient + ``baseline_coef`` value loss + ``entropy_coef`` entropy
   loss (each a mean over the T*B steps, see ``ops/losses.py``).
5. Global-norm gradient clipping, optimizer step, linear schedules on the fraction of the
   sample budget consumed. A non-finite loss or gradient skips the update and says so in the
   metrics instead of corrupting the weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.models.actor_critic import ActorCritic
from impala_hybrid.models.distributions import HybridAction
from impala_hybrid.ops.losses import baseline_loss, entropy_loss, policy_gradient_loss
from impala_hybrid.ops.vtrace import vtrace
from impala_hybrid.types import Batch


def _linear(start: float, end: float | None, progress: float) -> float:
    return start if end is None else start + (end - start) * min(max(progress, 0.0), 1.0)


class Learner:
    """Owns the model's trainable state and the optimizer; ``step`` is one update."""

    def __init__(
        self,
        model: ActorCritic,
        config: IMPALAConfig,
        *,
        total_samples: int | None = None,
        reward_weights: Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.total_samples = total_samples
        k = model.num_values
        if reward_weights is None:
            if k != 1:
                raise ValueError(f"a vector critic with {k} values needs reward_weights [{k}]")
            reward_weights = torch.ones(1)
        if reward_weights.shape != (k,):
            raise ValueError(
                f"reward_weights has shape {tuple(reward_weights.shape)}, expected ({k},)"
            )
        self.reward_weights = reward_weights.to(self.device, torch.float32)
        params = list(self.model.parameters())
        if config.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(
                params, lr=config.lr, eps=config.adam_eps
            )
        else:
            self.optimizer = torch.optim.RMSprop(
                params, lr=config.lr, eps=config.rmsprop_eps, alpha=config.rmsprop_alpha
            )
        self.version = 0  # successful updates so far: the policy version actors record
        self.samples = 0  # env steps consumed
        self.skipped = 0  # updates skipped by the non-finite guard

    @property
    def progress(self) -> float:
        return self.samples / self.total_samples if self.total_samples else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "version": self.version,
            "samples": self.samples,
            "skipped": self.skipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = int(state["version"])
        self.samples = int(state["samples"])
        self.skipped = int(state["skipped"])

    def step(self, batch: Batch, env_steps: int | None = None) -> dict[str, float]:
        """One update on ``batch`` (any device); returns scalar metrics.

        ``env_steps``: how many of the batch's ``T * B`` samples are new env steps (the
        sample budget and the schedules count those); default all, less with replay.
        """
        cfg = self.config
        b = batch.to(self.device)
        t_len, n = b.unroll_length, b.batch_size
        lr = _linear(cfg.lr, cfg.lr_final, self.progress)
        ent_coef = _linear(cfg.entropy_coef, cfg.entropy_coef_final, self.progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        lag = (self.version - b.policy_version).float()  # updates since the actor's weights
        any_truncated = bool(b.truncated.any().item())
        out = self.model(b.obs, b.first, b.core_state, return_core_states=any_truncated)
        values = out.values  # [T + 1, B, K]
        params_t = {k: v[:t_len] for k, v in out.params.items()}
        dist = self.model.distribution(params_t)
        target_logp = dist.log_prob_parts(b.actions)  # [T, B, C]
        log_rhos = target_logp.detach() - b.behaviour_logp

        final_values = torch.zeros_like(values[:t_len])
        if any_truncated:  # V(final observation) of episodes cut by a time limit
            idx = b.truncated.nonzero(as_tuple=True)
            state: tuple[Tensor, ...] = ()
            if out.core_outputs is not None and out.cell_states is not None:
                state = (out.core_outputs[idx], out.cell_states[idx])
            with torch.no_grad():
                final_values[idx] = self.model.values_after(b.final_obs[idx], state)

        rewards = b.rewards * cfg.reward_scale
        if cfg.reward_clip is not None:
            rewards = rewards.clamp(-cfg.reward_clip, cfg.reward_clip)
        discounts = cfg.gamma * (~b.terminated).float()
        vt = vtrace(
            log_rhos if log_rhos.shape[-1] > 1 else log_rhos[..., 0],
            discounts,
            rewards,
            values[:t_len],
            values[t_len],
            truncated=b.truncated,
            final_values=final_values,
            rho_bar=cfg.rho_bar,
            c_bar=cfg.c_bar,
            pg_rho_bar=cfg.pg_rho_bar,
            lam=cfg.lam,
            ratio_mode=cfg.ratio_mode,  # type: ignore[arg-type]
        )
        advantages = vt.pg_advantages @ self.reward_weights  # [T, B]: scalarise after V-trace
        if cfg.normalize_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        entropy_parts = dist.entropy_parts()  # [T, B, C]; once: the quadrature is not free
        entropy = entropy_parts.sum(-1)
        pg_loss = policy_gradient_loss(target_logp.sum(-1), advantages)
        v_loss = baseline_loss(vt.vs, values[:t_len])
        ent_loss = entropy_loss(entropy)
        loss = pg_loss + cfg.baseline_coef * v_loss + ent_coef * ent_loss

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        finite = bool(torch.isfinite(loss).item()) and bool(torch.isfinite(grad_norm).item())
        if finite:
            self.optimizer.step()
            self.version += 1
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
        self.samples += t_len * n if env_steps is None else env_steps

        with torch.no_grad():
            rhos = vt.rhos
            v_pred = values[:t_len]
            var_vs = vt.vs.var()
            explained = 1.0 - (vt.vs - v_pred).var() / var_vs if var_vs > 0 else torch.tensor(0.0)
            metrics = {
                "loss": loss.item(),
                "loss_pg": pg_loss.item(),
                "loss_baseline": v_loss.item(),
                "loss_entropy": ent_loss.item(),
                "entropy": entropy.mean().item(),
                "rho_mean": rhos.mean().item(),
                "rho_max": rhos.max().item(),
                "rho_clip_frac": (rhos > cfg.rho_bar).float().mean().item(),
                "c_clip_frac": (rhos > cfg.c_bar).float().mean().item(),
                "grad_norm": grad_norm.item() if math.isfinite(grad_norm.item()) else math.inf,
                "lr": lr,
                "entropy_coef": ent_coef,
                "policy_lag_mean": lag.mean().item(),
                "policy_lag_max": lag.max().item(),
                "value_mean": v_pred.mean().item(),
                "vs_mean": vt.vs.mean().item(),
                "advantage_mean": advantages.mean().item(),
                "explained_variance": float(explained),
                "skipped": 0.0 if finite else 1.0,
                "skipped_total": float(self.skipped),
                "version": float(self.version),
            }
            if isinstance(b.actions, HybridAction):
                parts = entropy_parts.mean(dim=(0, 1))
                metrics["entropy_discrete"] = parts[0].item()
                metrics["entropy_continuous"] = parts[1].item()
        return metrics
