"""Tests for the action distributions: densities against references, entropies against
Monte-Carlo estimates, numerical robustness at the box bounds, gating, shapes and gradients."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch import distributions as td

from impala_hybrid.models.distributions import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    ActionDistribution,
    BetaDistribution,
    CategoricalDistribution,
    HybridAction,
    HybridFactorizedDistribution,
    HybridGatedDistribution,
    SquashedGaussianDistribution,
    _expected_log_sech2,
    beta_mode,
    make_distribution,
    param_shapes,
)

K, D = 4, 3
LOW = torch.tensor([-2.0, 0.0, 10.0])
HIGH = torch.tensor([3.0, 1.0, 10.5])

Builder = Callable[[tuple[int, ...], torch.dtype], tuple[ActionDistribution[Any], list[Tensor]]]


def _randn(shape: tuple[int, ...], dtype: torch.dtype, seed: int, scale: float = 1.0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=g, dtype=dtype)).requires_grad_()


def _categorical(batch: tuple[int, ...], dtype: torch.dtype) -> Any:
    logits = _randn((*batch, K), dtype, 1)
    return CategoricalDistribution(logits), [logits]


def _squashed(batch: tuple[int, ...], dtype: torch.dtype) -> Any:
    mean, log_std = _randn((*batch, D), dtype, 2), _randn((*batch, D), dtype, 3, 0.5)
    return SquashedGaussianDistribution(mean, log_std, LOW, HIGH), [mean, log_std]


def _beta(batch: tuple[int, ...], dtype: torch.dtype) -> Any:
    ra, rb = _randn((*batch, D), dtype, 4), _randn((*batch, D), dtype, 5)
    return BetaDistribution(ra, rb, LOW, HIGH), [ra, rb]


def _factorized(batch: tuple[int, ...], dtype: torch.dtype) -> Any:
    (cat, p1), (cont, p2) = _categorical(batch, dtype), _squashed(batch, dtype)
    return HybridFactorizedDistribution(cat, cont), p1 + p2


def _gated_gaussian(batch: tuple[int, ...], dtype: torch.dtype) -> Any:
    (cat, p1), (cont, p2) = _categorical(batch, dtype), _squashed((*batch, K), dtype)
    return HybridGatedDistribution(cat, cont), p1 + p2


def _gated_beta(batch: tuple[int, ...], dtype: torch.dtype) -> Any:
    (cat, p1), (cont, p2) = _categorical(batch, dtype), _beta((*batch, K), dtype)
    return HybridGatedDistribution(cat, cont), p1 + p2


BUILDERS: dict[str, Builder] = {
    "categorical": _categorical,
    "squashed": _squashed,
    "beta": _beta,
    "factorized": _factorized,
    "gated_gaussian": _gated_gaussian,
    "gated_beta": _gated_beta,
}
NUM_PARTS = {"categorical": 1, "squashed": 1, "beta": 1}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _tensors(action: Tensor | HybridAction) -> tuple[Tensor, ...]:
    return tuple(action) if isinstance(action, HybridAction) else (action,)


def _assert_mc_entropy(
    make: Callable[[int], ActionDistribution[Any]], n: int = 100_000, seed: int = 0
) -> None:
    """E[-log_prob(sample)] matches ``entropy()``; ``make(n)`` repeats the batch ``n`` times."""
    dist = make(n)
    with torch.no_grad():
        neg_lp = -dist.log_prob(dist.sample(torch.Generator().manual_seed(seed)))  # [n, ...]
        mc, se = neg_lp.mean(0), neg_lp.std(0) / math.sqrt(n)
        exact = make(1).entropy()[0]
    assert torch.all((mc - exact).abs() < 5.0 * se + 1e-3), (mc, exact, se)


def _rep(x: Tensor, n: int) -> Tensor:
    return x.detach().expand(n, *x.shape)


# --------------------------------------------------------------------------------------------
# Interface: shapes, determinism, reproducibility, gradients
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("batch", [(5,), (7, 5)], ids=["B", "TB"])
def test_shapes(name: str, batch: tuple[int, ...]) -> None:
    dist, _ = BUILDERS[name](batch, torch.float32)
    c = NUM_PARTS.get(name, 2)
    assert dist.num_parts == c and dist.batch_shape == batch
    expected: list[tuple[tuple[int, ...], torch.dtype]] = []
    if name == "categorical" or c == 2:
        expected.append((batch, torch.int64))
    if name != "categorical":
        expected.append(((*batch, D), torch.float32))
    for action in (dist.sample(), dist.mode()):
        assert isinstance(action, HybridAction) == (c == 2)
        parts = _tensors(action)
        assert [(tuple(t.shape), t.dtype) for t in parts] == expected
        assert all(not t.requires_grad for t in parts)
        assert dist.log_prob(action).shape == batch
        assert dist.log_prob_parts(action).shape == (*batch, c)
        env = _tensors(dist.to_env(action))
        assert [t.shape for t in env] == [t.shape for t in parts]
    assert dist.entropy().shape == batch
    assert dist.entropy_parts().shape == (*batch, c)
    torch.testing.assert_close(dist.entropy(), dist.entropy_parts().sum(-1))


@pytest.mark.parametrize("name", BUILDERS)
def test_mode_deterministic_and_sampling_reproducible(name: str) -> None:
    dist, _ = BUILDERS[name]((6, 2), torch.float32)
    for a, b in zip(_tensors(dist.mode()), _tensors(dist.mode()), strict=True):
        assert torch.equal(a, b)
    s1 = dist.sample(torch.Generator().manual_seed(123))
    s2 = dist.sample(torch.Generator().manual_seed(123))
    s3 = dist.sample(torch.Generator().manual_seed(124))
    for a, b in zip(_tensors(s1), _tensors(s2), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(_tensors(s1), _tensors(s3), strict=True))
    torch.manual_seed(7)
    g1 = dist.sample()
    torch.manual_seed(7)
    g2 = dist.sample()
    for a, b in zip(_tensors(g1), _tensors(g2), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", BUILDERS)
def test_gradients_flow_through_log_prob_and_entropy(name: str) -> None:
    dist, params = BUILDERS[name]((8,), torch.float32)
    action = dist.sample(torch.Generator().manual_seed(0))
    for objective in (dist.log_prob(action).sum(), dist.entropy().sum()):
        grads = torch.autograd.grad(objective, params, retain_graph=True)
        for p, g in zip(params, grads, strict=True):
            assert g.shape == p.shape and torch.isfinite(g).all()
            assert g.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# Categorical
# --------------------------------------------------------------------------------------------


def test_categorical_matches_torch() -> None:
    logits = torch.randn(6, 5, K, dtype=torch.float64)
    dist, ref = CategoricalDistribution(logits), td.Categorical(logits=logits)
    action = torch.randint(0, K, (6, 5))
    torch.testing.assert_close(dist.log_prob(action), ref.log_prob(action))
    torch.testing.assert_close(
        dist.log_prob(action),
        torch.log_softmax(logits, -1)[torch.arange(6)[:, None], torch.arange(5), action],
    )
    torch.testing.assert_close(dist.entropy(), ref.entropy())
    assert torch.equal(dist.mode(), logits.argmax(-1))
    _assert_mc_entropy(lambda n: CategoricalDistribution(_rep(logits, n)))


def test_categorical_samples_follow_probs() -> None:
    """Empirical frequencies of 200k draws per row match the probabilities (5 sigma), masked
    actions at either end are never drawn, and a near-deterministic row stays in range."""
    logits = torch.tensor(
        [[0.0, 1.0, -1.0, 2.0], [3.0, 0.0, 0.5, 9.0], [0.0, 0.0, 0.0, 0.0], [50.0, 0.0, 0.0, 0.0]]
    )
    mask = torch.tensor([[True] * K, [False, True, True, False], [True] * K, [True] * K])
    dist = CategoricalDistribution(logits.expand(50_000, 4, K), mask.expand(50_000, 4, K))
    gen = torch.Generator().manual_seed(0)
    draws = torch.cat([dist.sample(gen) for _ in range(4)])  # [200k, 4]
    assert draws.min() >= 0 and draws.max() < K
    freq = F.one_hot(draws, K).double().mean(0)  # [4, K]
    probs = dist.probs[0].double()
    sigma = (probs * (1 - probs) / draws.shape[0]).sqrt()
    assert torch.all((freq - probs).abs() <= 5 * sigma + 1e-12), (freq, probs)
    assert torch.all(freq[1, [0, 3]] == 0)


def test_categorical_mask() -> None:
    logits = torch.randn(3, K, requires_grad=True)
    mask = torch.tensor([[True, False, True, True], [False, False, True, False], [True] * K])
    dist = CategoricalDistribution(logits, mask)
    samples = torch.stack([dist.sample(torch.Generator().manual_seed(i)) for i in range(300)])
    assert mask.gather(1, samples.T).all()
    ref0 = td.Categorical(logits=logits[0, [0, 2, 3]])
    torch.testing.assert_close(
        dist.log_prob(torch.tensor([2, 2, 1]))[0], ref0.log_prob(torch.tensor(1))
    )
    torch.testing.assert_close(dist.entropy()[0], ref0.entropy())
    assert dist.entropy()[1].abs() < 1e-6 and torch.equal(dist.mode()[1], torch.tensor(2))
    (grad,) = torch.autograd.grad(dist.entropy().sum() + dist.log_prob(dist.mode()).sum(), logits)
    assert torch.isfinite(grad).all() and torch.all(grad[~mask] == 0)


# --------------------------------------------------------------------------------------------
# Squashed Gaussian
# --------------------------------------------------------------------------------------------


def test_squashed_log_prob_matches_transformed_distribution() -> None:
    mean = torch.randn(5, D, dtype=torch.float64)
    log_std = 0.5 * torch.randn(5, D, dtype=torch.float64)
    low, high = LOW.double(), HIGH.double()
    dist = SquashedGaussianDistribution(mean, log_std, low, high)
    ref = td.TransformedDistribution(
        td.Normal(mean, log_std.exp()),
        [td.TanhTransform(), td.AffineTransform((high + low) / 2, (high - low) / 2)],
    )
    u = dist.sample(torch.Generator().manual_seed(0)).clamp(-3, 3)  # atanh is fine in here
    torch.testing.assert_close(dist.log_prob(u), ref.log_prob(dist.to_env(u)).sum(-1))


def test_squashed_tails_finite_and_env_actions_in_box() -> None:
    mean, log_std = torch.zeros(6, D), torch.zeros(6, D)
    dist = SquashedGaussianDistribution(mean, log_std, LOW, HIGH)
    u = torch.tensor([-50.0, -20.0, -1.0, 1.0, 20.0, 50.0])[:, None].expand(6, D)
    assert torch.isfinite(dist.log_prob(u)).all()
    env = dist.to_env(u)
    assert torch.equal(env[0], LOW) and torch.equal(env[-1], HIGH)
    assert torch.equal(env[1], LOW) and torch.equal(env[-2], HIGH)
    wide = SquashedGaussianDistribution(
        torch.zeros(10_000, D), torch.full((10_000, D), 2.0), LOW, HIGH
    )
    a = wide.to_env(wide.sample(torch.Generator().manual_seed(0)))
    assert torch.all((a >= LOW) & (a <= HIGH))
    assert torch.isfinite(wide.log_prob(wide.sample())).all()


def test_squashed_log_std_clamped() -> None:
    dist = SquashedGaussianDistribution(torch.zeros(2, 1), torch.tensor([[-30.0], [30.0]]))
    assert torch.equal(dist.log_std.squeeze(-1), torch.tensor([LOG_STD_MIN, LOG_STD_MAX]))


@pytest.mark.parametrize("log_std", [-1.0, 0.0])
def test_squashed_density_integrates_to_one_over_box(log_std: float) -> None:
    """Quadrature in env-action space, inverting the squash with atanh (float64)."""
    low, high, mean = -2.0, 3.0, 0.4
    dist = SquashedGaussianDistribution(
        torch.tensor([[mean]], dtype=torch.float64),
        torch.tensor([[log_std]], dtype=torch.float64),
        low,
        high,
    )
    a = torch.linspace(low, high, 200_001, dtype=torch.float64)[1:-1]
    u = torch.atanh(2 * (a - low) / (high - low) - 1)
    density = dist.log_prob(u[:, None]).exp()
    assert abs(float(torch.trapezoid(density, a)) - 1.0) < 1e-4


@pytest.mark.parametrize("log_std", [0.0, 1.0])
def test_squashed_change_of_variables_with_autograd_jacobian(log_std: float) -> None:
    """int p(a(u)) a'(u) du = 1, with a'(u) from autograd of to_env (independent of log_prob).

    Also covers wider policies whose env-action density piles up at the bounds (up to std = e;
    beyond, float64 tanh' underflows where the Gaussian still has mass)."""
    dist = SquashedGaussianDistribution(
        torch.tensor([[0.7]], dtype=torch.float64),
        torch.tensor([[log_std]], dtype=torch.float64),
        -1.5,
        0.5,
    )
    s = math.exp(log_std)
    u = torch.linspace(0.7 - 12 * s, 0.7 + 12 * s, 100_001, dtype=torch.float64)[:, None]
    u.requires_grad_()
    (jac,) = torch.autograd.grad(dist.to_env(u).sum(), u)
    integrand = dist.log_prob(u).exp() * jac[:, 0]
    assert abs(float(torch.trapezoid(integrand.detach(), u.detach()[:, 0])) - 1.0) < 1e-6


def test_expected_log_sech2_matches_dense_quadrature() -> None:
    means = [0.0, 0.5, -3.0, 8.0]
    log_stds = [LOG_STD_MIN, -1.0, 0.0, 0.5, 1.0, 1.5, LOG_STD_MAX]
    m = torch.tensor(means, dtype=torch.float64)[:, None].expand(4, 7)
    s = torch.tensor(log_stds, dtype=torch.float64).exp()[None, :].expand(4, 7)
    got = _expected_log_sech2(m, s).numpy()
    for i, mu in enumerate(means):
        for j, ls in enumerate(log_stds):
            sd = math.exp(ls)
            x = np.linspace(mu - 12 * sd, mu + 12 * sd, 200_001)
            f = 2 * (math.log(2) - x - np.logaddexp(0, -2 * x))
            pdf = np.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
            # 16-node Gauss-Hermite below std = 1: its error peaks near 1.4e-5 at std ~ 1
            assert abs(got[i, j] - np.trapezoid(f * pdf, x)) < 2e-5, (mu, ls)


def test_expected_log_sech2_gradients_match_finite_differences() -> None:
    """The narrow rule's hand-written backward and the wide rule's autograd, mixed in one call
    (stds on both sides of 1, means from 0 to far in the tails)."""
    mean = torch.tensor([[0.0, 0.4, -2.5, 9.0], [1.3, -0.7, 30.0, -6.0]], dtype=torch.float64)
    std = torch.tensor([[0.01, 0.3, 0.9, 0.6], [1.6, 4.0, 0.5, 7.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        _expected_log_sech2, (mean.requires_grad_(), std.requires_grad_()), atol=1e-7
    )


def test_expected_log_sech2_float32_matches_float64() -> None:
    m = torch.linspace(-12.0, 12.0, 97, dtype=torch.float64)[:, None].expand(97, 8)
    log_s = torch.linspace(LOG_STD_MIN, LOG_STD_MAX, 8, dtype=torch.float64)
    s = log_s.exp()[None, :].expand(97, 8)
    exact = _expected_log_sech2(m, s)
    single = _expected_log_sech2(m.float(), s.float()).double()
    assert torch.allclose(single, exact, atol=2e-5, rtol=1e-6)


def test_squashed_entropy_is_monte_carlo_entropy() -> None:
    mean = torch.tensor([[0.0, 2.0, -1.0], [0.3, -0.5, 4.0]], dtype=torch.float64)
    log_std = torch.tensor([[-2.0, 0.0, 0.7], [1.2, 2.0, -0.5]], dtype=torch.float64)
    low, high = LOW.double(), HIGH.double()
    _assert_mc_entropy(
        lambda n: SquashedGaussianDistribution(_rep(mean, n), _rep(log_std, n), low, high)
    )
    # Each setting as its own 1-D distribution too, so per-dimension errors cannot compensate.
    m1, s1 = mean.reshape(6, 1), log_std.reshape(6, 1)
    _assert_mc_entropy(lambda n: SquashedGaussianDistribution(_rep(m1, n), _rep(s1, n)), seed=1)


def test_squashed_entropy_bounded_by_uniform() -> None:
    """Unlike the pre-squash Gaussian entropy, it peaks below log(volume) at a moderate std."""
    m, ls = torch.meshgrid(
        torch.linspace(-2, 2, 41, dtype=torch.float64),
        torch.linspace(LOG_STD_MIN, LOG_STD_MAX, 71, dtype=torch.float64),
        indexing="ij",
    )
    h = SquashedGaussianDistribution(m[..., None], ls[..., None], -1.0, 1.0).entropy()
    best = int(h.argmax())
    assert float(h.max()) < math.log(2.0)
    assert abs(float(m.flatten()[best])) < 1e-9 and 0.5 < math.exp(float(ls.flatten()[best])) < 1.2
    assert float(h[20, -1]) < float(h[20].max()) - 5.0  # widest std is far from max entropy


# --------------------------------------------------------------------------------------------
# Beta
# --------------------------------------------------------------------------------------------


def test_beta_log_prob_and_entropy_match_formulas() -> None:
    ra, rb = torch.randn(5, D, dtype=torch.float64), torch.randn(5, D, dtype=torch.float64)
    low, high = LOW.double(), HIGH.double()
    dist = BetaDistribution(ra, rb, low, high)
    alpha, beta = torch.nn.functional.softplus(ra) + 1, torch.nn.functional.softplus(rb) + 1
    assert torch.all(dist.alpha > 1) and torch.all(dist.beta > 1)
    y = torch.rand(5, D, dtype=torch.float64)
    log_b = torch.lgamma(alpha) + torch.lgamma(beta) - torch.lgamma(alpha + beta)
    log_vol = torch.log(high - low).sum()
    hand = ((alpha - 1) * y.log() + (beta - 1) * (1 - y).log() - log_b).sum(-1) - log_vol
    torch.testing.assert_close(dist.log_prob(y), hand)
    dg = torch.digamma
    h = (
        log_b
        - (alpha - 1) * dg(alpha)
        - (beta - 1) * dg(beta)
        + (alpha + beta - 2) * dg(alpha + beta)
    )
    torch.testing.assert_close(dist.entropy(), h.sum(-1) + log_vol)
    torch.testing.assert_close(dist.mode(), (alpha - 1) / (alpha + beta - 2))
    torch.testing.assert_close(dist.to_env(y), low + y * (high - low))
    _assert_mc_entropy(lambda n: BetaDistribution(_rep(ra, n), _rep(rb, n), low, high))


def test_beta_mode_is_the_density_argmax() -> None:
    """``beta_mode`` (what training evaluates and the exported policy deploys) against the
    argmax of ``td.Beta``'s density on a grid of 200001 points; 0.5 with a zero gradient where
    both concentrations are exactly 1 (the density is flat), never a NaN."""
    alpha = torch.tensor([1.5, 7.0, 1.01, 30.0, 2.0], dtype=torch.float64)
    beta = torch.tensor([1.5, 1.2, 4.0, 30.0, 1.0], dtype=torch.float64)
    grid = torch.linspace(1e-6, 1 - 1e-6, 200_001, dtype=torch.float64)
    density = td.Beta(alpha[:, None], beta[:, None]).log_prob(grid)
    torch.testing.assert_close(beta_mode(alpha, beta), grid[density.argmax(-1)], atol=1e-5, rtol=0)
    flat = torch.ones(2, dtype=torch.float64, requires_grad=True)
    mode = beta_mode(flat, flat.clone())
    assert mode.tolist() == [0.5, 0.5]
    (grad,) = torch.autograd.grad(mode.sum(), flat)
    assert grad.tolist() == [0.0, 0.0]


def test_beta_log_prob_finite_at_bounds() -> None:
    ra = torch.tensor([[0.5, 3.0], [-2.0, 10.0]], requires_grad=True)
    rb = torch.tensor([[1.0, -1.0], [4.0, 0.0]], requires_grad=True)
    dist = BetaDistribution(ra, rb, 0.0, 1.0)
    y = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    lp = dist.log_prob(y)
    assert torch.isfinite(lp).all()
    grads = torch.autograd.grad(lp.sum(), [ra, rb])
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.equal(dist.to_env(y), y)
    assert torch.equal(
        BetaDistribution(ra, rb, LOW[:2], HIGH[:2]).to_env(y),
        torch.where(y == 0, LOW[:2], HIGH[:2]),
    )


def test_beta_samples_in_unit_box_and_concentrated() -> None:
    dist = BetaDistribution(torch.full((20_000, 1), 50.0), torch.full((20_000, 1), 8.0))
    y = dist.sample(torch.Generator().manual_seed(0))
    assert torch.all((y >= 0) & (y <= 1))
    expected_mean = (50 + 1) / (50 + 1 + 8 + 1)  # softplus(x) ~ x for large x
    assert abs(float(y.mean()) - expected_mean) < 0.01


# --------------------------------------------------------------------------------------------
# Hybrid
# --------------------------------------------------------------------------------------------


def test_factorized_parts() -> None:
    dist, _ = _factorized((7, 5), torch.float32)
    assert isinstance(dist, HybridFactorizedDistribution)
    action = dist.sample(torch.Generator().manual_seed(0))
    parts = dist.log_prob_parts(action)
    assert parts.shape == (7, 5, 2)
    torch.testing.assert_close(dist.log_prob(action), parts.sum(-1))
    torch.testing.assert_close(parts[..., 0], dist.discrete.log_prob(action.discrete))
    torch.testing.assert_close(parts[..., 1], dist.continuous.log_prob(action.continuous))
    torch.testing.assert_close(dist.entropy(), dist.discrete.entropy() + dist.continuous.entropy())
    env = dist.to_env(action)
    assert torch.equal(env.discrete, action.discrete)
    assert torch.all((env.continuous >= LOW) & (env.continuous <= HIGH))


@pytest.mark.parametrize("name", ["gated_gaussian", "gated_beta"])
def test_gated_ignores_non_chosen_parameters(name: str) -> None:
    dist, params = BUILDERS[name]((6,), torch.float32)
    cont_params = params[1:]
    action = dist.sample(torch.Generator().manual_seed(0))
    lp = dist.log_prob(action)
    grads = torch.autograd.grad(lp.sum(), cont_params)
    chosen = torch.nn.functional.one_hot(action.discrete, K).bool()  # [B, K]
    for g in grads:
        assert torch.all(g[~chosen] == 0) and torch.all(g[chosen].abs().sum(-1) > 0)
    # Perturb the non-chosen sets: identical log-prob, bit for bit.
    perturbed = [torch.where(chosen[..., None], p, p + 5.0).detach() for p in cont_params]
    rebuilt = (
        SquashedGaussianDistribution(*perturbed, LOW, HIGH)
        if name == "gated_gaussian"
        else BetaDistribution(*perturbed, LOW, HIGH)
    )
    assert isinstance(dist, HybridGatedDistribution)
    other = HybridGatedDistribution(dist.discrete, rebuilt)
    assert torch.equal(other.log_prob(action), lp)


@pytest.mark.parametrize("name", ["gated_gaussian", "gated_beta"])
def test_gated_log_prob_and_exact_entropy_direct(name: str) -> None:
    dist, params = BUILDERS[name]((5,), torch.float64)
    assert isinstance(dist, HybridGatedDistribution)
    logits = params[0]
    action = dist.sample(torch.Generator().manual_seed(1))
    probs = torch.softmax(logits, -1)
    h_direct = -(probs * probs.log()).sum(-1)
    cls = type(dist.continuous)
    for b in range(5):
        k = int(action.discrete[b])
        set_k = cls(params[1][b, k], params[2][b, k], LOW.double(), HIGH.double())
        expected = torch.log_softmax(logits[b], -1)[k] + set_k.log_prob(action.continuous[b])
        torch.testing.assert_close(dist.log_prob(action)[b], expected)
        h_direct[b] += sum(
            probs[b, j]
            * cls(params[1][b, j], params[2][b, j], LOW.double(), HIGH.double()).entropy()
            for j in range(K)
        )
    torch.testing.assert_close(dist.entropy(), h_direct)
    _assert_mc_entropy(
        lambda n: HybridGatedDistribution(
            CategoricalDistribution(_rep(logits, n)),
            cls(_rep(params[1], n), _rep(params[2], n), LOW.double(), HIGH.double()),
        )
    )


def test_gated_samples_and_mode_use_chosen_set() -> None:
    logits = torch.tensor([[0.0, 5.0, 0.0], [9.0, 0.0, 0.0]])
    mean = torch.tensor([[-3.0, 0.5, 3.0], [1.0, -0.5, 2.0]])[..., None]  # [B, K, 1]
    log_std = torch.full((2, 3, 1), LOG_STD_MIN)
    dist = HybridGatedDistribution(
        CategoricalDistribution(logits), SquashedGaussianDistribution(mean, log_std)
    )
    mode = dist.mode()
    assert mode.discrete.tolist() == [1, 0]
    torch.testing.assert_close(mode.continuous, torch.tensor([[0.5], [1.0]]))
    for seed in range(20):
        a = dist.sample(torch.Generator().manual_seed(seed))
        chosen = mean[torch.arange(2), a.discrete]
        assert torch.all((a.continuous - chosen).abs() < 0.1)


# --------------------------------------------------------------------------------------------
# Factory and validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cont", "cls"),
    [
        ("categorical", "squashed_gaussian", CategoricalDistribution),
        ("squashed_gaussian", "squashed_gaussian", SquashedGaussianDistribution),
        ("beta", "squashed_gaussian", BetaDistribution),
        ("hybrid_factorized", "beta", HybridFactorizedDistribution),
        ("hybrid_gated", "squashed_gaussian", HybridGatedDistribution),
        ("hybrid_gated", "beta", HybridGatedDistribution),
    ],
)
def test_factory_builds_from_param_shapes(kind: Any, cont: Any, cls: type) -> None:
    shapes = param_shapes(kind, num_actions=6, action_dim=6, continuous_kind=cont)
    if kind == "hybrid_gated":
        assert shapes["logits"] == (6,) and all(
            s == (6, 6) for n, s in shapes.items() if n != "logits"
        )
    params = {name: torch.randn(7, 5, *shape) for name, shape in shapes.items()}
    dist = make_distribution(kind, params, continuous_kind=cont, low=0.0, high=1.0)
    assert isinstance(dist, cls) and dist.batch_shape == (7, 5)
    assert dist.log_prob(dist.sample()).shape == (7, 5)


def test_factory_and_constructor_errors() -> None:
    with pytest.raises(ValueError, match="unknown distribution kind"):
        make_distribution("gaussian", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs params"):
        make_distribution(
            "squashed_gaussian", {"mean": torch.zeros(2, 1), "logstd": torch.zeros(2, 1)}
        )
    with pytest.raises(ValueError, match="shape"):
        SquashedGaussianDistribution(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="finite"):
        BetaDistribution(torch.zeros(2, 1), torch.zeros(2, 1), -math.inf, 1.0)
    with pytest.raises(ValueError, match="low < high"):
        SquashedGaussianDistribution(torch.zeros(2, 2), torch.zeros(2, 2), [0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="low must be"):
        SquashedGaussianDistribution(torch.zeros(2, 2), torch.zeros(2, 2), [0.0, 0.0, 0.0], 1.0)
    cat = CategoricalDistribution(torch.zeros(4, K))
    with pytest.raises(ValueError, match="gated"):
        HybridGatedDistribution(
            cat, SquashedGaussianDistribution(torch.zeros(4, D), torch.zeros(4, D))
        )
    with pytest.raises(ValueError, match="batch shape"):
        HybridFactorizedDistribution(cat, BetaDistribution(torch.zeros(3, D), torch.zeros(3, D)))


# choice_mode: the discrete choice drawn by Gumbel-max, the parameters at their mode


@pytest.mark.parametrize("name", list(BUILDERS))
def test_choice_mode_with_zero_noise_is_the_mode(name: str) -> None:
    dist, _ = BUILDERS[name]((5, 2), torch.float32)
    for got, want in zip(
        _tensors(dist.choice_mode(torch.zeros(5, 2, K))), _tensors(dist.mode()), strict=True
    ):
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", ["categorical", "factorized", "gated_gaussian", "gated_beta"])
def test_choice_mode_with_gumbel_noise_draws_the_choice_from_pi(name: str) -> None:
    """Gumbel-max: the choice's frequencies over 40k draws match pi within 4 standard errors;
    the continuous part is the mode given the drawn choice (for a gated head, the drawn
    choice's own parameter set)."""
    from impala_hybrid.deploy.inference import gumbel_noise

    dist, _ = BUILDERS[name]((3,), torch.float32)
    cat = dist if isinstance(dist, CategoricalDistribution) else dist.discrete
    n = 40_000
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(gumbel_noise(rng, 3 * n, K)).reshape(n, 3, K)
    # the same 3 distributions n times: expand the logits along a new leading axis
    rep = BUILDERS[name]((3,), torch.float32)[0]
    action = _choice_mode_repeated(rep, noise)
    k = action.discrete if isinstance(action, HybridAction) else action
    freq = torch.stack([(k == j).double().mean(0) for j in range(K)], -1)  # [3, K]
    p = cat.probs.detach().double()
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() <= 4 * se + 1e-12).all(), (freq, p)
    if isinstance(action, HybridAction):
        if isinstance(rep, HybridGatedDistribution):
            want = rep.continuous.mode()[torch.arange(3), k]  # [n, 3, D]
        else:
            want = rep.continuous.mode().expand(n, 3, D)
        assert torch.equal(action.continuous, want)


def _choice_mode_repeated(dist: Any, noise: Tensor) -> Any:
    """``dist.choice_mode`` for ``noise [n, *batch, K]``: the distribution broadcast to n rows."""
    n = noise.shape[0]
    if isinstance(dist, CategoricalDistribution):
        return CategoricalDistribution(
            dist.logits.detach().expand(n, *dist.logits.shape)
        ).choice_mode(noise)
    cat = CategoricalDistribution(
        dist.discrete.logits.detach().expand(n, *dist.discrete.logits.shape)
    )
    c = dist.continuous
    if isinstance(c, SquashedGaussianDistribution):
        cont: Any = SquashedGaussianDistribution(
            c.mean.detach().expand(n, *c.mean.shape),
            c.log_std.detach().expand(n, *c.log_std.shape), LOW, HIGH,
        )  # fmt: skip
    else:
        cont = BetaDistribution(
            c.raw_alpha.detach().expand(n, *c.raw_alpha.shape),
            c.raw_beta.detach().expand(n, *c.raw_beta.shape), LOW, HIGH,
        )  # fmt: skip
    return type(dist)(cat, cont).choice_mode(noise)
