"""V-trace off-policy targets (Espeholt et al. 2018, "IMPALA", Section 4) for hybrid actions.

The n-step V-trace target for ``V(x_s)`` (paper eq. 1) is::

    v_s = V(x_s) + sum_{t=s}^{s+n-1} gamma^{t-s} (prod_{i=s}^{t-1} c_i) delta_t V,
    delta_t V = rho_t (r_t + gamma V(x_{t+1}) - V(x_t)),
    rho_t = min(rho_bar, pi(a_t|x_t) / mu(a_t|x_t)),   c_i = min(c_bar, pi(a_i|x_i) / mu(a_i|x_i)).

``rho_bar`` sets the fixed point (the value of ``pi_rho_bar``, eq. 3, which is ``pi`` itself when
``rho_bar = inf``) and ``c_bar`` only the contraction speed / variance, so the paper assumes
``rho_bar >= c_bar``; we enforce it. On-policy with ``c_bar >= 1`` eq. 1 reduces to the n-step
Bellman target (eq. 2). We compute it with the recursion of the paper's Remark 1::

    v_s - V(x_s) = delta_s V + gamma_s c_s (v_{s+1} - V(x_{s+1})),

backwards over ``T`` and vectorised over ``B`` (and ``K``), with the per-step discount
``gamma_s = discounts[s]`` in place of ``gamma`` (zero on termination) and the next-state value
convention of :mod:`impala_hybrid.ops.returns` (``bootstrap_value`` after the unroll,
``final_values`` at a time-limit truncation, where the recursion's carry term is also cut).

Lambda form (rlax): the traces are ``c_t = lam * min(c_bar, rho_t)``. With ``lam = 1`` this is the
paper; ``lam = 0`` gives one-step TD targets ``v_s = V(x_s) + rho_s delta_s``; on-policy with all
clips at 1, ``v_s`` is the TD(lam) return. The policy-gradient advantage (Section 4.2) is
``rho^pg_s (q_s - V(x_s))`` with ``q_s = r_s + gamma_s (lam v_{s+1} + (1 - lam) V(x_{s+1}))``
(``v_{s+1}`` replaced by ``v_next`` at the unroll end and at truncations): the paper's
``r_s + gamma v_{s+1}`` at ``lam = 1``, and on-policy it is exactly GAE(lam), so ``lam`` means the
same thing for the critic's target and the actor's advantage.

Hybrid actions. With a factored policy ``pi(a|x) = prod_k pi_k(a_k|x)`` over ``C`` action
components (e.g. a discrete choice and a continuous vector), the ratio is a product of
per-component ratios ``r_k``. ``ratio_mode="joint"`` clips the product, ``min(rho_bar, prod_k
r_k)``: the paper's estimator, whose fixed point is ``pi_rho_bar`` (eq. 3) of the joint policy.
``ratio_mode="per_component"`` clips each factor, ``prod_k min(rho_bar, r_k)`` (same for ``c_bar``
and ``pg_rho_bar``). Why offer it: a continuous (Gaussian) factor can have ratios orders of
magnitude away from 1 while the discrete one is moderate, and under the joint clip a huge factor
saturates the product at ``rho_bar`` whatever the other factor's ratio is, hiding its correction.
Clipping per factor bounds each factor's contribution, and so its variance, separately, and keeps
every factor's correction visible. The price: a different, more biased fixed point, and a product
that can exceed ``rho_bar`` (up to ``rho_bar ** C``; never above it when ``rho_bar <= 1``).
With one component the two modes coincide.

All outputs are targets: computed under ``torch.no_grad`` from detached inputs, so gradients
flow only through the losses' ``log_probs`` and ``values``.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor

from impala_hybrid.ops.returns import _check_time_major, _expand_to, _trace_mask, next_values

__all__ = [
    "ClippedRatios",
    "RatioMode",
    "VTraceReturns",
    "clip_importance_ratios",
    "vtrace",
    "vtrace_from_clipped_ratios",
]

RatioMode = Literal["joint", "per_component"]


class ClippedRatios(NamedTuple):
    """Importance ratios of one unroll, all ``[T, B]`` and detached.

    Attributes:
      rhos: unclipped joint ratio ``pi(a_t|x_t) / mu(a_t|x_t) = prod_k r_k`` (for metrics).
      clipped_rhos: ``rho_t`` of ``delta_t V`` (clip level ``rho_bar``).
      clipped_cs: ``min(c_bar, .)`` trace ratio, before the ``lam`` factor.
      clipped_pg_rhos: ratio of the policy-gradient advantage (clip level ``pg_rho_bar``).
    """

    rhos: Tensor
    clipped_rhos: Tensor
    clipped_cs: Tensor
    clipped_pg_rhos: Tensor


class VTraceReturns(NamedTuple):
    """V-trace outputs, detached.

    Attributes:
      vs: ``[T, B, *K]`` value targets ``v_s`` (eq. 1).
      pg_advantages: ``[T, B, *K]`` ``rho^pg_s (q_s - V(x_s))`` (Section 4.2).
      rhos: ``[T, B]`` unclipped joint ratios (metrics: mean ratio, fraction clipped).
      clipped_rhos: ``[T, B]`` ``rho_t`` used in ``delta_t V``.
      cs: ``[T, B]`` traces actually used, ``lam * min(c_bar, .)``.
      q_estimate: ``[T, B, *K]`` ``q_s`` of Section 4.2 (``r_s + gamma_s v_{s+1}`` at
        ``lam = 1``), so ``pg_advantages = pg_rhos * (q_estimate - V(x_s))`` (rlax returns
        the same ``q_estimate``). A learner that transforms the advantage ``q_s - V(x_s)``
        (e.g. standardises it) must do so before the ratio weighting: see
        ``algos/impala/learner.py``.
      pg_rhos: ``[T, B]`` the policy-gradient ratio ``rho^pg_s`` (clip level ``pg_rho_bar``).
    """

    vs: Tensor
    pg_advantages: Tensor
    rhos: Tensor
    clipped_rhos: Tensor
    cs: Tensor
    q_estimate: Tensor
    pg_rhos: Tensor


def _check_threshold(name: str, value: float) -> None:
    if math.isnan(value) or value <= 0.0:
        raise ValueError(f"{name} must be > 0 (inf disables clipping), got {value}")


def clip_importance_ratios(
    log_rhos: Tensor,
    *,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
    pg_rho_bar: float | None = None,
    ratio_mode: RatioMode = "joint",
) -> ClippedRatios:
    """Clip importance ratios, jointly or per action component.

    Args:
      log_rhos: ``[T, B]`` joint log-ratios ``log pi - log mu``, or ``[T, B, C]`` per-component
        log-ratios (``C`` action components; the joint log-ratio is their sum).
      rho_bar: clip level of ``rho_t`` (value-target fixed point), > 0, may be ``inf``.
      c_bar: clip level of the traces, ``0 < c_bar <= rho_bar``.
      pg_rho_bar: clip level of the policy-gradient ratio; defaults to ``rho_bar``.
      ratio_mode: ``"joint"``: ``min(bar, prod_k r_k)`` (paper); ``"per_component"``:
        ``prod_k min(bar, r_k)``. Identical for ``[T, B]`` input or ``C = 1``.

    Returns:
      :class:`ClippedRatios`, each ``[T, B]``, detached.

    Raises:
      ValueError: on ``rho_bar < c_bar``, a non-positive threshold, an unknown mode or a bad shape.
    """
    if pg_rho_bar is None:
        pg_rho_bar = rho_bar
    _check_threshold("rho_bar", rho_bar)
    _check_threshold("c_bar", c_bar)
    _check_threshold("pg_rho_bar", pg_rho_bar)
    if rho_bar < c_bar:
        raise ValueError(
            f"V-trace needs rho_bar >= c_bar (IMPALA Section 4.1), got rho_bar={rho_bar} < "
            f"c_bar={c_bar}"
        )
    if ratio_mode not in get_args(RatioMode):
        raise ValueError(f"ratio_mode must be one of {get_args(RatioMode)}, got {ratio_mode!r}")
    if log_rhos.dim() not in (2, 3):
        raise ValueError(f"log_rhos must be [T, B] or [T, B, C], got shape {tuple(log_rhos.shape)}")

    with torch.no_grad():
        log_r = log_rhos.detach()
        if log_r.dim() == 2:
            log_r = log_r.unsqueeze(-1)
        rhos = torch.exp(log_r.sum(dim=-1))
        if ratio_mode == "joint":
            return ClippedRatios(
                rhos=rhos,
                clipped_rhos=torch.clamp(rhos, max=rho_bar),
                clipped_cs=torch.clamp(rhos, max=c_bar),
                clipped_pg_rhos=torch.clamp(rhos, max=pg_rho_bar),
            )
        r_k = torch.exp(log_r)  # [T, B, C]; overflow to inf is clipped to the bar below
        return ClippedRatios(
            rhos=rhos,
            clipped_rhos=torch.clamp(r_k, max=rho_bar).prod(dim=-1),
            clipped_cs=torch.clamp(r_k, max=c_bar).prod(dim=-1),
            clipped_pg_rhos=torch.clamp(r_k, max=pg_rho_bar).prod(dim=-1),
        )


def vtrace_from_clipped_ratios(
    ratios: ClippedRatios,
    discounts: Tensor,
    rewards: Tensor,
    values: Tensor,
    bootstrap_value: Tensor,
    *,
    truncated: Tensor | None = None,
    final_values: Tensor | None = None,
    lam: float = 1.0,
) -> VTraceReturns:
    """V-trace targets from already-clipped ratios (any clipping scheme producing ClippedRatios).

    Args:
      ratios: ``[T, B]`` fields, e.g. from :func:`clip_importance_ratios`.
      discounts: ``[T, B]`` or ``[T, B, K]``, ``gamma * (1 - terminated)``.
      rewards: ``[T, B]`` or ``[T, B, K]``.
      values: same shape as ``rewards``, ``V(x_t)``.
      bootstrap_value: ``[B]`` or ``[B, K]``, ``V(x_T)``.
      truncated: optional bool ``[T, B]``, time-limit ends (see module docstring).
      final_values: same shape as ``values``; ``V`` of the final observation where ``truncated``.
      lam: trace coefficient in ``[0, 1]``.

    Returns:
      :class:`VTraceReturns` (detached).
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    _check_time_major(
        rewards=rewards,
        discounts=discounts,
        values=values,
        bootstrap_value=bootstrap_value,
        truncated=truncated,
        final_values=final_values,
    )
    tb = values.shape[:2]
    for name, r in zip(ClippedRatios._fields, ratios, strict=True):
        if r.shape != tb:
            raise ValueError(f"ratios.{name} shape {tuple(r.shape)} must be [T, B]={tuple(tb)}")

    with torch.no_grad():
        values = values.detach()
        v_next_t = next_values(
            values,
            bootstrap_value.detach(),
            truncated=truncated,
            final_values=None if final_values is None else final_values.detach(),
        )
        discount_t = _expand_to(discounts.detach(), values)
        rho_t = _expand_to(ratios.clipped_rhos, values)
        cs = lam * ratios.clipped_cs
        not_trunc_t = _trace_mask(truncated, values)
        # delta_t V with per-step discount; carry_t multiplies (v_{t+1} - V(x_{t+1})).
        delta_t = rho_t * (rewards.detach() + discount_t * v_next_t - values)
        carry_t = discount_t * _expand_to(cs, values) * not_trunc_t

        acc = torch.zeros_like(values[0])  # v_{t+1} - V(x_{t+1}); zero past the unroll
        vs_minus_v = []
        for t in reversed(range(values.shape[0])):
            acc = delta_t[t] + carry_t[t] * acc
            vs_minus_v.append(acc)
        vs = values + torch.stack(vs_minus_v[::-1], dim=0)

        # q_s bootstrap: lam v_{s+1} + (1 - lam) V(x_{s+1}); v_next at the end and at truncations.
        vs_tp1 = torch.cat([vs[1:], v_next_t[-1:]], dim=0)
        q_boot = lam * vs_tp1 + (1.0 - lam) * v_next_t
        if truncated is not None:
            q_boot = torch.where(_expand_to(truncated, values), v_next_t, q_boot)
        pg_rho_t = _expand_to(ratios.clipped_pg_rhos, values)
        q_estimate = rewards.detach() + discount_t * q_boot
        pg_advantages = pg_rho_t * (q_estimate - values)

    return VTraceReturns(
        vs=vs,
        pg_advantages=pg_advantages,
        rhos=ratios.rhos,
        clipped_rhos=ratios.clipped_rhos,
        cs=cs,
        q_estimate=q_estimate,
        pg_rhos=ratios.clipped_pg_rhos,
    )


def vtrace(
    log_rhos: Tensor,
    discounts: Tensor,
    rewards: Tensor,
    values: Tensor,
    bootstrap_value: Tensor,
    *,
    truncated: Tensor | None = None,
    final_values: Tensor | None = None,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
    pg_rho_bar: float | None = None,
    lam: float = 1.0,
    ratio_mode: RatioMode = "joint",
) -> VTraceReturns:
    """V-trace value targets and policy-gradient advantages (IMPALA eq. 1, Section 4.2).

    The one entry point for the learner: ``log_rhos`` may carry a trailing action-component axis
    (``[T, B, C]``), clipped according to ``ratio_mode`` (see module docstring).

    Args:
      log_rhos: ``[T, B]`` or ``[T, B, C]`` log importance ratios ``log pi - log mu``; broadcast
        over the objective axis ``K`` of a vector critic.
      discounts: ``[T, B]`` or ``[T, B, K]``, ``gamma * (1 - terminated)``.
      rewards: ``[T, B]`` or ``[T, B, K]``.
      values: same shape as ``rewards``, ``V(x_t)`` (one value per objective if ``K``).
      bootstrap_value: ``[B]`` or ``[B, K]``, value of the next unroll's first observation.
      truncated: optional bool ``[T, B]``, time-limit ends; requires ``final_values``.
      final_values: same shape as ``values``: ``V`` of the episode's final observation, read
        where ``truncated``.
      rho_bar, c_bar, pg_rho_bar, ratio_mode: see :func:`clip_importance_ratios`.
      lam: trace coefficient in ``[0, 1]`` (``c_t = lam * min(c_bar, rho_t)``).

    Returns:
      :class:`VTraceReturns`, detached.
    """
    ratios = clip_importance_ratios(
        log_rhos, rho_bar=rho_bar, c_bar=c_bar, pg_rho_bar=pg_rho_bar, ratio_mode=ratio_mode
    )
    return vtrace_from_clipped_ratios(
        ratios,
        discounts,
        rewards,
        values,
        bootstrap_value,
        truncated=truncated,
        final_values=final_values,
        lam=lam,
    )
