"""V-trace: against the slow eq.-1 reference, published test vectors, special-case identities."""

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
from impala_hybrid.ops.vtrace import (
    ClippedRatios,
    VTraceReturns,
    clip_importance_ratios,
    vtrace,
    vtrace_from_clipped_ratios,
)
from tests.reference.vtrace_reference import clip_ratios_reference, vtrace_reference

F64 = torch.float64


def _random_unroll(
    seed: int,
    *,
    seq_len: int = 7,
    batch: int = 4,
    num_objectives: int | None = None,
    num_components: int | None = None,
    p_term: float = 0.15,
    p_trunc: float = 0.15,
    gamma: float = 0.9,
) -> dict[str, Tensor]:
    """Random inputs with terminations, truncations (some at the last step, some together with a
    termination) and NaN in ``final_values`` where it must never be read."""
    g = torch.Generator().manual_seed(seed)
    tb = (seq_len, batch)
    vshape = tb if num_objectives is None else (*tb, num_objectives)
    lshape = tb if num_components is None else (*tb, num_components)
    terminated = torch.rand(tb, generator=g) < p_term
    truncated = torch.rand(tb, generator=g) < p_trunc
    final_values = torch.randn(vshape, generator=g, dtype=F64)
    nan = torch.full_like(final_values, math.nan)
    trunc_k = truncated if num_objectives is None else truncated[..., None]
    return {
        "log_rhos": 1.5 * torch.randn(lshape, generator=g, dtype=F64),
        "discounts": gamma * (~terminated).to(F64),
        "rewards": torch.randn(vshape, generator=g, dtype=F64),
        "values": torch.randn(vshape, generator=g, dtype=F64),
        "bootstrap_value": torch.randn(vshape[1:], generator=g, dtype=F64),
        "truncated": truncated,
        "final_values": torch.where(trunc_k, final_values, nan),
    }


def _np(x: dict[str, Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in x.items()}


def _assert_close(actual: Tensor, expected: np.ndarray | Tensor, **kw: float) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), **kw)


# ---------------------------------------------------------------------------------------------
# Against the slow reference (eq. 1 as a double sum).
# ---------------------------------------------------------------------------------------------

CLIPS = [(1.0, 1.0, 1.0), (3.7, 1.2, 2.2), (2.0, 0.5, None), (math.inf, math.inf, math.inf)]


@pytest.mark.parametrize(
    ("seed", "num_objectives", "lam", "clips"),
    list(itertools.product(range(3), [None, 6], [1.0, 0.6, 0.0], CLIPS)),
)
def test_matches_reference(
    seed: int, num_objectives: int | None, lam: float, clips: tuple[float, float, float | None]
) -> None:
    rho_bar, c_bar, pg_rho_bar = clips
    x = _random_unroll(seed, num_objectives=num_objectives)
    out = vtrace(**x, rho_bar=rho_bar, c_bar=c_bar, pg_rho_bar=pg_rho_bar, lam=lam)
    vs, pg = vtrace_reference(
        **_np(x), rho_bar=rho_bar, c_bar=c_bar, pg_rho_bar=pg_rho_bar, lam=lam
    )
    assert not torch.isnan(out.vs).any()
    _assert_close(out.vs, vs, rtol=1e-10, atol=1e-10)
    _assert_close(out.pg_advantages, pg, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("seed", "ratio_mode", "num_objectives"),
    list(itertools.product(range(3), ["joint", "per_component"], [None, 6])),
)
def test_hybrid_ratio_modes_match_reference(
    seed: int, ratio_mode: str, num_objectives: int | None
) -> None:
    x = _random_unroll(seed, num_components=2, num_objectives=num_objectives)
    kw = {"rho_bar": 2.0, "c_bar": 1.0, "pg_rho_bar": 1.5, "lam": 0.9, "ratio_mode": ratio_mode}
    out = vtrace(**x, **kw)
    vs, pg = vtrace_reference(**_np(x), **kw)
    _assert_close(out.vs, vs, rtol=1e-10, atol=1e-10)
    _assert_close(out.pg_advantages, pg, rtol=1e-10, atol=1e-10)


def test_per_objective_discounts_match_reference() -> None:
    x = _random_unroll(7, num_objectives=3)
    gammas = torch.tensor([0.99, 0.9, 0.5], dtype=F64)
    x["discounts"] = x["discounts"][..., None] / 0.9 * gammas  # [T, B, K]
    out = vtrace(**x, rho_bar=2.0, lam=0.8)
    vs, pg = vtrace_reference(**_np(x), rho_bar=2.0, lam=0.8)
    _assert_close(out.vs, vs, rtol=1e-10, atol=1e-10)
    _assert_close(out.pg_advantages, pg, rtol=1e-10, atol=1e-10)


def test_vector_critic_equals_per_objective_scalar_runs() -> None:
    x = _random_unroll(3, num_objectives=6)
    out = vtrace(**x, rho_bar=2.0, c_bar=1.0, lam=0.9)
    for k in range(6):
        xk = dict(x)
        for name in ("rewards", "values", "bootstrap_value", "final_values"):
            xk[name] = x[name][..., k]
        outk = vtrace(**xk, rho_bar=2.0, c_bar=1.0, lam=0.9)
        torch.testing.assert_close(out.vs[..., k], outk.vs)
        torch.testing.assert_close(out.pg_advantages[..., k], outk.pg_advantages)


# ---------------------------------------------------------------------------------------------
# Published test vectors.
# ---------------------------------------------------------------------------------------------

# The construction of deepmind/scalable_agent vtrace_test.py (test_vtrace): T=5,
# log_rhos = 5 * (arange(T*B)/(T*B) - 0.5) so rho spans ~[0.08, 12.2) across both clip levels,
# discounts 0.9/(b+1) in batch column b, rewards = arange, values = arange/B,
# bootstrap = arange(B)+1, clip_rho_threshold=3.7, clip_pg_rho_threshold=2.2 (c_bar=1).
# That test compares against a Python ground truth rather than stored numbers; the numbers below
# are that construction evaluated in float64 by eq. 1 (tests/reference), and are spot-checked by
# hand for the last step: vs_4 = 4 + 3.7 * (4 + 0.9 * 1 - 4) = 7.33, pg_4 = 2.2 * 0.9 = 1.98.
SCALABLE_AGENT_EXPECTED = {
    1: (
        [[0.2001818606], [2.7096825636], [8.51362851], [11.9323972821], [7.33]],
        [[0.2001818606], [1.7096825636], [6.51362851], [10.8766155194], [1.98]],
    ),
    5: (
        [
            [0.9298155736, 0.5564374589, 0.8168945005, 1.1897671728, 1.6549954602],
            [12.586080678, 6.1226045612, 6.0147725687, 6.8583148144, 8.2233352175],
            [53.250234603, 29.4722122752, 27.5451444583, 29.0371906871, 31.8611544913],
            [84.997054889, 62.2525252533, 60.6322795562, 66.0365594189, 76.1301789842],
            [66.53, 69.690000515, 72.8499997425, 76.0100002575, 79.169999485],
        ],
        [
            [0.9298155736, 0.3564374559, 0.4168944945, 0.5897671489, 0.8549954483],
            [11.586080678, 4.9226045135, 4.6147725926, 5.2583147905, 6.4233352652],
            [51.250234603, 27.2722122275, 25.1451443629, 27.9146541161, 33.6161177823],
            [118.505152901, 88.9283204483, 78.0009996202, 69.3049503373, 64.791319901],
            [37.18, 38.9400004196, 40.6999997902, 42.4600002098, 44.2199995804],
        ],
    ),
}


def _scalable_agent_inputs(batch: int, dtype: torch.dtype) -> dict[str, Tensor]:
    seq_len = 5
    # float32 arange as in the original (the 1e-7 differences in the numbers above come from it).
    arange = torch.arange(seq_len * batch, dtype=torch.float32).reshape(seq_len, batch)
    log_rhos = 5 * (arange / (batch * seq_len) - 0.5)
    discounts = torch.tensor([[0.9 / (b + 1) for b in range(batch)]] * seq_len, dtype=F64)
    return {
        "log_rhos": log_rhos.to(dtype),
        "discounts": discounts.to(dtype),
        "rewards": arange.to(dtype),
        "values": (arange / batch).to(dtype),
        "bootstrap_value": (torch.arange(batch, dtype=torch.float32) + 1.0).to(dtype),
    }


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_scalable_agent_vectors(batch: int, dtype: torch.dtype, rtol: float) -> None:
    x = _scalable_agent_inputs(batch, dtype)
    out = vtrace(**x, rho_bar=3.7, c_bar=1.0, pg_rho_bar=2.2)
    expected_vs, expected_pg = SCALABLE_AGENT_EXPECTED[batch]
    assert out.vs.dtype == dtype
    _assert_close(out.vs, expected_vs, rtol=rtol, atol=1e-6)
    _assert_close(out.pg_advantages, expected_pg, rtol=rtol, atol=1e-6)


def test_reference_reproduces_scalable_agent_vectors() -> None:
    for batch, (expected_vs, expected_pg) in SCALABLE_AGENT_EXPECTED.items():
        x = _np(_scalable_agent_inputs(batch, torch.float64))
        vs, pg = vtrace_reference(**x, rho_bar=3.7, c_bar=1.0, pg_rho_bar=2.2)
        np.testing.assert_allclose(vs, expected_vs, rtol=1e-9)
        np.testing.assert_allclose(pg, expected_pg, rtol=1e-9)


# google-deepmind/rlax rlax/_src/vtrace_test.py: published logits, rewards, discounts, values
# and expected outputs. rlax is batch-major [B, T]; transposed to [T, B] here. Its defaults are
# clip_rho_threshold = clip_pg_rho_threshold = lambda = 1, and its "errors" are vs - V(x_t).
RLAX_BEHAVIOUR_LOGITS = [
    [[8.9, 0.7], [5.0, 1.0], [0.6, 0.1], [-0.9, -0.1]],
    [[0.3, -5.0], [1.0, -8.0], [0.3, 1.7], [4.7, 3.3]],
]
RLAX_TARGET_LOGITS = [
    [[0.4, 0.5], [9.2, 8.8], [0.7, 4.4], [7.9, 1.4]],
    [[1.0, 0.9], [1.0, -1.0], [-4.3, 8.7], [0.8, 0.3]],
]
RLAX_ACTIONS = [[0, 1, 0, 0], [1, 0, 0, 1]]
RLAX_REWARDS = [[-1.3, -1.3, 2.3, 42.0], [1.3, 5.3, -3.3, -5.0]]
RLAX_DISCOUNTS = [[0.0, 0.89, 0.85, 0.99], [0.88, 1.0, 0.83, 0.95]]
RLAX_VALUES = [[2.1, 1.1, -3.1, 0.0], [3.1, 0.1, -1.1, 7.4]]
RLAX_BOOTSTRAP = [8.4, -1.2]
RLAX_EXPECTED_TD = [
    [-1.6155143, -3.4973226, 1.8670533, 5.0316002e1],
    [1.4662437, 3.6116405, -8.3327293e-5, -1.3540000e1],
]
RLAX_EXPECTED_PG = [
    [-1.6155143, -3.4973226, 1.8670534, 5.0316002e1],
    [1.4662433, 3.6116405, -8.3369283e-05, -1.3540000e1],
]


def test_rlax_vectors() -> None:
    actions = torch.tensor(RLAX_ACTIONS)[..., None]

    def action_log_probs(logits: list[list[list[float]]]) -> Tensor:
        return torch.log_softmax(torch.tensor(logits), dim=-1).gather(-1, actions)[..., 0]

    log_rhos = action_log_probs(RLAX_TARGET_LOGITS) - action_log_probs(RLAX_BEHAVIOUR_LOGITS)
    values = torch.tensor(RLAX_VALUES).T
    out = vtrace(
        log_rhos.T,
        torch.tensor(RLAX_DISCOUNTS).T,
        torch.tensor(RLAX_REWARDS).T,
        values,
        torch.tensor(RLAX_BOOTSTRAP),
    )
    _assert_close((out.vs - values).T, RLAX_EXPECTED_TD, rtol=1e-3, atol=1e-6)
    _assert_close(out.pg_advantages.T, RLAX_EXPECTED_PG, rtol=1e-3, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Identities between special cases.
# ---------------------------------------------------------------------------------------------


def _on_policy(x: dict[str, Tensor]) -> dict[str, Tensor]:
    return {**x, "log_rhos": torch.zeros_like(x["log_rhos"])}


@pytest.mark.parametrize(("seed", "num_objectives"), [(0, None), (1, None), (2, 6)])
def test_on_policy_equals_n_step_bootstrapped_returns(
    seed: int, num_objectives: int | None
) -> None:
    """Eq. 2: on-policy, clips at 1, lam=1 -> n-step Bellman target to the end of the unroll."""
    x = _on_policy(_random_unroll(seed, num_objectives=num_objectives))
    out = vtrace(**x)
    ret_kw = {k: x[k] for k in ("rewards", "discounts", "truncated", "final_values")}
    expected = n_step_bootstrapped_returns(
        values=x["values"], n=None, **ret_kw, bootstrap_value=x["bootstrap_value"]
    )
    torch.testing.assert_close(out.vs, expected)
    torch.testing.assert_close(
        out.vs, discounted_returns(bootstrap_value=x["bootstrap_value"], **ret_kw)
    )
    torch.testing.assert_close(out.pg_advantages, expected - x["values"])


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95])
def test_on_policy_lambda_equals_td_lambda_and_gae(lam: float) -> None:
    x = _on_policy(_random_unroll(11, num_objectives=2))
    out = vtrace(**x, lam=lam)
    kw = {k: v for k, v in x.items() if k != "log_rhos"}
    torch.testing.assert_close(out.vs, lambda_returns(**kw, lam=lam))
    torch.testing.assert_close(out.pg_advantages, generalized_advantage_estimates(**kw, lam=lam))


@pytest.mark.parametrize("seed", range(3))
def test_lambda_zero_gives_one_step_td_targets(seed: int) -> None:
    x = _random_unroll(seed)
    v_next = next_values(
        x["values"], x["bootstrap_value"], truncated=x["truncated"], final_values=x["final_values"]
    )
    one_step = x["rewards"] + x["discounts"] * v_next
    on = vtrace(**_on_policy(x), lam=0.0)
    torch.testing.assert_close(on.vs, one_step)
    off = vtrace(**x, rho_bar=2.0, lam=0.0)
    torch.testing.assert_close(off.vs, x["values"] + off.clipped_rhos * (one_step - x["values"]))
    torch.testing.assert_close(off.cs, torch.zeros_like(off.cs))


def test_outputs_carry_no_gradient() -> None:
    x = {
        k: v.requires_grad_() if v.is_floating_point() else v for k, v in _random_unroll(0).items()
    }
    out = vtrace(**x)
    for field, value in zip(VTraceReturns._fields, out, strict=True):
        assert not value.requires_grad, field
        assert value.grad_fn is None, field


def test_truncation_mid_unroll_cuts_the_trace() -> None:
    """Batch column 0 truncates at k=2: x_3 is the next episode's first observation."""
    g = torch.Generator().manual_seed(5)
    seq_len, batch, k, gamma = 6, 3, 2, 0.9
    truncated = torch.zeros(seq_len, batch, dtype=torch.bool)
    truncated[k, 0] = True
    x = {
        "log_rhos": torch.randn(seq_len, batch, generator=g, dtype=F64),
        "discounts": torch.full((seq_len, batch), gamma, dtype=F64),
        "rewards": torch.randn(seq_len, batch, generator=g, dtype=F64),
        "values": torch.randn(seq_len, batch, generator=g, dtype=F64),
        "bootstrap_value": torch.randn(batch, generator=g, dtype=F64),
        "truncated": truncated,
        "final_values": torch.full((seq_len, batch), 10.0, dtype=F64),
    }
    kw = {"rho_bar": 2.0, "c_bar": 1.0, "lam": 0.9}
    base = vtrace(**x, **kw)

    # The step before the boundary bootstraps from final_values, with nothing added after it.
    v, r = x["values"][k, 0], x["rewards"][k, 0]
    td = r + gamma * 10.0 - v
    torch.testing.assert_close(base.vs[k, 0], v + base.clipped_rhos[k, 0] * td)
    pg_rho = torch.clamp(x["log_rhos"][k, 0].exp(), max=2.0)
    torch.testing.assert_close(base.pg_advantages[k, 0], pg_rho * td)
    on = vtrace(**_on_policy(x))
    torch.testing.assert_close(on.vs[k, 0], r + gamma * 10.0)

    # Steps after the boundary ignore the previous episode...
    prev = {**x}
    for name in ("values", "rewards", "log_rhos"):
        prev[name] = x[name].clone()
        prev[name][: k + 1, 0] += 100.0
    prev["final_values"] = x["final_values"] - 50.0
    after = vtrace(**prev, **kw)
    torch.testing.assert_close(after.vs[k + 1 :, 0], base.vs[k + 1 :, 0])
    torch.testing.assert_close(after.pg_advantages[k + 1 :, 0], base.pg_advantages[k + 1 :, 0])

    # ...and steps up to it ignore the next episode (values, rewards, ratios, bootstrap).
    nxt = {**x}
    for name in ("values", "rewards", "log_rhos"):
        nxt[name] = x[name].clone()
        nxt[name][k + 1 :, 0] -= 100.0
    nxt["bootstrap_value"] = x["bootstrap_value"] + 100.0
    before = vtrace(**nxt, **kw)
    torch.testing.assert_close(before.vs[: k + 1, 0], base.vs[: k + 1, 0])
    torch.testing.assert_close(before.pg_advantages[: k + 1, 0], base.pg_advantages[: k + 1, 0])
    # Other batch columns (no truncation) do see the changed bootstrap.
    assert not torch.allclose(before.vs[:, 1], base.vs[:, 1])


def test_truncation_at_last_step_uses_final_value_not_bootstrap() -> None:
    x = _on_policy(_random_unroll(0, p_trunc=0.0, p_term=0.0, batch=2, seq_len=3))
    x["truncated"][-1, 0] = True
    x["final_values"] = torch.full_like(x["values"], 3.0)
    out = vtrace(**x)
    torch.testing.assert_close(out.vs[-1, 0], x["rewards"][-1, 0] + 0.9 * 3.0)
    torch.testing.assert_close(out.vs[-1, 1], x["rewards"][-1, 1] + 0.9 * x["bootstrap_value"][1])


def test_termination_ignores_bootstrap() -> None:
    x = _on_policy(_random_unroll(1, p_trunc=0.0, p_term=0.0, batch=1, seq_len=3))
    x["discounts"][1, 0] = 0.0
    out = vtrace(**x)
    torch.testing.assert_close(out.vs[1, 0], x["rewards"][1, 0])
    torch.testing.assert_close(out.vs[0, 0], x["rewards"][0, 0] + 0.9 * x["rewards"][1, 0])


# ---------------------------------------------------------------------------------------------
# Hybrid-action ratio modes.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_ratio_modes_coincide_with_one_component(seed: int) -> None:
    x = _random_unroll(seed)
    plain = vtrace(**x, rho_bar=1.7, c_bar=0.9, pg_rho_bar=1.2)
    x1 = {**x, "log_rhos": x["log_rhos"][..., None]}
    for mode in ("joint", "per_component"):
        out = vtrace(**x1, rho_bar=1.7, c_bar=0.9, pg_rho_bar=1.2, ratio_mode=mode)
        for a, b in zip(out, plain, strict=True):
            torch.testing.assert_close(a, b)


def test_ratio_modes_differ_in_hand_computed_case() -> None:
    # r = (2, 0.25): joint min(1, 0.5) = 0.5; per-component min(1, 2) * min(1, 0.25) = 0.25.
    log_rhos = torch.log(torch.tensor([[[2.0, 0.25]]], dtype=F64))  # [T=1, B=1, C=2]
    inputs = {
        "discounts": torch.tensor([[0.5]], dtype=F64),
        "rewards": torch.tensor([[1.0]], dtype=F64),
        "values": torch.tensor([[1.0]], dtype=F64),
        "bootstrap_value": torch.tensor([2.0], dtype=F64),
    }
    # delta = r + gamma * V(x_1) - V(x_0) = 1 + 0.5 * 2 - 1 = 1.
    joint = vtrace(log_rhos, **inputs, ratio_mode="joint")
    per = vtrace(log_rhos, **inputs, ratio_mode="per_component")
    _assert_close(joint.clipped_rhos, [[0.5]])
    _assert_close(per.clipped_rhos, [[0.25]])
    _assert_close(joint.vs, [[1.5]])
    _assert_close(per.vs, [[1.25]])
    _assert_close(joint.pg_advantages, [[0.5]])
    _assert_close(per.pg_advantages, [[0.25]])
    _assert_close(joint.rhos, [[0.5]])
    _assert_close(per.rhos, [[0.5]])


def test_per_component_clips_each_factor() -> None:
    # A continuous factor with an astronomically large ratio (exp(500) overflows float64).
    log_rhos = torch.tensor([[[500.0, math.log(0.5)], [500.0, 0.0]]], dtype=F64)
    per = clip_importance_ratios(log_rhos, rho_bar=1.5, c_bar=1.0, ratio_mode="per_component")
    _assert_close(per.clipped_rhos, [[1.5 * 0.5, 1.5]])
    _assert_close(per.clipped_cs, [[0.5, 1.0]])
    _assert_close(per.clipped_pg_rhos, [[1.5 * 0.5, 1.5]])
    joint = clip_importance_ratios(log_rhos, rho_bar=1.5, c_bar=1.0, ratio_mode="joint")
    # Joint clipping saturates: the discrete factor's 0.5 has no effect.
    _assert_close(joint.clipped_rhos, [[1.5, 1.5]])
    assert torch.isfinite(per.clipped_rhos).all() and torch.isfinite(joint.clipped_rhos).all()


@pytest.mark.parametrize("ratio_mode", ["joint", "per_component"])
def test_clip_importance_ratios_matches_reference(ratio_mode: str) -> None:
    log_rhos = 2.0 * torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = clip_importance_ratios(
        log_rhos,
        rho_bar=2.5,
        c_bar=0.8,
        pg_rho_bar=1.3,
        ratio_mode=ratio_mode,
    )
    rho, c, pg = clip_ratios_reference(
        log_rhos.numpy(), rho_bar=2.5, c_bar=0.8, pg_rho_bar=1.3, ratio_mode=ratio_mode
    )
    _assert_close(out.clipped_rhos, rho)
    _assert_close(out.clipped_cs, c)
    _assert_close(out.clipped_pg_rhos, pg)
    _assert_close(out.rhos, log_rhos.sum(-1).exp())


def test_vtrace_from_clipped_ratios_accepts_custom_ratios() -> None:
    x = _random_unroll(4)
    ratios = clip_importance_ratios(x["log_rhos"], rho_bar=2.0)
    custom = ClippedRatios(*ratios)
    rest = {k: v for k, v in x.items() if k != "log_rhos"}
    a = vtrace_from_clipped_ratios(custom, **rest, lam=0.7)
    b = vtrace(**x, rho_bar=2.0, lam=0.7)
    for u, w in zip(a, b, strict=True):
        torch.testing.assert_close(u, w)


# ---------------------------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------------------------


def test_rho_bar_below_c_bar_raises() -> None:
    x = _random_unroll(0)
    with pytest.raises(ValueError, match=r"rho_bar=0\.5.*c_bar=1\.0"):
        vtrace(**x, rho_bar=0.5, c_bar=1.0)


@pytest.mark.parametrize(
    "kw",
    [
        {"lam": 1.5},
        {"lam": -0.1},
        {"rho_bar": 0.0, "c_bar": 0.0},
        {"pg_rho_bar": -1.0},
        {"c_bar": math.nan},
        {"ratio_mode": "sum"},
    ],
)
def test_bad_hyperparameters_raise(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        vtrace(**_random_unroll(0), **kw)


def test_bad_shapes_raise() -> None:
    x = _random_unroll(0, num_objectives=2)
    with pytest.raises(ValueError, match="bootstrap_value"):
        vtrace(**{**x, "bootstrap_value": x["bootstrap_value"][..., 0]})
    with pytest.raises(ValueError, match="together"):
        vtrace(**{**x, "final_values": None})
    with pytest.raises(ValueError, match="truncated"):
        vtrace(**{**x, "truncated": x["truncated"].to(F64)})
    with pytest.raises(ValueError, match="log_rhos"):
        vtrace(**{**x, "log_rhos": x["log_rhos"][0]})
    with pytest.raises(ValueError, match="values"):
        vtrace(**{**x, "values": x["values"][..., :1]})
