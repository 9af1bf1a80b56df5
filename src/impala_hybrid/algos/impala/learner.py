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
   weights afterwards; optional standardisation acts on the advantage before its ratio
   weighting (see :meth:`Learner.targets`).
   With PopArt (``IMPALAConfig.popart``; van Hasselt et al. 2016, Hessel et al. 2019) the
   value head learns normalised values ``n(x)``, ``V(x) = sigma n(x) + mu`` per objective,
   with running target statistics that the value layer is rescaled to follow; V-trace runs
   on unnormalised values, the value loss on normalised ones.
4. ``ops.losses``: policy gradient + ``baseline_coef`` value loss + ``entropy_coef`` entropy
   loss (each a mean over the T*B steps, see ``ops/losses.py``). With
   ``continuous_pg = "reparameterized"`` the continuous part's policy gradient is instead the
   action gradient of a learned critic ``Q(x, k, a)`` at a reparameterised sample of the
   current policy, and with ``"qprop"`` the score function with that critic's first-order
   Taylor expansion as control variate plus its analytic gradient (see
   :meth:`Learner.losses`).
5. Global-norm gradient clipping, optimizer step, linear schedules on the fraction of the
   sample budget consumed. A non-finite loss or gradient skips the update and says so in the
   metrics instead of corrupting the weights.

Synchronous multi-learner training (K learners, each on a shard of the batch) changes no
stage: the learner is given a :class:`~impala_hybrid.algos.comm.TorchDistComm` instead of
the default single-process :class:`~impala_hybrid.algos.comm.Comm`, and every reduction over
the batch that is not a loss mean goes through it (gradient average before clipping, the
skip decision, advantage, PopArt, entropy and observation statistics, env-step counts), so
each rank makes the update one learner would make on the combined batch. The metrics are
the rank's own shard's, except ``grad_norm``, ``skipped`` and the counters (global).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from impala_hybrid.algos.comm import Comm
from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.models.actor_critic import ActorCritic
from impala_hybrid.models.distributions import (
    ActionDistribution,
    CategoricalDistribution,
    HybridAction,
    SquashedGaussianDistribution,
)
from impala_hybrid.ops.lagrange import PIDState, pid_init, pid_lagrange
from impala_hybrid.ops.losses import (
    baseline_loss,
    clipped_surrogate_loss,
    entropy_loss,
    expected_policy_gradient_loss,
    log_barrier_loss,
    policy_gradient_loss,
)
from impala_hybrid.ops.returns import n_step_bootstrapped_returns
from impala_hybrid.ops.vtrace import VTraceReturns, vtrace
from impala_hybrid.types import Batch
from impala_hybrid.validation import ConfigError


def make_optimizer(params: Iterable[Tensor], config: IMPALAConfig) -> torch.optim.Optimizer:
    """``config.optimizer`` over ``params``: Adam, or RMSProp with the paper's epsilon and
    decay.

    Adam is torch's fused implementation (one kernel over all parameters, the same update
    rule): on the UAV preset's model it takes the optimizer step from ~0.6 ms to ~0.16 ms of
    a ~12 ms learner step on one CPU thread (docs/benchmarks.md). Checkpoints written with
    the plain implementation load into it (the state has the same layout)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, eps=config.adam_eps, fused=True)
    return torch.optim.RMSprop(
        params, lr=config.lr, eps=config.rmsprop_eps, alpha=config.rmsprop_alpha
    )


def _linear(start: float, end: float | None, progress: float) -> float:
    return start if end is None else start + (end - start) * min(max(progress, 0.0), 1.0)


_POPART_MIN_VAR = 1e-4
"""Floor on PopArt's variance (sigma >= 0.01): a constant target must not divide by ~0."""


def _sigma(mu: Tensor, nu: Tensor) -> Tensor:
    return (nu - mu.square()).clamp(min=_POPART_MIN_VAR).sqrt()


class Forward(NamedTuple):
    """The current weights on a batch."""

    values: Tensor  # [T + 1, B, K] unnormalised values (graph attached)
    dist: ActionDistribution[Any]  # policy at the first T observations
    target_logp: Tensor  # [T, B, C] per-component log pi(a_t | x_t) (graph attached)
    final_values: Tensor  # [T, B, K] V(final observation) where truncated, else 0 (detached)
    action_values: Tensor | None  # [T, B, A] Q(x_t, k) = w . V(x_t) + a(x_t, k), if the head exists
    chosen_action_values: Tensor | None  # [T, B] Q(x_t, k_t) of the taken choices
    critic_q: Tensor | None  # [T, B] Q(x_t, k_t, a_t) = w . V(x_t) + c(x_t, k_t, a_t) of the
    # behaviour's actions, with the action critic (continuous_pg reparameterized or qprop)
    critic_ascent: Tensor | None  # [T, B] what the continuous part climbs through the frozen
    # critic: c(x_t, k_t, tanh(mean_t + std_t eps_t)) (reparameterized), or g_t . mean_t with
    # g_t = dc/du at u = mean_t, detached (qprop)
    critic_taylor: Tensor | None  # [T, B] qprop's control variate g_t . (u_t - mean_t), detached
    entropy_dist: ActionDistribution[Any] | None = None  # the policy the entropy bonus reads,
    # with its Gaussian means detached (IMPALAConfig.entropy_moves_means = false); None: dist


class Targets(NamedTuple):
    """What the losses regress to (detached)."""

    vtrace: VTraceReturns
    log_rhos: Tensor  # [T, B, C] per-component log pi - log mu
    advantages: Tensor  # [T, B] rho^pg_s * A_s (A_s alone with pg_clip_eps), scalarised and
    # normalised if configured
    popart_mu: Tensor  # [K] PopArt statistics including this batch (the current ones if off)
    popart_nu: Tensor
    q_scalar: Tensor  # [T, B] w . q_s: the regression target of Q(x_s, k_s)
    adv_scale: Tensor  # [] (or [T, B] with PopArt and per-step preferences) what A_s was
    # divided by (1 without normalisation)
    critic_target: Tensor | None  # [T, B] the action critic's regression target (with
    # continuous_pg reparameterized or qprop): w . (r_s + gamma_s V(x_{s+1})) or w . q_s


class Losses(NamedTuple):
    loss: Tensor
    pg: Tensor
    baseline: Tensor
    action_value: Tensor  # 0 without the action-advantage head
    action_critic: Tensor  # 0 without the action critic
    entropy: Tensor
    entropy_parts: Tensor  # [T, B, C]
    log_barrier: Tensor  # ops.losses.log_barrier_loss of the discrete choice (0 if unweighted)
    qprop_eta: Tensor  # [] the weight of qprop's control variate (1 otherwise)


class Learner:
    """Owns the model's trainable state and the optimizer; ``step`` is one update."""

    #: Multipliers on the learning-rate and entropy-coefficient schedules, set while a run
    #: trains (a population-based-training perturbation): the schedules still apply, scaled,
    #: instead of overwriting the change at the next step. Saved in ``state_dict``.
    lr_scale: float = 1.0
    entropy_scale: float = 1.0

    def __init__(
        self,
        model: ActorCritic,
        config: IMPALAConfig,
        *,
        total_samples: int | None = None,
        reward_weights: Tensor | None = None,
        device: torch.device | str = "cpu",
        comm: Comm | None = None,
        constraints: Mapping[str, int] | None = None,
        preference_dims: int = 0,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        """``comm``: the other learners of a synchronous multi-learner step (default: none);
        rank 0's initial weights are broadcast to the others. ``constraints``: name -> index
        of each reward component that is a constraint's slack ``limit - cost``
        (``runtime.config.constraint_components``), whose weight is a learned Lagrange
        multiplier with ``config.lagrange``. ``preference_dims = K > 0``: the observations'
        last ``K`` entries are each episode's objective weights (``envs/preference.py``),
        which replace the first ``K`` reward weights step by step (:meth:`step_weights`).
        ``optimizer``: what applies the gradients (default: :func:`make_optimizer` over the
        model's parameters; A3C passes one over the shared model's, ``algos/a3c``)."""
        self.config = config
        self.comm = comm if comm is not None else Comm()
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.comm.broadcast(list(self.model.state_dict().values()))
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
        if not 0 <= preference_dims <= k:
            raise ValueError(f"preference_dims = {preference_dims} is invalid: range [0, {k}]")
        self.preference_dims = preference_dims
        self.constraint_names = tuple(constraints or {})
        self._constraint_index = torch.tensor(list((constraints or {}).values()), dtype=torch.long)
        if config.lagrange != bool(self.constraint_names):
            raise ConfigError(
                "IMPALAConfig.lagrange = true needs the reward components of the env's "
                "constraints (build the learner with runtime.serial.build_learner)"
                if config.lagrange
                else "constraint components are priced only with IMPALAConfig.lagrange = true"
            )
        self.lagrange_state: PIDState | None = None
        if config.lagrange:
            self.lagrange_state = pid_init(
                len(self.constraint_names), config.lagrange_init, config.lagrange_ki
            )
        self.optimizer = (
            make_optimizer(self.model.parameters(), config) if optimizer is None else optimizer
        )
        self.version = 0  # successful updates so far: the policy version actors record
        self.samples = 0  # env steps consumed
        self.skipped = 0  # updates skipped by the non-finite guard
        # PopArt statistics of the value targets, per value component (identity if disabled).
        self.popart_mu = torch.zeros(k, device=self.device)
        self.popart_nu = torch.ones(k, device=self.device)
        self.popart_updates = 0
        # Per-component entropy coefficients of a hybrid policy (discrete, continuous), scaled
        # by entropy_coef's schedule: with one coefficient the continuous entropy (unbounded
        # below) and the discrete one (at most log K) trade against each other in one sum.
        # A component with a target entropy has an adaptive weight instead (see
        # :meth:`_adapt_entropy`): its log is a learner state, saved in checkpoints.
        if (config.discrete_pg == "expected") != (model.action_advantage is not None):
            raise ConfigError(
                f"IMPALAConfig.discrete_pg = {config.discrete_pg!r} needs a model "
                + ("with" if config.discrete_pg == "expected" else "without")
                + " an action-advantage head (build it with runtime.serial.build_model)"
            )
        if (config.continuous_pg != "sampled") != (model.action_critic is not None):
            raise ConfigError(
                f"IMPALAConfig.continuous_pg = {config.continuous_pg!r} needs a model "
                + ("with" if config.continuous_pg != "sampled" else "without")
                + " an action critic (build it with runtime.serial.build_model)"
            )
        if config.log_barrier_coef > 0.0 and model.action.num_actions == 0:
            raise ConfigError(
                f"IMPALAConfig.log_barrier_coef = {config.log_barrier_coef!r} regularises a "
                f"discrete choice; this env's actions are {model.action.kind!r}, which have "
                "none: set it to 0"
            )
        self._entropy_coefs: Tensor | None = None
        targets = (config.target_entropy_discrete, config.target_entropy_continuous)
        self._entropy_targets = torch.tensor([math.nan if t is None else t for t in targets])
        self._adaptive = ~torch.isnan(self._entropy_targets)  # [2]
        per_component = (config.entropy_coef_discrete, config.entropy_coef_continuous)
        if any(c is not None for c in per_component) or bool(self._adaptive.any()):
            if model.action.num_parts != 2:
                names = (
                    "entropy_coef_discrete/entropy_coef_continuous"
                    if any(c is not None for c in per_component)
                    else "target_entropy_discrete/target_entropy_continuous"
                )
                raise ConfigError(
                    f"IMPALAConfig.{names} are for hybrid actions; this env's actions are "
                    f"{model.action.kind!r}: use entropy_coef"
                )
            self._entropy_coefs = torch.tensor(
                [config.entropy_coef if c is None else c for c in per_component]
            )
            self._check_entropy_targets(model)
        # log of the adaptive weights (only the adaptive components' entries are used)
        coefs = self._entropy_coefs if self._entropy_coefs is not None else torch.ones(2)
        self.entropy_log_coefs = coefs.clamp(min=1e-30).log()

    def _check_entropy_targets(self, model: ActorCritic) -> None:
        assert self._entropy_coefs is not None
        cfg = self.config
        names = ("target_entropy_discrete", "target_entropy_continuous")
        coef_names = ("entropy_coef_discrete", "entropy_coef_continuous")
        for i in range(2):
            if not bool(self._adaptive[i]):
                continue
            if not float(self._entropy_coefs[i]) > 0.0:
                raise ConfigError(
                    f"IMPALAConfig.{names[i]} adapts the weight from its starting value, which "
                    f"must be > 0 (IMPALAConfig.{coef_names[i]} or entropy_coef is 0)"
                )
        top = math.log(model.action.num_actions)
        if cfg.target_entropy_discrete is not None and cfg.target_entropy_discrete > top:
            raise ConfigError(
                f"IMPALAConfig.target_entropy_discrete = {cfg.target_entropy_discrete!r} is "
                f"invalid: a choice among {model.action.num_actions} actions has at most "
                f"log {model.action.num_actions} = {top:.4f} nats; allowed range (-inf, {top:.4f}]"
            )

    @property
    def warming_up(self) -> bool:
        """Within ``critic_warmup_steps``: only the value heads train, the policy (and the
        trunk it reads) stays as initialised, e.g. behaviour-cloned (``warm_start``)."""
        return self.samples < self.config.critic_warmup_steps

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
            "popart": {
                "mu": self.popart_mu.clone(),
                "nu": self.popart_nu.clone(),
                "updates": self.popart_updates,
            },
            "entropy_log_coefs": self.entropy_log_coefs.clone(),
            "scales": {"lr": self.lr_scale, "entropy_coef": self.entropy_scale},
            "lagrange": None
            if self.lagrange_state is None
            else {
                "state": [t.clone() for t in self.lagrange_state],
                "multipliers": self.reward_weights[self._constraint_index].cpu(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = int(state["version"])
        self.samples = int(state["samples"])
        self.skipped = int(state["skipped"])
        popart = state.get("popart")  # absent in checkpoints written before PopArt existed
        if popart is not None:
            self.popart_mu.copy_(popart["mu"])
            self.popart_nu.copy_(popart["nu"])
            self.popart_updates = int(popart["updates"])
        log_coefs = state.get("entropy_log_coefs")  # absent before target entropies existed
        if log_coefs is not None:
            self.entropy_log_coefs.copy_(log_coefs)
        lagrange = state.get("lagrange")  # absent before the multipliers existed
        if self.lagrange_state is not None and lagrange is not None:
            self.lagrange_state = PIDState(*(t.clone() for t in lagrange["state"]))
            self.reward_weights[self._constraint_index] = lagrange["multipliers"].to(
                self.device, torch.float32
            )
        scales = state.get("scales", {})  # absent in checkpoints written before the scales
        self.lr_scale = float(scales.get("lr", 1.0))
        self.entropy_scale = float(scales.get("entropy_coef", 1.0))

    def step(self, batch: Batch, env_steps: int | None = None) -> dict[str, float]:
        """One update on ``batch`` (any device); returns scalar metrics.

        ``env_steps``: how many of the batch's ``T * B`` samples are new env steps (the
        sample budget and the schedules count those); default all, less with replay.

        The stages: :meth:`forward` (the current policy and values on the batch),
        :meth:`targets` (V-trace and the policy-gradient advantages), :meth:`losses`, and
        :meth:`apply` (clip, guard, optimizer step, PopArt statistics).
        """
        cfg = self.config
        b = batch.to(self.device)
        lr = self.lr_scale * _linear(cfg.lr, cfg.lr_final, self.progress)
        ent_coef = self.entropy_scale * _linear(
            cfg.entropy_coef, cfg.entropy_coef_final, self.progress
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        fwd = self.forward(b)
        tg = self.targets(b, fwd)
        ls = self.losses(fwd, tg, ent_coef)
        finite, grad_norm = self.apply(ls.loss, tg)
        if finite and not self.warming_up:
            self._adapt_entropy(ls.entropy_parts)
        if finite and self.lagrange_state is not None:
            self._update_multipliers(b)
        norm = self.model.obs_norm
        if norm is not None:  # after the update: see models/normalization.py
            x = norm.rows(b.obs[:-1])
            c = self.comm
            norm.merge(c.mean(x, 0), c.var(x, 0, unbiased=False), c.count(x.shape[0]))
        fresh = b.unroll_length * b.batch_size if env_steps is None else env_steps
        self.samples += self.comm.count(fresh)
        metrics = self._metrics(b, fwd, tg, ls, finite, grad_norm)
        metrics.update(lr=lr, entropy_coef=ent_coef)
        if self._entropy_coefs is not None:  # the weights the next update uses
            coefs = self.entropy_coefs(ent_coef).tolist()
            metrics.update(entropy_coef_discrete=coefs[0], entropy_coef_continuous=coefs[1])
        if self.lagrange_state is not None:  # the multipliers the next update uses
            lam = self.reward_weights[self._constraint_index].tolist()
            violation = self.lagrange_state.smoothed_violation.tolist()
            for name, value, excess in zip(self.constraint_names, lam, violation, strict=True):
                metrics[f"lagrange_{name}"] = value
                metrics[f"constraint_excess_{name}"] = excess
        return metrics

    def _update_multipliers(self, b: Batch) -> None:
        """Each constraint's multiplier from this batch's mean per-step violation ``cost -
        limit`` (the negated slack component; global over the learners), by the PID
        Lagrangian (``ops/lagrange.py``). The slack components are weighted by the new
        multipliers from the next update on: the Lagrangian's dual step."""
        assert self.lagrange_state is not None
        cfg = self.config
        slack = b.rewards.index_select(-1, self._constraint_index.to(b.rewards.device))
        violation = -self.comm.mean(slack.float(), (0, 1)).cpu()  # [C]
        lam, self.lagrange_state = pid_lagrange(
            violation, torch.zeros_like(violation), self.lagrange_state,
            kp=cfg.lagrange_kp, ki=cfg.lagrange_ki, kd=cfg.lagrange_kd, ema=cfg.lagrange_ema,
            lambda_max=cfg.lagrange_max,
        )  # fmt: skip
        self.reward_weights[self._constraint_index] = lam.to(self.device)

    # --- stages ---

    @property
    def popart_sigma(self) -> Tensor:
        """``[K]`` PopArt scales ``sqrt(nu - mu^2)`` (ones without PopArt)."""
        return _sigma(self.popart_mu, self.popart_nu)

    def step_weights(self, b: Batch) -> Tensor:
        """The weights that scalarise each step's value components: ``[K]`` (the same for
        every step), or ``[T, B, K]`` with preference conditioning, where each column's
        objectives are weighted by the ``w`` its episode was played with (read back from the
        observations: ``obs[t, b, -P:]``) and the other components (constraint slacks, the
        remainder) keep their learner weights. Multiply and sum over the last axis."""
        w = self.reward_weights
        p = self.preference_dims
        if p == 0:
            return w
        pref = b.obs[: b.unroll_length, :, -p:].to(w.dtype)  # [T, B, P]
        rest = w[p:].expand(*pref.shape[:2], -1)
        return torch.cat([pref, rest], dim=-1)

    def forward(self, b: Batch) -> Forward:
        """Policy and values of the current weights on the batch's ``T + 1`` observations."""
        t_len = b.unroll_length
        any_truncated = bool(b.truncated.any().item())
        out = self.model(b.obs, b.first, b.core_state, return_core_states=any_truncated)
        sigma, mu = self.popart_sigma, self.popart_mu
        values = out.values * sigma + mu  # [T + 1, B, K], unnormalised (identity w/o PopArt)
        params = {k: v[:t_len] for k, v in out.params.items()}
        dist = self.model.distribution(params)
        entropy_dist = None
        if not self.config.entropy_moves_means and "mean" in params:
            entropy_dist = self.model.distribution({**params, "mean": params["mean"].detach()})
        target_logp = dist.log_prob_parts(b.actions)  # [T, B, C]
        final_values = torch.zeros_like(values[:t_len])
        if any_truncated:  # V(final observation) of episodes cut by a time limit
            idx = b.truncated.nonzero(as_tuple=True)
            state: tuple[Tensor, ...] = ()
            if out.core_outputs is not None and out.cell_states is not None:
                state = (out.core_outputs[idx], out.cell_states[idx])
            with torch.no_grad():
                final_values[idx] = self.model.values_after(b.final_obs[idx], state) * sigma + mu
        q = chosen = None
        if out.action_advantages is not None:  # Q = w . V + a, V detached (dueling split)
            base = (values[:t_len].detach() * self.step_weights(b)).sum(-1)
            q = base[..., None] + out.action_advantages[:t_len]
            k = b.actions.discrete if isinstance(b.actions, HybridAction) else b.actions
            chosen = q.gather(-1, k.long()[..., None])[..., 0]
        critic_q = ascent = taylor = None
        if out.features is not None:
            critic_q, ascent, taylor = self._critic(b, values, dist, out.features[:t_len])
        return Forward(
            values, dist, target_logp, final_values, q, chosen, critic_q, ascent, taylor,
            entropy_dist,
        )  # fmt: skip

    def _critic(
        self, b: Batch, values: Tensor, dist: ActionDistribution[Any], features: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The action critic at the behaviour's actions, and what the continuous part of the
        policy climbs through it (``continuous_pg``, see :meth:`losses`)."""
        actions = b.actions
        discrete, continuous = (
            (actions.discrete, actions.continuous)
            if isinstance(actions, HybridAction)
            else (None, actions)
        )
        cont = getattr(dist, "continuous", dist)
        assert isinstance(cont, SquashedGaussianDistribution)
        model = self.model
        base = (values[: b.unroll_length].detach() * self.step_weights(b)).sum(-1)
        q = base + model.critic_advantage(features, discrete, torch.tanh(continuous))
        if self.config.continuous_pg == "reparameterized":
            noise = torch.randn_like(cont.mean)
            drawn = torch.tanh(cont.mean + cont.std * noise)
            return q, model.critic_advantage(features, discrete, drawn, frozen=True), None
        # qprop: the critic's slope in the pre-squash action at the policy's mean
        mean = cont.mean.detach()
        with torch.enable_grad():
            at = mean.clone().requires_grad_(True)
            c_at = model.critic_advantage(features, discrete, torch.tanh(at), frozen=True)
            (slope,) = torch.autograd.grad(c_at.sum(), at)
        taylor = (slope * (continuous - mean)).sum(-1)
        return q, (slope * cont.mean).sum(-1), taylor

    def targets(self, b: Batch, fwd: Forward) -> Targets:
        """V-trace targets (eq. 1) and the scalar policy-gradient advantages ``[T, B]``.

        The advantage is ``rho^pg_s * A_s`` with ``A_s = w . (q_s - V(x_s))`` (Section 4.2,
        scalarised after V-trace with a vector critic). Any normalisation acts on ``A_s``
        *before* the ratio weighting: standardising ``rho^pg_s A_s`` instead would give a
        sample whose ratio is ~0 (an action the current policy no longer takes) a non-zero
        push from the mean shift, and would rescale a batch of stale, down-weighted samples
        back to unit size, so every update moved the policy the same amount however stale
        its data (issue 8's collapse amplified noise this way once ratios fell to ~0).
        With ``pg_clip_eps`` the ratio enters the loss instead (the clipped surrogate of
        ``ops.losses``), and the advantages are ``A_s`` alone.
        """
        cfg = self.config
        t_len = b.unroll_length
        log_rhos = fwd.target_logp.detach() - b.behaviour_logp
        rewards = b.rewards * cfg.reward_scale
        if cfg.reward_clip is not None:
            rewards = rewards.clamp(-cfg.reward_clip, cfg.reward_clip)
        discounts = cfg.gamma * (~b.terminated).float()
        vt = vtrace(
            log_rhos if log_rhos.shape[-1] > 1 else log_rhos[..., 0],
            discounts,
            rewards,
            fwd.values[:t_len],
            fwd.values[t_len],
            truncated=b.truncated,
            final_values=fwd.final_values,
            rho_bar=cfg.rho_bar,
            c_bar=cfg.c_bar,
            pg_rho_bar=cfg.pg_rho_bar,
            lam=cfg.lam,
            ratio_mode=cfg.ratio_mode,  # type: ignore[arg-type]
        )
        w = self.step_weights(b)  # [K] or [T, B, K]
        adv = ((vt.q_estimate - fwd.values[:t_len].detach()) * w).sum(-1)  # [T, B]
        mu, nu = self.popart_mu, self.popart_nu
        if cfg.popart:
            mu, nu = self._popart_statistics(vt.vs)
        sigma = _sigma(mu, nu)
        scale = torch.ones((), device=adv.device)
        if cfg.normalize_advantages:
            scale = self.comm.std(adv) + 1e-8
            adv = (adv - self.comm.mean(adv)) / scale
        elif cfg.popart:  # scale-free advantages: divide by the scale of w . V (Hessel 2019)
            scale = (w.square() * sigma.square()).sum(-1).sqrt()  # [] or [T, B]
            adv = adv / scale
        weighted = adv if cfg.pg_clip_eps is not None else vt.pg_rhos * adv
        q_scalar = (vt.q_estimate * w).sum(-1)
        critic_target = None
        if fwd.critic_q is not None and cfg.critic_target == "vtrace":
            critic_target = q_scalar
        elif fwd.critic_q is not None:  # SAC's target (Haarnoja et al. 2018 eq. 8)
            one_step = n_step_bootstrapped_returns(
                rewards, discounts, fwd.values[:t_len].detach(), fwd.values[t_len].detach(), 1,
                truncated=b.truncated, final_values=fwd.final_values,
            )  # fmt: skip
            critic_target = (one_step * w).sum(-1)
        return Targets(vt, log_rhos, weighted, mu, nu, q_scalar, scale, critic_target)

    def losses(self, fwd: Forward, tg: Targets, ent_coef: float) -> Losses:
        """Policy-gradient, baseline and entropy losses (``ops.losses``) and their sum.

        With PopArt the baseline loss is on normalised values, ``0.5 ((v_s - mu) / sigma -
        n(x_s))^2 = 0.5 (v_s - V(x_s))^2 / sigma^2`` per objective, so every objective of a
        vector critic (and the scalar critic, whatever the reward scale) has a unit-scale
        value loss instead of one growing with the square of its return.

        ``continuous_pg = "reparameterized"``: the continuous part's policy gradient comes
        from a learned critic ``Q(x, k, a) = w . V(x) + c(f, k, a)`` (``V`` detached, as in
        the dueling split of the action-advantage head), regressed at the behaviour's actions
        ``(k_s, a_s)`` to the one-step target ``w . (r_s + gamma_s V(x_{s+1}))`` (SAC's critic
        target with a state-value function, Haarnoja et al. 2018 eq. 8), or with
        ``critic_target = "vtrace"`` to V-trace's ``w . q_s = w . (r_s + gamma_s v_{s+1})``,
        which carries the rest of the unroll's rewards (noisier, and less dependent on how
        well ``V`` tells the next states apart). The policy ascends
        ``c(f, k_s, tanh(mean + std eps))``, ``eps ~ N(0, I)``, through the sample into the
        mean and log-std heads and the trunk, with the critic frozen (SAC's
        reparameterisation gradient, eq. 13; its entropy term is our analytic entropy bonus),
        divided by the advantages' scale so both parts of a hybrid policy move at comparable
        rates; ``k_s`` is the behaviour's choice. Why: the score function's estimate of this
        gradient, ``A_s (u - mean) / std^2``, stayed within its noise for the UAV intensities
        (docs/results.md); the critic pools the effect of the action across states and steps.

        ``continuous_pg = "qprop"`` (Q-Prop, Gu et al. 2017, eq. 7) keeps the score function
        unbiased whatever the critic's errors: the continuous part's sampled gradient uses
        the advantage ``A_s - eta g_s . (u_s - mean_s)`` (its own ratio, clipped
        separately from the discrete part's with ``pg_clip_eps``), where ``g_s = dc/du`` at
        ``u = mean_s`` (pre-squash, the critic frozen) is the critic's first-order Taylor
        expansion, and the analytic expectation of that control variate is added back:
        ``E[grad log pi(u) g . (u - mean_0)] = g . grad mean`` for a Gaussian ``u`` (the tanh
        Jacobian has no parameters), i.e. the policy climbs ``eta g_s . mean_s``. The critic
        then only has to reduce the estimator's variance, not be right; ``eta`` is 1 or the
        batch's variance-minimising weight (:meth:`_control_variate`).
        """
        cfg = self.config
        t_len = tg.advantages.shape[0]
        # [T, B, C]; once: the quadrature is not free
        entropy_parts = (fwd.dist if fwd.entropy_dist is None else fwd.entropy_dist).entropy_parts()
        entropy = entropy_parts.sum(-1)
        # The sampled policy gradient covers every component but the discrete choice with
        # discrete_pg = expected (its expected gradient is below) and the continuous part with
        # continuous_pg = reparameterized (the critic's action gradient, below).
        n_parts = fwd.target_logp.shape[-1]
        # With qprop the continuous part keeps its sampled gradient, with its own advantage
        # A_s - (control variate) and its own ratio.
        sampled = [
            i for i in range(n_parts)
            if not (i == 0 and fwd.action_values is not None)
            and not (i == n_parts - 1 and cfg.continuous_pg == "reparameterized")
        ]  # fmt: skip
        pg_loss = torch.zeros((), device=entropy.device)
        eta = torch.ones((), device=entropy.device)  # weight of the critic's analytic term
        if fwd.critic_taylor is not None:  # qprop
            continuous = [n_parts - 1]
            sampled = sampled[:-1]
            cv, eta = self._control_variate(fwd, tg)
            pg_loss = self._sampled_pg(fwd, tg, continuous, tg.advantages - eta * cv)
        if sampled:
            pg_loss = pg_loss + self._sampled_pg(fwd, tg, sampled, tg.advantages)
        q_loss = torch.zeros((), device=entropy.device)
        if fwd.action_values is not None:
            pg_loss = pg_loss + self._expected_discrete_pg(fwd, tg)
            assert fwd.chosen_action_values is not None
            q_loss = baseline_loss(tg.q_scalar, fwd.chosen_action_values)
        critic_loss = torch.zeros((), device=entropy.device)
        if fwd.critic_q is not None:
            assert fwd.critic_ascent is not None and tg.critic_target is not None
            # the continuous part's gradient through the critic (see the docstring)
            pg_loss = pg_loss - eta * (fwd.critic_ascent / tg.adv_scale).mean()
            critic_loss = baseline_loss(tg.critic_target, fwd.critic_q)
        values, vs = fwd.values[:t_len], tg.vtrace.vs
        if cfg.popart:  # normalised by the statistics updated with this batch (PopArt Alg. 1)
            sigma = _sigma(tg.popart_mu, tg.popart_nu)
            values, vs = values / sigma, vs / sigma
        v_loss = baseline_loss(vs, values)
        ent_loss = entropy_loss(entropy)
        if self._entropy_coefs is not None and entropy_parts.shape[-1] == 2:  # hybrid
            coefs = self.entropy_coefs(ent_coef).to(entropy.device)
            ent_term = entropy_loss(entropy_parts @ coefs)
        else:
            ent_term = ent_coef * ent_loss
        barrier = torch.zeros((), device=entropy.device)
        if cfg.log_barrier_coef > 0.0:
            choice = self._choice(fwd.dist)
            barrier = log_barrier_loss(choice.logits, choice.mask)
        critics = v_loss + q_loss + critic_loss
        loss = pg_loss + cfg.baseline_coef * critics + ent_term
        loss = loss + cfg.log_barrier_coef * barrier
        if self.warming_up:  # critic warm-up: the value losses alone (see apply)
            loss = cfg.baseline_coef * critics
        return Losses(
            loss, pg_loss, v_loss, q_loss, critic_loss, ent_loss, entropy_parts, barrier, eta
        )

    def _sampled_pg(self, fwd: Forward, tg: Targets, parts: list[int], adv: Tensor) -> Tensor:
        """The sampled policy gradient of the action components ``parts`` (their joint
        log-prob) with advantages ``adv``: IMPALA's, or the clipped surrogate of their ratio
        to the behaviour policy with ``pg_clip_eps``."""
        log_pi = fwd.target_logp[..., parts].sum(-1)
        eps = self.config.pg_clip_eps
        if eps is None:
            return policy_gradient_loss(log_pi, adv)
        log_mu = log_pi.detach() - tg.log_rhos[..., parts].sum(-1)  # gradient through log pi
        return clipped_surrogate_loss(log_pi - log_mu, adv, eps)

    def _control_variate(self, fwd: Forward, tg: Targets) -> tuple[Tensor, Tensor]:
        """Q-Prop's control variate for the continuous part's advantage, ``g_s . (u_s -
        mean_s)`` in the advantages' units (divided by their scale, weighted by rho^pg where
        the advantages are), and its weight ``eta`` (``[]``, detached): with
        ``qprop_adaptive`` the variance-minimising ``cov(A, cv) / var(cv)`` over the batch,
        clipped to ``[0, 1]`` (Gu et al. 2017's adaptive Q-Prop, conservative: a critic that
        does not explain the advantages gets weight 0, and the score function alone
        remains), else 1."""
        assert fwd.critic_taylor is not None
        cv = fwd.critic_taylor / tg.adv_scale
        if self.config.pg_clip_eps is None:
            cv = tg.vtrace.pg_rhos * cv
        eta = torch.ones((), device=cv.device)
        if self.config.qprop_adaptive:
            c = self.comm
            adv, cv_mean = tg.advantages.detach(), c.mean(cv)
            cov = c.mean((adv - c.mean(adv)) * (cv - cv_mean))
            var = c.mean((cv - cv_mean).square())
            eta = (cov / var.clamp(min=1e-12)).clamp(0.0, 1.0)
        return cv, eta

    @staticmethod
    def _choice(dist: ActionDistribution[Any]) -> CategoricalDistribution:
        """The discrete choice of a policy: a hybrid's discrete part, or the whole."""
        choice = getattr(dist, "discrete", dist)
        assert isinstance(choice, CategoricalDistribution)
        return choice

    def _expected_discrete_pg(self, fwd: Forward, tg: Targets) -> Tensor:
        """``ops.losses.expected_policy_gradient_loss`` of the discrete choice, with the
        advantages ``Q(x, k) - sum_j pi(j) Q(x, j)`` divided by the same scale as the sampled
        advantages (so both parts of a hybrid policy move at comparable rates)."""
        assert fwd.action_values is not None
        probs = self._choice(fwd.dist).probs
        scale = tg.adv_scale[..., None] if tg.adv_scale.dim() else tg.adv_scale  # per step?
        return expected_policy_gradient_loss(probs, fwd.action_values.detach() / scale)

    def entropy_coefs(self, ent_coef: float) -> Tensor:
        """``[2]`` entropy weights of a hybrid policy's (discrete, continuous) parts: the fixed
        ones follow ``entropy_coef``'s schedule in proportion, the adaptive ones are
        ``exp(entropy_log_coefs)`` and follow no schedule (their target does that work)."""
        assert self._entropy_coefs is not None
        cfg = self.config
        # the scheduled entropy_coef in proportion (which includes entropy_scale); with a 0
        # base coefficient there is no schedule to follow, but the run-time scale still holds
        scale = ent_coef / cfg.entropy_coef if cfg.entropy_coef > 0 else self.entropy_scale
        return torch.where(
            self._adaptive, self.entropy_log_coefs.exp(), self._entropy_coefs * scale
        )

    @torch.no_grad()
    def _adapt_entropy(self, entropy_parts: Tensor) -> None:
        """One step of SAC's temperature adjustment (Haarnoja et al. 2018, "Soft Actor-Critic
        Algorithms and Applications", eq. 18), per component ``c``: gradient descent on
        ``J(alpha_c) = alpha_c (H_c - target_c)`` in ``log alpha_c``, whose gradient is
        ``alpha_c (H_c - target_c)``; we take the sign-preserving, scale-free form
        ``log alpha_c += lr (target_c - H_c)`` so the step does not shrink with alpha. The
        weight grows while the batch's mean entropy ``H_c`` is below its target and shrinks
        while above, so each component settles at its own entropy, whatever the other's."""
        if not bool(self._adaptive.any()):
            return
        mean = self.comm.mean(entropy_parts.detach(), (0, 1)).cpu()  # [2]
        step = self.config.target_entropy_lr * (self._entropy_targets - mean)
        self.entropy_log_coefs += torch.where(self._adaptive, step, torch.zeros_like(step))

    def apply(self, loss: Tensor, tg: Targets) -> tuple[bool, float]:
        """Backward, global-norm clip, and the optimizer step unless anything is non-finite
        (then the weights stay untouched and ``skipped`` counts it). Returns ``(finite,
        grad_norm)``.

        PopArt's order (van Hasselt et al. 2016, Alg. 1) is: new statistics, rescale the value
        layer to preserve outputs, then a gradient step on the normalised loss in the rescaled
        parameters. The forward pass ran before the rescale, so the value layer's gradient is
        taken in the old parameters; with ``W' = W sigma_old / sigma_new`` (per output) the
        gradient in ``W'`` (and ``b'``) is the old one times ``sigma_new / sigma_old``, and the
        gradient reaching the trunk is the same in both. So: scale those two gradients,
        rescale the layer, step.

        With several learners the gradients are averaged (weighted by each shard's sample
        count) before the clip, so every rank clips and applies the same gradient, and the
        step is skipped everywhere if any rank's loss is non-finite (a non-finite gradient
        anywhere makes the averaged one non-finite on every rank).
        """
        self.model.zero_grad(set_to_none=True)
        loss.backward()
        if self.warming_up:  # only the critics move: the shared trunk feeds the policy too
            model = self.model
            critics = (model.value, model.value_trunk, model.action_advantage, model.action_critic)
            heads = {id(p) for m in critics if m for p in m.parameters()}
            for p in self.model.parameters():
                if id(p) not in heads:
                    p.grad = None
        popart = self.config.popart
        if popart:  # the gradient in the value layer's rescaled parameters (see below)
            ratio = _sigma(tg.popart_mu, tg.popart_nu) / self.popart_sigma
            layer = self.model.value
            if layer.weight.grad is not None and layer.bias.grad is not None:
                layer.weight.grad.mul_(ratio[:, None])
                layer.bias.grad.mul_(ratio)
        self.comm.average_gradients(self.model.parameters(), tg.advantages.numel())
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.config.max_grad_norm
        )
        finite = self.comm.all(bool(torch.isfinite(loss).item()))
        finite = finite and bool(torch.isfinite(grad_norm).item())
        if finite:
            if popart:
                self._commit_popart(tg.popart_mu, tg.popart_nu)
            self._optimizer_step()
            self.version += 1
        else:
            self.model.zero_grad(set_to_none=True)
            self.skipped += 1
        norm = grad_norm.item()
        return finite, norm if math.isfinite(norm) else math.inf

    def _optimizer_step(self) -> None:
        """Apply the model's (clipped) gradients: the optimizer's step (A3C forwards them to
        the shared model first, ``algos/a3c/learner.py``)."""
        self.optimizer.step()

    @torch.no_grad()
    def _popart_statistics(self, vs: Tensor) -> tuple[Tensor, Tensor]:
        """PopArt (van Hasselt et al. 2016, Alg. 1): the first and second moments of the value
        targets, moved toward this batch's by ``popart_beta`` (the first update takes the
        batch's outright, so the scale is right from the start, not after ``1 / beta``)."""
        flat = vs.reshape(-1, vs.shape[-1]) if vs.dim() == 3 else vs.reshape(-1, 1)
        beta = 1.0 if self.popart_updates == 0 else self.config.popart_beta
        mu = torch.lerp(self.popart_mu, self.comm.mean(flat, 0), beta)
        nu = torch.lerp(self.popart_nu, self.comm.mean(flat.square(), 0), beta)
        return mu, nu

    @torch.no_grad()
    def _commit_popart(self, mu: Tensor, nu: Tensor) -> None:
        """Adopt the new statistics and rescale the value layer so that ``sigma n(x) + mu``,
        the unnormalised value, is unchanged ("preserve outputs precisely")."""
        mu_old, sigma_old = self.popart_mu.clone(), self.popart_sigma
        self.popart_mu.copy_(mu)
        self.popart_nu.copy_(nu)
        sigma = self.popart_sigma
        layer = self.model.value
        layer.weight.mul_((sigma_old / sigma)[:, None])
        layer.bias.mul_(sigma_old).add_(mu_old - mu).div_(sigma)
        self.popart_updates += 1

    def _metrics(
        self, b: Batch, fwd: Forward, tg: Targets, ls: Losses, finite: bool, grad_norm: float
    ) -> dict[str, float]:
        """Scalar metrics of one step. How far the policy moved since the actors' weights:
        mean ``|log rho|`` per action component and the fraction of joint ratios outside
        ``[1/2, 2]`` (a clipped fraction says little: at ``rho_bar = 1`` about half of all
        ratios exceed 1 after any change of the policy, however small)."""
        t_len = b.unroll_length
        with torch.no_grad():
            vt = tg.vtrace
            v_pred = fwd.values[:t_len]
            var_vs = vt.vs.var()
            explained = 1.0 - (vt.vs - v_pred).var() / var_vs if var_vs > 0 else torch.tensor(0.0)
            lag = (self.version - int(finite) - b.policy_version).float()
            abs_log_rho = tg.log_rhos.abs().mean(dim=(0, 1))  # [C]
            joint = tg.log_rhos.sum(-1)
            entropy = ls.entropy_parts.sum(-1)
            metrics = {
                "loss": ls.loss.item(),
                "loss_pg": ls.pg.item(),
                "loss_baseline": ls.baseline.item(),
                "loss_action_value": ls.action_value.item(),
                "loss_action_critic": ls.action_critic.item(),
                "loss_entropy": ls.entropy.item(),
                "entropy": entropy.mean().item(),
                "rho_mean": vt.rhos.mean().item(),
                "rho_max": vt.rhos.max().item(),
                "log_rho_abs": joint.abs().mean().item(),
                "ratio_outside_frac": (joint.abs() > math.log(2.0)).float().mean().item(),
                "grad_norm": grad_norm,
                "policy_lag_mean": lag.mean().item(),
                "policy_lag_max": lag.max().item(),
                "value_mean": v_pred.mean().item(),
                "vs_mean": vt.vs.mean().item(),
                "advantage_mean": tg.advantages.mean().item(),
                "advantage_abs": tg.advantages.abs().mean().item(),
                "explained_variance": float(explained),
                "skipped": 0.0 if finite else 1.0,
                "skipped_total": float(self.skipped),
                "version": float(self.version),
            }
            if isinstance(b.actions, HybridAction):
                parts = ls.entropy_parts.mean(dim=(0, 1))
                metrics["entropy_discrete"] = parts[0].item()
                metrics["entropy_continuous"] = parts[1].item()
                metrics["log_rho_abs_discrete"] = abs_log_rho[0].item()
                metrics["log_rho_abs_continuous"] = abs_log_rho[1].item()
            if self.model.action.num_actions > 0:  # how close the rarest choice is to dropped
                choice = self._choice(fwd.dist)
                logp = choice.logits.detach()
                if choice.mask is not None:
                    logp = logp.masked_fill(~choice.mask, 0.0)
                metrics["log_prob_min_discrete"] = logp.min(-1).values.mean().item()
            if self.config.log_barrier_coef > 0.0:
                metrics["loss_log_barrier"] = ls.log_barrier.item()
            if self.config.continuous_pg == "qprop":
                metrics["qprop_eta"] = ls.qprop_eta.item()
            if self.config.popart:
                metrics["popart_sigma_mean"] = self.popart_sigma.mean().item()
        return metrics
