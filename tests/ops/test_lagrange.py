"""The PID Lagrangian (ops/lagrange.py) against slow references written like the papers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from impala_hybrid.ops.lagrange import pid_init, pid_lagrange


def run(costs: np.ndarray, limit: float, **gains: float) -> np.ndarray:
    """The multipliers after each of ``costs [K, C]`` (one constraint per column)."""
    c = costs.shape[1]
    state = pid_init(c, gains.pop("initial", 0.0), gains["ki"])
    out = []
    for row in costs:
        lam, state = pid_lagrange(
            torch.tensor(row, dtype=torch.float32), torch.full((c,), limit), state,
            lambda_max=gains.get("lambda_max", 1e9), ema=gains.get("ema", 1.0),
            kp=gains.get("kp", 0.0), ki=gains["ki"], kd=gains.get("kd", 0.0),
        )  # fmt: skip
        out.append(lam.numpy())
    return np.array(out)


def rcpo_reference(costs: list[float], limit: float, lr: float, start: float) -> list[float]:
    """Tessler et al. 2019: lambda <- max(0, lambda + lr (J_C - d)), one scalar at a time."""
    lam, out = start, []
    for c in costs:
        lam = max(0.0, lam + lr * (c - limit))
        out.append(lam)
    return out


def pid_reference(
    costs: list[float], limit: float, kp: float, ki: float, kd: float, ema: float
) -> list[float]:
    """Stooke et al. 2020, Algorithm 2, with EMA-smoothed P and D terms, scalar loop."""
    integral, p_avg, c_avg, out = 0.0, None, None, []
    for c in costs:
        delta = c - limit
        integral = max(0.0, integral + delta)
        prev = c_avg
        p_avg = delta if p_avg is None else (1 - ema) * p_avg + ema * delta
        c_avg = c if c_avg is None else (1 - ema) * c_avg + ema * c
        d = 0.0 if prev is None else max(0.0, c_avg - prev)
        out.append(max(0.0, kp * p_avg + ki * integral + kd * d))
    return out


def test_integral_only_is_gradient_ascent_on_the_multiplier() -> None:
    rng = np.random.default_rng(0)
    costs = rng.uniform(0.0, 1.0, (200, 1))
    got = run(costs, 0.5, ki=0.1, initial=0.3)[:, 0]
    want = rcpo_reference(list(costs[:, 0]), 0.5, 0.1, 0.3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_pid_matches_the_paper_loop() -> None:
    rng = np.random.default_rng(1)
    costs = rng.uniform(0.0, 1.0, (300, 1)).cumsum(0) % 1.3  # rising ramps and drops
    gains = {"kp": 0.5, "ki": 0.05, "kd": 2.0, "ema": 0.2}
    got = run(costs, 0.6, **gains)[:, 0]
    want = pid_reference(list(costs[:, 0]), 0.6, **gains)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_multiplier_rises_while_violated_and_falls_when_satisfied() -> None:
    violated = np.full((50, 2), [0.8, 0.2])  # constraint 0 broken, 1 satisfied (limit 0.5)
    satisfied = np.full((200, 2), 0.3)
    lam = run(np.concatenate([violated, satisfied]), 0.5, ki=0.1, kp=0.2)
    assert (np.diff(lam[:50, 0]) > 0).all() and lam[49, 0] > 1.0
    assert (lam[:, 1] == 0.0).all()  # never violated: never priced
    assert (np.diff(lam[50:, 0]) <= 1e-7).all() and lam[-1, 0] == 0.0


def test_derivative_reacts_to_a_rising_cost_only_and_the_cap_holds() -> None:
    up = np.linspace(0.0, 0.4, 20)[:, None]  # below the limit, rising
    lam = run(np.concatenate([up, up[::-1]]), 0.5, ki=0.0, kd=10.0)
    assert (lam[1:20, 0] > 0).all() and (lam[21:, 0] == 0).all()
    capped = run(np.full((100, 1), 5.0), 0.5, ki=1.0, lambda_max=3.0)
    assert capped.max() == pytest.approx(3.0)


def test_bad_initial_values_are_errors() -> None:
    with pytest.raises(ValueError, match=r"allowed range \[0, inf\)"):
        pid_init(1, -1.0, 0.1)
    with pytest.raises(ValueError, match="needs K_I > 0"):
        pid_init(1, 1.0, 0.0)
