"""Lagrange multipliers for constraints on expected costs: the PID Lagrangian.

The constrained problem ``max_pi J_R(pi)  s.t.  J_Ci(pi) <= d_i`` is solved as the saddle
point of the Lagrangian ``J_R - sum_i lambda_i (J_Ci - d_i)`` with ``lambda_i >= 0``: the
policy ascends the penalised return while each multiplier rises while its constraint is
violated and falls back to 0 once it holds (reward-constrained policy optimisation, Tessler
et al. 2019: gradient ascent on lambda, ``lambda <- [lambda + K_I (J_C - d)]+``). Plain
gradient ascent on lambda oscillates, because lambda reacts to the integral of the
violation only; Stooke, Achiam & Abbeel (ICML 2020, "Responsive Safety in Reinforcement
Learning by PID Lagrangian Methods", Algorithm 2) add proportional and derivative terms:

    Delta_k = J_C,k - d                         (violation at learner step k)
    I_k     = [I_{k-1} + Delta_k]+              (integral, never below 0)
    P_k     = EMA(Delta)_k                      (proportional, smoothed)
    D_k     = [EMA(J_C)_k - EMA(J_C)_{k-1}]+    (derivative of the cost, rising only)
    lambda_k = [K_P P_k + K_I I_k + K_D D_k]+   (capped at ``lambda_max``)

With ``K_P = K_D = 0`` this is exactly Tessler's update with learning rate ``K_I`` (tested).
Why by hand: no maintained library implements the update on its own (it is a few lines in
each safe-RL codebase, e.g. OmniSafe's ``PIDLagrangian``); this is that update as a pure
function of tensors ``[C]``, one entry per constraint, so the learner keeps its state in
checkpoints and several learners feed it one global cost estimate.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class PIDState(NamedTuple):
    """The multipliers' memory, each ``[C]``."""

    integral: Tensor  # I: the accumulated violation, >= 0
    smoothed_violation: Tensor  # EMA of Delta (the P term)
    smoothed_cost: Tensor  # EMA of J_C (the D term differences it)
    steps: Tensor  # updates so far (scalar; 0: the EMAs start at the first value)


def pid_init(num_constraints: int, initial: float, ki: float) -> PIDState:
    """A state whose multipliers start at ``initial`` (through the integral: ``I = initial /
    K_I``; with ``K_I = 0`` the start is 0 and ``initial`` must be 0)."""
    if initial < 0.0:
        raise ValueError(f"initial multiplier {initial!r} is invalid: allowed range [0, inf)")
    if initial > 0.0 and ki <= 0.0:
        raise ValueError("a non-zero initial multiplier needs K_I > 0 (it lives in the integral)")
    start = initial / ki if initial > 0.0 else 0.0
    zeros = torch.zeros(num_constraints)
    return PIDState(torch.full((num_constraints,), start), zeros, zeros.clone(), torch.zeros(()))


def pid_lagrange(
    cost: Tensor,
    limit: Tensor,
    state: PIDState,
    *,
    kp: float,
    ki: float,
    kd: float,
    ema: float,
    lambda_max: float,
) -> tuple[Tensor, PIDState]:
    """One update of the multipliers from the cost estimates ``cost [C]`` (e.g. a batch's
    mean per-step cost) against ``limit [C]``; returns ``(lambda [C], new state)``.

    ``ema`` in ``(0, 1]``: the weight of the new value in the P and D terms' moving averages
    (1: no smoothing). Equation numbers: Stooke et al. 2020, Algorithm 2 (see module doc).
    """
    violation = cost - limit
    first = bool(state.steps == 0)
    integral = (state.integral + violation).clamp(min=0.0)
    smoothed_violation = (
        violation if first else torch.lerp(state.smoothed_violation, violation, ema)
    )
    smoothed_cost = cost if first else torch.lerp(state.smoothed_cost, cost, ema)
    rising = (
        torch.zeros_like(cost) if first else (smoothed_cost - state.smoothed_cost).clamp(min=0.0)
    )
    lam = (kp * smoothed_violation + ki * integral + kd * rising).clamp(0.0, lambda_max)
    return lam, PIDState(integral, smoothed_violation, smoothed_cost, state.steps + 1)
