"""Return targets: hand-computed cases, loop references and identities between special cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import Tensor

from impala_hybrid.ops.returns import (
    discounted_returns,
    generalized_advantage_estimates,
    lambda_returns,
    n_step_bootstrapped_returns,
    next_values,
)
from tests.reference.vtrace_reference import lambda_return_reference, n_step_return_reference

F64 = torch.float64


def _random_unroll(
    seed: int, *, seq_len: int = 7, batch: int = 4, num_objectives: int | None = None
) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    tb = (seq_len, batch)
    vshape = tb if num_objectives is None else (*tb, num_objectives)
    terminated = torch.rand(tb, generator=g) < 0.15
    truncated = torch.rand(tb, generator=g) < 0.2
    trunc_k = truncated if num_objectives is None else truncated[..., None]
    final_values = torch.randn(vshape, generator=g, dtype=F64)
    return {
        "rewards": torch.randn(vshape, generator=g, dtype=F64),
        "discounts": 0.9 * (~terminated).to(F64),
        "values": torch.randn(vshape, generator=g, dtype=F64),
        "bootstrap_value": torch.randn(vshape[1:], generator=g, dtype=F64),
        "truncated": truncated,
        # NaN wherever final_values must not be read.
        "final_values": torch.where(trunc_k, final_values, torch.full_like(final_values, math.nan)),
    }


def _np(x: dict[str, Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in x.items()}


def _t(x: list[float] | list[list[float]]) -> Tensor:
    return torch.tensor(x, dtype=F64)


# ---------------------------------------------------------------------------------------------
# Hand-computed.
# ---------------------------------------------------------------------------------------------


def test_discounted_returns_hand_computed() -> None:
    rewards = _t([[1.0], [2.0], [3.0]])
    # G_2 = 3 + 0.5 * 4 = 5, G_1 = 2 + 0.5 * 5 = 4.5, G_0 = 1 + 0.5 * 4.5 = 3.25.
    out = discounted_returns(rewards, _t([[0.5], [0.5], [0.5]]), _t([4.0]))
    torch.testing.assert_close(out, _t([[3.25], [4.5], [5.0]]))
    # Termination at t=1: G_1 = 2, G_0 = 1 + 0.5 * 2 = 2; G_2 unchanged.
    out = discounted_returns(rewards, _t([[0.5], [0.0], [0.5]]), _t([4.0]))
    torch.testing.assert_close(out, _t([[2.0], [2.0], [5.0]]))
    # No bootstrap: Monte-Carlo return of the unroll.
    out = discounted_returns(rewards, _t([[0.5], [0.5], [0.5]]))
    torch.testing.assert_close(out, _t([[2.75], [3.5], [3.0]]))


def test_discounted_returns_truncation_hand_computed() -> None:
    # Truncation at t=0 with final value 10: G_0 = 1 + 0.5 * 10 = 6, later steps unaffected.
    out = discounted_returns(
        _t([[1.0], [2.0], [3.0]]),
        _t([[0.5], [0.5], [0.5]]),
        _t([4.0]),
        truncated=torch.tensor([[True], [False], [False]]),
        final_values=_t([[10.0], [math.nan], [math.nan]]),
    )
    torch.testing.assert_close(out, _t([[6.0], [4.5], [5.0]]))


def test_n_step_hand_computed() -> None:
    rewards, discounts = _t([[1.0], [2.0], [3.0]]), _t([[0.5], [0.5], [0.5]])
    values, boot = _t([[10.0], [20.0], [30.0]]), _t([40.0])
    # n=2: G_0 = 1 + 0.5*2 + 0.25*30 = 9.5; G_1 = 2 + 0.5*3 + 0.25*40 = 13.5; G_2 = 3 + 0.5*40.
    out = n_step_bootstrapped_returns(rewards, discounts, values, boot, 2)
    torch.testing.assert_close(out, _t([[9.5], [13.5], [23.0]]))
    # n=1: one-step TD targets.
    out = n_step_bootstrapped_returns(rewards, discounts, values, boot, 1)
    torch.testing.assert_close(out, _t([[11.0], [17.0], [23.0]]))


def test_lambda_returns_hand_computed() -> None:
    rewards, discounts = _t([[1.0], [2.0]]), _t([[0.5], [0.5]])
    values, boot = _t([[10.0], [20.0]]), _t([40.0])
    # G_1 = 2 + 0.5 * 40 = 22; G_0 = 1 + 0.5 * (0.5 * 20 + 0.5 * 22) = 11.5.
    out = lambda_returns(rewards, discounts, values, boot, lam=0.5)
    torch.testing.assert_close(out, _t([[11.5], [22.0]]))


def test_next_values() -> None:
    values, boot = _t([[1.0], [2.0], [3.0]]), _t([4.0])
    torch.testing.assert_close(next_values(values, boot), _t([[2.0], [3.0], [4.0]]))
    trunc = torch.tensor([[False], [True], [True]])
    fin = _t([[math.nan], [7.0], [8.0]])
    torch.testing.assert_close(
        next_values(values, boot, truncated=trunc, final_values=fin), _t([[2.0], [7.0], [8.0]])
    )


# ---------------------------------------------------------------------------------------------
# Against loop references.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "n", "num_objectives"), list(itertools.product(range(3), [1, 2, 3, 9], [None, 6]))
)
def test_n_step_matches_reference(seed: int, n: int, num_objectives: int | None) -> None:
    x = _random_unroll(seed, num_objectives=num_objectives)
    out = n_step_bootstrapped_returns(**x, n=n)
    expected = n_step_return_reference(**_np(x), n=n)
    torch.testing.assert_close(out, torch.from_numpy(expected))


@pytest.mark.parametrize(
    ("seed", "lam", "num_objectives"),
    list(itertools.product(range(3), [0.0, 0.4, 0.9, 1.0], [None, 6])),
)
def test_lambda_returns_match_forward_view(
    seed: int, lam: float, num_objectives: int | None
) -> None:
    x = _random_unroll(seed, num_objectives=num_objectives)
    out = lambda_returns(**x, lam=lam)
    expected = lambda_return_reference(**_np(x), lam=lam)
    torch.testing.assert_close(out, torch.from_numpy(expected))


# ---------------------------------------------------------------------------------------------
# Identities.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_full_lookahead_identities(seed: int) -> None:
    x = _random_unroll(seed, num_objectives=3)
    full = n_step_bootstrapped_returns(**x, n=None)
    torch.testing.assert_close(full, n_step_bootstrapped_returns(**x, n=100))
    torch.testing.assert_close(full, lambda_returns(**x, lam=1.0))
    no_values = {k: v for k, v in x.items() if k != "values"}
    torch.testing.assert_close(full, discounted_returns(**no_values))


@pytest.mark.parametrize("seed", range(3))
def test_one_step_identities(seed: int) -> None:
    x = _random_unroll(seed)
    v_next = next_values(
        x["values"], x["bootstrap_value"], truncated=x["truncated"], final_values=x["final_values"]
    )
    one_step = x["rewards"] + x["discounts"] * v_next
    torch.testing.assert_close(n_step_bootstrapped_returns(**x, n=1), one_step)
    torch.testing.assert_close(lambda_returns(**x, lam=0.0), one_step)


@pytest.mark.parametrize(("seed", "lam"), list(itertools.product(range(3), [0.0, 0.7, 1.0])))
def test_gae_equals_lambda_returns_minus_values(seed: int, lam: float) -> None:
    x = _random_unroll(seed, num_objectives=2)
    torch.testing.assert_close(
        generalized_advantage_estimates(**x, lam=lam), lambda_returns(**x, lam=lam) - x["values"]
    )


def test_per_objective_discounts() -> None:
    x = _random_unroll(0, num_objectives=2)
    x["discounts"] = x["discounts"][..., None] * _t([1.0, 0.5])
    out = lambda_returns(**x, lam=0.6)
    torch.testing.assert_close(out, torch.from_numpy(lambda_return_reference(**_np(x), lam=0.6)))


def test_no_truncation_equals_all_false_truncation() -> None:
    x = _random_unroll(0)
    plain = {k: v for k, v in x.items() if k not in ("truncated", "final_values")}
    never = {**x, "truncated": torch.zeros_like(x["truncated"])}
    for fn in (lambda_returns, generalized_advantage_estimates):
        torch.testing.assert_close(fn(**plain, lam=0.8), fn(**never, lam=0.8))
    torch.testing.assert_close(
        n_step_bootstrapped_returns(**plain, n=3), n_step_bootstrapped_returns(**never, n=3)
    )


def test_returns_are_differentiable_in_values() -> None:
    x = _random_unroll(0)
    values = x["values"].clone().requires_grad_()
    lambda_returns(**{**x, "values": values}, lam=0.5).sum().backward()
    assert values.grad is not None and torch.isfinite(values.grad).all()


# ---------------------------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------------------------


def test_validation_errors() -> None:
    x = _random_unroll(0)
    with pytest.raises(ValueError, match="lam"):
        lambda_returns(**x, lam=1.1)
    with pytest.raises(ValueError, match="lam"):
        generalized_advantage_estimates(**x, lam=-0.5)
    with pytest.raises(ValueError, match="n must be"):
        n_step_bootstrapped_returns(**x, n=0)
    with pytest.raises(ValueError, match="together"):
        lambda_returns(**{**x, "truncated": None}, lam=0.5)
    with pytest.raises(ValueError, match="discounts"):
        lambda_returns(**{**x, "discounts": x["discounts"][:-1]}, lam=0.5)
    with pytest.raises(ValueError, match="final_values"):
        lambda_returns(**{**x, "final_values": x["final_values"][:, :1]}, lam=0.5)
