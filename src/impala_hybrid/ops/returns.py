"""Bootstrapped return targets on time-major unrolls ``[T, B, ...]``.

Conventions shared with :mod:`impala_hybrid.ops.vtrace` (one set of semantics for every target):

* ``values[t] = V(x_t)`` for ``t = 0 .. T-1``; ``bootstrap_value = V(x_T)``, the value of the
  observation that follows the unroll (the next unroll's first observation).
* ``rewards[t] = r_t``, the reward received for the transition ``x_t -> x_{t+1}``.
* ``discounts[t] = gamma * (1 - terminated[t])``: zero only where the episode *terminated* at
  step ``t`` (an absorbing state has value 0).
* ``truncated[t]`` (bool ``[T, B]``) marks a time-limit end at step ``t``. The episode did not
  terminate, so step ``t`` must still bootstrap, but from ``V`` of the episode's *final*
  observation, ``final_values[t]``. ``values[t + 1]`` is the first observation of the next episode
  (auto-reset) and must not be used, and nothing after ``t`` may leak into targets at or before
  ``t`` (the multi-step "trace" is cut).

Hence the next-state value used by every one-step backup is::

    v_next[t] = final_values[t]      if truncated[t]
              = values[t + 1]        if t < T - 1
              = bootstrap_value      if t = T - 1

see :func:`next_values`. ``final_values`` entries where ``truncated`` is False are never read
(selected away with ``torch.where``, so garbage such as NaN there is harmless).

A trailing objective axis ``K`` (vector critic) is allowed everywhere: ``rewards``/``values``
``[T, B, K]``, ``bootstrap_value`` ``[B, K]``; ``discounts`` may be ``[T, B]`` (shared gamma) or
``[T, B, K]`` (per-objective gamma); ``truncated`` is always ``[T, B]``.

All functions are pure torch, differentiable only if you want them to be (no ``detach`` here: the
callers decide; V-trace detaches its own outputs).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "discounted_returns",
    "generalized_advantage_estimates",
    "lambda_returns",
    "n_step_bootstrapped_returns",
    "next_values",
]


# --------------------------------------------------------------------------------------------
# Shape helpers (shared with vtrace.py).
# --------------------------------------------------------------------------------------------


def _expand_to(x: Tensor, like: Tensor) -> Tensor:
    """Append trailing singleton axes so a ``[T, B]`` tensor broadcasts against ``[T, B, K]``."""
    while x.dim() < like.dim():
        x = x.unsqueeze(-1)
    return x


def _check_time_major(
    *,
    rewards: Tensor,
    discounts: Tensor,
    values: Tensor | None,
    bootstrap_value: Tensor | None,
    truncated: Tensor | None,
    final_values: Tensor | None,
) -> None:
    """Raise ``ValueError`` with the offending shapes if the inputs break the conventions."""
    if rewards.dim() < 2:
        raise ValueError(
            f"rewards must be time-major [T, B, ...], got shape {tuple(rewards.shape)}"
        )
    shape = rewards.shape
    tb = shape[:2]
    if values is not None and values.shape != shape:
        raise ValueError(
            f"values shape {tuple(values.shape)} must equal rewards shape {tuple(shape)}"
        )
    if discounts.shape not in (tb, shape):
        raise ValueError(
            f"discounts shape {tuple(discounts.shape)} must be [T, B]={tuple(tb)} "
            f"or equal to rewards shape {tuple(shape)}"
        )
    if bootstrap_value is not None and bootstrap_value.shape != shape[1:]:
        raise ValueError(
            f"bootstrap_value shape {tuple(bootstrap_value.shape)} must be {tuple(shape[1:])} "
            "(rewards shape without the time axis)"
        )
    if (truncated is None) != (final_values is None):
        raise ValueError("truncated and final_values must be given together (or both omitted)")
    if truncated is not None and final_values is not None:
        if truncated.shape != tb:
            raise ValueError(f"truncated shape {tuple(truncated.shape)} must be [T, B]={tuple(tb)}")
        if truncated.dtype != torch.bool:
            raise ValueError(f"truncated must be a bool tensor, got dtype {truncated.dtype}")
        if final_values.shape != shape:
            raise ValueError(
                f"final_values shape {tuple(final_values.shape)} must equal rewards shape "
                f"{tuple(shape)}"
            )


def _trace_mask(truncated: Tensor | None, like: Tensor) -> Tensor:
    """``1 - truncated[t]`` broadcast to ``like``: multiplies every term that carries information
    from step ``t + 1`` back into step ``t`` (the trace cut at a time-limit boundary)."""
    if truncated is None:
        return torch.ones_like(like)
    return _expand_to((~truncated).to(like.dtype), like)


def next_values(
    values: Tensor,
    bootstrap_value: Tensor,
    *,
    truncated: Tensor | None = None,
    final_values: Tensor | None = None,
) -> Tensor:
    """``v_next[t]``, the value of the observation that follows step ``t`` in the *same* episode.

    Shifts ``values`` one step left, appends ``bootstrap_value`` and, where ``truncated[t]``,
    substitutes ``final_values[t]`` (see the module docstring). Whether the backup uses it at all
    is the job of ``discounts`` (zero on termination).

    Args:
      values: ``[T, B, *K]``, ``V(x_t)``.
      bootstrap_value: ``[B, *K]``, ``V(x_T)``.
      truncated: optional bool ``[T, B]``.
      final_values: ``[T, B, *K]``, read only where ``truncated``.

    Returns:
      ``[T, B, *K]`` next-state values.
    """
    v_tp1 = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
    if truncated is None or final_values is None:
        if (truncated is None) != (final_values is None):
            raise ValueError("truncated and final_values must be given together (or both omitted)")
        return v_tp1
    return torch.where(_expand_to(truncated, values), final_values, v_tp1)


# --------------------------------------------------------------------------------------------
# Targets.
# --------------------------------------------------------------------------------------------


def discounted_returns(
    rewards: Tensor,
    discounts: Tensor,
    bootstrap_value: Tensor | None = None,
    *,
    truncated: Tensor | None = None,
    final_values: Tensor | None = None,
) -> Tensor:
    """Discounted return to the end of the unroll: ``G_t = r_t + discount_t * G_{t+1}``.

    ``G_T = bootstrap_value`` (zeros if omitted, i.e. a Monte-Carlo return of the unroll), and at a
    truncated step ``G_{t+1}`` is replaced by ``final_values[t]``. Equals
    :func:`n_step_bootstrapped_returns` with ``n >= T`` and :func:`lambda_returns` with ``lam=1``
    (tested identities); written as the plain recursion to serve as their ground truth.

    Args:
      rewards: ``[T, B, *K]``.
      discounts: ``[T, B]`` or ``[T, B, *K]``.
      bootstrap_value: ``[B, *K]`` or None.
      truncated, final_values: see module docstring.

    Returns:
      ``[T, B, *K]`` returns.
    """
    if bootstrap_value is None:
        bootstrap_value = torch.zeros_like(rewards[0])
    _check_time_major(
        rewards=rewards,
        discounts=discounts,
        values=None,
        bootstrap_value=bootstrap_value,
        truncated=truncated,
        final_values=final_values,
    )
    discount_t = _expand_to(discounts, rewards)
    trunc_t = None if truncated is None else _expand_to(truncated, rewards)
    g_tp1 = bootstrap_value
    out = []
    for t in reversed(range(rewards.shape[0])):
        if trunc_t is not None and final_values is not None:
            g_tp1 = torch.where(trunc_t[t], final_values[t], g_tp1)
        g_t = rewards[t] + discount_t[t] * g_tp1
        out.append(g_t)
        g_tp1 = g_t
    return torch.stack(out[::-1], dim=0)


def n_step_bootstrapped_returns(
    rewards: Tensor,
    discounts: Tensor,
    values: Tensor,
    bootstrap_value: Tensor,
    n: int | None = None,
    *,
    truncated: Tensor | None = None,
    final_values: Tensor | None = None,
) -> Tensor:
    """n-step bootstrapped returns (IMPALA eq. 2 is the on-policy V-trace special case).

    ``G_t = sum_{i=0}^{k-1} (prod_{j<i} discount_{t+j}) r_{t+i}
    + (prod_{j<k} discount_{t+j}) v_next[t+k-1]``,
    where ``k = min(n, T - t, steps to the end of the episode segment)``: the lookahead stops at
    the end of the unroll (bootstrapping from ``bootstrap_value``) and at a truncation (from
    ``final_values``); terminations zero the discount products. ``n=None`` means "to the end of
    the unroll", which is what on-policy V-trace with all clips at 1 computes.

    Vectorised over ``t``: ``min(n, T)`` tensor ops, no per-``t`` Python loop.

    Returns:
      ``[T, B, *K]`` returns.
    """
    _check_time_major(
        rewards=rewards,
        discounts=discounts,
        values=values,
        bootstrap_value=bootstrap_value,
        truncated=truncated,
        final_values=final_values,
    )
    seq_len = rewards.shape[0]
    if n is None:
        n = seq_len
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    n = min(n, seq_len)

    discount_t = _expand_to(discounts, rewards).expand_as(rewards)
    v_next_t = next_values(values, bootstrap_value, truncated=truncated, final_values=final_values)
    # end_here[t] = 1 where the lookahead cannot go past step t: last step or a truncation.
    end_here = 1.0 - _trace_mask(truncated, rewards)
    end_here = end_here.expand_as(rewards).clone()
    end_here[-1] = 1.0

    def shift(x: Tensor, i: int) -> Tensor:
        """``x[t + i]`` at row ``t``, zero-padded past the end of the unroll."""
        if i == 0:
            return x
        return torch.cat([x[i:], torch.zeros_like(x[:i])], dim=0)

    ret = torch.zeros_like(rewards)
    scale = torch.ones_like(rewards)  # prod_{j<i} discount_{t+j}
    active = torch.ones_like(rewards)  # 1 while the lookahead from t is still running
    for i in range(n):
        r_i, d_i, v_i = shift(rewards, i), shift(discount_t, i), shift(v_next_t, i)
        stop_i = shift(end_here, i)
        if i == n - 1:
            stop_i = torch.ones_like(stop_i)
        ret = ret + active * scale * (r_i + stop_i * d_i * v_i)
        active = active * (1.0 - stop_i)
        scale = scale * d_i
    return ret


def lambda_returns(
    rewards: Tensor,
    discounts: Tensor,
    values: Tensor,
    bootstrap_value: Tensor,
    lam: float = 1.0,
    *,
    truncated: Tensor | None = None,
    final_values: Tensor | None = None,
) -> Tensor:
    """TD(lambda) returns: ``G_t = r_t + discount_t ((1 - lam) v_next[t] + lam G_{t+1})``.

    ``G_{t+1}`` is replaced by ``v_next[t]`` at the end of the unroll and at a truncation (the
    trace cut), so ``lam=0`` gives one-step TD targets and ``lam=1`` the bootstrapped discounted
    return. On-policy V-trace with ``rho_bar = c_bar = 1`` and trace coefficient ``lam`` equals
    this (tested identity).

    Returns:
      ``[T, B, *K]`` returns.
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
    discount_t = _expand_to(discounts, rewards)
    v_next_t = next_values(values, bootstrap_value, truncated=truncated, final_values=final_values)
    trunc_t = None if truncated is None else _expand_to(truncated, rewards)
    g_tp1 = v_next_t[-1]
    out = []
    for t in reversed(range(rewards.shape[0])):
        mixed = (1.0 - lam) * v_next_t[t] + lam * g_tp1
        if trunc_t is not None:
            mixed = torch.where(trunc_t[t], v_next_t[t], mixed)
        g_t = rewards[t] + discount_t[t] * mixed
        out.append(g_t)
        g_tp1 = g_t
    return torch.stack(out[::-1], dim=0)


def generalized_advantage_estimates(
    rewards: Tensor,
    discounts: Tensor,
    values: Tensor,
    bootstrap_value: Tensor,
    lam: float = 1.0,
    *,
    truncated: Tensor | None = None,
    final_values: Tensor | None = None,
) -> Tensor:
    """GAE (Schulman et al. 2016): ``A_t = delta_t + discount_t lam (1 - truncated_t) A_{t+1}``.

    ``delta_t = r_t + discount_t v_next[t] - V(x_t)``, ``A_T = 0``. Equals
    ``lambda_returns(...) - values`` (tested identity), and equals the V-trace policy-gradient
    advantage on-policy with ``rho_bar = c_bar = pg_rho_bar = 1``.

    Returns:
      ``[T, B, *K]`` advantages.
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
    discount_t = _expand_to(discounts, rewards)
    v_next_t = next_values(values, bootstrap_value, truncated=truncated, final_values=final_values)
    delta_t = rewards + discount_t * v_next_t - values
    carry_t = discount_t * lam * _trace_mask(truncated, rewards)
    adv_tp1 = torch.zeros_like(bootstrap_value)
    out = []
    for t in reversed(range(rewards.shape[0])):
        adv_t = delta_t[t] + carry_t[t] * adv_tp1
        out.append(adv_t)
        adv_tp1 = adv_t
    return torch.stack(out[::-1], dim=0)
