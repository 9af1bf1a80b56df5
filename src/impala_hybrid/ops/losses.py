"""IMPALA actor-critic losses (Espeholt et al. 2018, Section 4.2) on time-major tensors.

The three gradient directions of Section 4.2, written as losses to *minimise*:

* value: ``(v_s - V(x_s)) grad V(x_s)``       -> ``baseline_loss = 0.5 (v_s - V(x_s))^2``
* policy: ``rho_s grad log pi(a_s|x_s) A_s``  -> ``policy_gradient_loss = -log pi(a_s|x_s) A_s``
  (``A_s`` = V-trace ``pg_advantages``, which already contain ``rho_s``)
* entropy bonus: ``-grad sum_a pi log pi``    -> ``entropy_loss = -H(pi(.|x_s))``

Targets are constants: ``advantages`` and ``vs`` are detached inside, so the gradient reaches only
``log_probs``, ``values`` and ``entropy`` whatever the caller passes.

Reduction: every loss is the **mean over valid ``(t, b)`` entries** of a per-step term; trailing
axes beyond ``[T, B]`` (the objectives ``K`` of a vector critic) are **summed** in that term.
TorchBeast sums over time and batch, which ties the gradient scale (and so the learning rate and
the loss coefficients) to the unroll length and batch size; a mean is invariant to both, so one
set of coefficients survives changes of ``T``/``B``. Summing over ``K`` gives each objective's
value head the same gradient scale it would have as a scalar critic, independent of ``K``.

``mask`` (``[T, B]``, bool or float weights, 1 = valid) drops padded or invalid steps: the mean is
``sum(mask * term) / sum(mask)``, and 0 (with a graph) if nothing is valid. Masked-out entries
are zeroed in the inputs before any arithmetic, so inf/NaN there (e.g. padding) reaches neither
the loss nor the gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "baseline_loss",
    "clipped_surrogate_loss",
    "entropy_loss",
    "expected_policy_gradient_loss",
    "log_barrier_loss",
    "policy_gradient_loss",
]


def _zero_invalid(x: Tensor, mask: Tensor | None) -> Tensor:
    """Replace masked-out ``(t, b)`` entries of an input by 0 before any arithmetic, so that
    inf/NaN padding there can produce neither a NaN loss nor a NaN gradient."""
    if mask is None:
        return x
    if x.dim() < 2 or mask.shape != x.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} must be [T, B] of {tuple(x.shape)}")
    valid = mask != 0
    while valid.dim() < x.dim():
        valid = valid.unsqueeze(-1)
    return torch.where(valid, x, torch.zeros_like(x))


def _masked_mean(per_step: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of a ``[T, B, *K]`` term over valid ``(t, b)``, summed over trailing axes."""
    if per_step.dim() < 2:
        raise ValueError(f"expected time-major [T, B, ...], got shape {tuple(per_step.shape)}")
    term = per_step.flatten(start_dim=2).sum(dim=-1) if per_step.dim() > 2 else per_step
    if mask is None:
        return term.mean()
    if mask.shape != term.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} must be [T, B]={tuple(term.shape)}")
    weights = mask.to(term.dtype)
    total = weights.sum()
    return (term * weights).sum() / torch.where(total > 0, total, torch.ones_like(total))


def _check_same_shape(a_name: str, a: Tensor, b_name: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} shape {tuple(a.shape)} must equal {b_name} shape {tuple(b.shape)}"
        )


def policy_gradient_loss(
    log_probs: Tensor, advantages: Tensor, mask: Tensor | None = None
) -> Tensor:
    """``mean_valid(-log pi(a_t|x_t) * A_t)``, ``A_t`` detached.

    Args:
      log_probs: ``[T, B]`` log-probability of the taken (joint) action under the learner policy;
        for a hybrid action, the sum of the components' log-probabilities.
      advantages: ``[T, B]``, e.g. V-trace ``pg_advantages`` (scalarised if from a vector critic).
      mask: optional ``[T, B]``.

    Returns:
      Scalar loss.
    """
    _check_same_shape("log_probs", log_probs, "advantages", advantages)
    log_probs = _zero_invalid(log_probs, mask)
    advantages = _zero_invalid(advantages.detach(), mask)
    return _masked_mean(-log_probs * advantages, mask)


def baseline_loss(vs: Tensor, values: Tensor, mask: Tensor | None = None) -> Tensor:
    """``mean_valid(0.5 * sum_k (v_t - V(x_t))^2)``, ``vs`` detached.

    Args:
      vs: ``[T, B]`` or ``[T, B, K]`` value targets (e.g. V-trace ``vs``).
      values: same shape, critic outputs ``V(x_t)``.
      mask: optional ``[T, B]``.

    Returns:
      Scalar loss; its gradient w.r.t. ``values[t, b]`` is ``-(v - V) / n_valid``.
    """
    _check_same_shape("vs", vs, "values", values)
    vs, values = _zero_invalid(vs.detach(), mask), _zero_invalid(values, mask)
    return _masked_mean(0.5 * (vs - values) ** 2, mask)


def entropy_loss(entropy: Tensor, mask: Tensor | None = None) -> Tensor:
    """``mean_valid(-H_t)``: negative entropy, minimised to *raise* the entropy.

    Args:
      entropy: ``[T, B]`` entropy of the learner policy at ``x_t`` (for a hybrid policy with
        independent components, the sum of the components' entropies).
      mask: optional ``[T, B]``.

    Returns:
      Scalar loss.
    """
    return _masked_mean(-_zero_invalid(entropy, mask), mask)


def log_barrier_loss(
    log_probs: Tensor, allowed: Tensor | None = None, mask: Tensor | None = None
) -> Tensor:
    """``mean_valid(-(1/|A(x_t)|) sum_{k in A(x_t)} log pi(k|x_t))``: the log-barrier
    regulariser of a discrete choice, ``KL(uniform || pi)`` up to a constant.

    Why, next to the entropy bonus: both are 0-gradient at the uniform policy and push toward
    it, but they differ where an action's probability ``pi_k`` is near 0. The entropy's
    gradient in logit ``k`` is ``-pi_k (log pi_k + H)``, which vanishes with ``pi_k``, so a
    softmax policy that has dropped an action gets almost no push back and escapes only after
    exponentially many updates; the log barrier's is ``pi_k - 1 / |A|``, bounded away from 0
    for a dropped action.
    This is the relative-entropy ("log barrier") regulariser of Agarwal, Kakade, Lee and
    Mahajan ("On the Theory of Policy Gradient Methods", JMLR 2021), with which softmax policy
    gradient converges in polynomially many steps where the unregularised one can stall; with
    weight ``c`` against an action's advantage ``A_k < 0`` the two gradients balance near
    ``pi_k = c / (|A| |A_k|)``, a floor that scales with ``c``. Tried against the UAV zone
    write-off and measured not to help there: that failure is a zone's service intensity, not
    a dropped transfer (docs/results.md).

    Args:
      log_probs: ``[T, B, K]`` normalised log-probabilities of the learner policy (gradient
        flows through them).
      allowed: optional bool, broadcastable to ``[T, B, K]``, ``True`` = a legal action; masked
        actions (whose log-probability is a huge negative number) are left out of the mean.
      mask: optional ``[T, B]`` valid steps.

    Returns:
      Scalar loss; its gradient w.r.t. the logits at a valid step is
      ``(pi_k - 1 / |A|) / n_valid`` for legal ``k``.
    """
    if log_probs.dim() != 3:
        raise ValueError(f"expected [T, B, K] log-probabilities, got {tuple(log_probs.shape)}")
    if allowed is None:
        per_step = -log_probs.mean(-1)
    else:
        legal = torch.broadcast_to(allowed, log_probs.shape)
        picked = torch.where(legal, log_probs, torch.zeros_like(log_probs))
        per_step = -picked.sum(-1) / legal.sum(-1).clamp(min=1).to(log_probs.dtype)
    return _masked_mean(_zero_invalid(per_step, mask), mask)


def clipped_surrogate_loss(
    log_ratio: Tensor, advantages: Tensor, eps: float, mask: Tensor | None = None
) -> Tensor:
    """``mean_valid(-min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t))``, ``r_t = exp(log_ratio)``.

    PPO's clipped surrogate (Schulman et al. 2017, eq. 7) with the *behaviour* policy as the
    old policy, as RLlib's APPO puts it on top of IMPALA: the importance weight ``r_t =
    pi(a_t|x_t) / mu(a_t|x_t)`` carries the off-policy correction of the policy gradient
    (so ``A_t`` is the unweighted V-trace advantage ``q_t - V(x_t)``), and a sample stops
    pushing once its ratio has left ``[1 - eps, 1 + eps]`` in the direction its advantage
    favours. IMPALA's clipped-rho gradient ``min(rho_bar, r_t) A_t grad log pi`` has no such
    stop: with stale data (policy lag) it keeps pushing probability onto the same actions,
    which narrowed the Gaussian heads until the policy collapsed (issue 8). At ``r_t = 1``
    the gradient equals :func:`policy_gradient_loss`'s.

    Args:
      log_ratio: ``[T, B]`` ``log pi(a_t|x_t) - log mu(a_t|x_t)`` with the gradient through
        ``log pi`` (joint over action components); clamped to ``[-20, 20]`` before ``exp``.
      advantages: ``[T, B]``, detached inside.
      eps: clip range, > 0.
      mask: optional ``[T, B]``.

    Returns:
      Scalar loss.
    """
    if not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps}")
    _check_same_shape("log_ratio", log_ratio, "advantages", advantages)
    log_ratio = _zero_invalid(log_ratio, mask)
    advantages = _zero_invalid(advantages.detach(), mask)
    ratio = torch.exp(log_ratio.clamp(-20.0, 20.0))
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1.0 - eps, 1.0 + eps) * advantages)
    return _masked_mean(-surrogate, mask)


def expected_policy_gradient_loss(
    probs: Tensor, action_values: Tensor, mask: Tensor | None = None
) -> Tensor:
    """``mean_valid(-sum_k pi(k|x_t) (Q(x_t, k) - sum_j pi(j|x_t) Q(x_t, j)))``, ``Q`` and the
    baseline detached: the *expected* ("all-action") policy gradient of a discrete choice.

    Its gradient is ``sum_k pi(k|x) A(x, k) grad log pi(k|x)`` with ``A(x, k) = Q(x, k) -
    sum_j pi(j|x) Q(x, j)`` (the policy-gradient theorem summed over actions instead of
    sampled, Sutton et al. 2000 eq. 2; "Mean Actor-Critic", Allen et al. 2017): the expectation
    of the sampled gradient ``A(x, a) grad log pi(a|x)`` over ``a ~ pi``, with none of its
    sampling variance. Every choice's logit moves on every step, by how much better than the
    policy's average that choice is estimated to be; the sampled gradient moves only the
    logit of the choice that was taken, by one noisy return. Why the learner offers it: on the
    UAV env the transfer choice matters on few steps and its sampled advantage is drowned by
    the return's variance (issue 8, docs/results.md).

    Args:
      probs: ``[T, B, K]`` ``pi(k|x_t)`` of the learner policy (the gradient flows through it).
      action_values: ``[T, B, K]`` estimates ``Q(x_t, k)``, detached inside.
      mask: optional ``[T, B]``.

    Returns:
      Scalar loss.
    """
    _check_same_shape("probs", probs, "action_values", action_values)
    if probs.dim() != 3:
        raise ValueError(f"expected [T, B, K] probabilities, got shape {tuple(probs.shape)}")
    q = _zero_invalid(action_values.detach(), mask)
    probs = _zero_invalid(probs, mask)
    advantages = q - (probs.detach() * q).sum(-1, keepdim=True)  # [T, B, K]
    per_step = (probs * advantages).sum(-1)  # [T, B]
    return _masked_mean(-_zero_invalid(per_step, mask), mask)
