"""Parameterised action spaces (issue 13): ``Tuple(Discrete(K), Tuple(Box_1, ..., Box_K))``.

The space parses into one concatenated parameter vector with per-action segments and bounds;
the gated head (``hybrid_parameterized``) counts only the chosen action's own dimensions in
log-prob, entropy and hence V-trace ratios, checked against a slow reference that builds one
small distribution per action; the factorised head counts every dimension.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import Tensor

from impala_hybrid.models.actor_critic import ActorCritic, ModelConfig
from impala_hybrid.models.distributions import (
    BetaDistribution,
    BoundedContinuousDistribution,
    CategoricalDistribution,
    HybridAction,
    HybridFactorizedDistribution,
    HybridParameterizedDistribution,
    SquashedGaussianDistribution,
    owner_matrix,
)
from impala_hybrid.models.spaces import SpaceError, action_spec

SEGMENTS = (2, 0, 1, 3)
LOWS = [np.array([-1.0, 0.0]), np.zeros(0), np.array([-2.0]), np.array([0.0, -5.0, 10.0])]
HIGHS = [np.array([1.0, 3.0]), np.zeros(0), np.array([2.0]), np.array([1.0, 5.0, 10.5])]


def _box(k: int) -> gym.spaces.Box:
    return gym.spaces.Box(LOWS[k].astype(np.float32), HIGHS[k].astype(np.float32))


def param_space(container: str = "tuple") -> gym.Space[Any]:
    boxes = [_box(k) for k in range(len(SEGMENTS))]
    if container == "tuple":
        return gym.spaces.Tuple((gym.spaces.Discrete(4), gym.spaces.Tuple(boxes)))
    names = ["a_run", "b_hop", "c_jump", "d_kick"]  # sorted, so Dict keeps this order
    return gym.spaces.Dict(
        {
            "action": gym.spaces.Discrete(4),
            "params": gym.spaces.Dict(dict(zip(names, boxes, strict=True))),
        }
    )


@pytest.mark.parametrize("container", ["tuple", "dict"])
@pytest.mark.parametrize("mode", ["gated", "factorized"])
def test_parameterized_space_parses_and_round_trips(container: str, mode: str) -> None:
    space = param_space(container)
    spec = action_spec(space, hybrid_mode=mode)  # type: ignore[arg-type]
    assert spec.kind == ("hybrid_parameterized" if mode == "gated" else "hybrid_factorized")
    assert spec.segments == SEGMENTS and spec.num_actions == 4 and spec.action_dim == 6
    np.testing.assert_array_equal(spec.low, np.concatenate(LOWS))  # each action's own bounds
    np.testing.assert_array_equal(spec.high, np.concatenate(HIGHS))
    n = 5
    x = np.random.default_rng(0).uniform(spec.low, spec.high, (n, 6))
    env_action = spec.to_env(HybridAction(torch.arange(n) % 4, torch.as_tensor(x)))
    batched = gym.vector.utils.batch_space(space, n)
    assert batched.contains(env_action)
    for i, single in enumerate(gym.vector.utils.iterate(batched, env_action)):
        assert space.contains(single)
        params = single[1] if container == "tuple" else list(single["params"].values())
        np.testing.assert_allclose(np.concatenate(list(params)), x[i], rtol=1e-6)


def test_parameterized_space_errors_name_the_entry() -> None:
    d2, box = gym.spaces.Discrete(2), gym.spaces.Box(-1.0, 1.0, (1,))
    with pytest.raises(SpaceError, match="one Box per discrete action"):
        action_spec(gym.spaces.Tuple((d2, gym.spaces.Tuple((box,)))))
    with pytest.raises(SpaceError, match=r"\[1\]\[1\].*1-D Box"):
        action_spec(gym.spaces.Tuple((d2, gym.spaces.Tuple((box, gym.spaces.Discrete(3))))))
    with pytest.raises(SpaceError, match=r"\[1\]\[0\].*finite"):
        inf = gym.spaces.Box(-np.inf, np.inf, (1,))
        action_spec(gym.spaces.Tuple((d2, gym.spaces.Tuple((inf, box)))))
    with pytest.raises(SpaceError, match="use Discrete"):
        empty = gym.spaces.Box(0.0, 1.0, (0,))
        action_spec(gym.spaces.Tuple((d2, gym.spaces.Tuple((empty, empty)))))


def test_owner_matrix() -> None:
    owner = owner_matrix(SEGMENTS)
    expected = torch.zeros(4, 6, dtype=torch.bool)
    expected[0, 0:2] = expected[2, 2] = expected[3, 3:6] = True
    assert torch.equal(owner, expected)


def _dists(cont_kind: str, batch: tuple[int, ...]) -> tuple[Any, list[Tensor]]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn((*batch, 4), generator=g).requires_grad_()
    a = torch.randn((*batch, 6), generator=g).requires_grad_()
    b = (0.5 * torch.randn((*batch, 6), generator=g)).requires_grad_()
    low = torch.as_tensor(np.concatenate(LOWS), dtype=torch.float32)
    high = torch.as_tensor(np.concatenate(HIGHS), dtype=torch.float32)
    cls = SquashedGaussianDistribution if cont_kind == "squashed_gaussian" else BetaDistribution
    cont = cls(a, b, low, high)
    dist = HybridParameterizedDistribution(
        CategoricalDistribution(logits), cont, owner_matrix(SEGMENTS)
    )
    return dist, [logits, a, b]


def _slice_dist(cont: BoundedContinuousDistribution, k: int, row: int) -> Any:
    """The slow reference: a fresh distribution over action ``k``'s own dimensions only."""
    start = sum(SEGMENTS[:k])
    sl = slice(start, start + SEGMENTS[k])
    low, high = cont.low[sl], cont.high[sl]
    if isinstance(cont, SquashedGaussianDistribution):
        return SquashedGaussianDistribution(cont.mean[row, sl], cont.log_std[row, sl], low, high)
    assert isinstance(cont, BetaDistribution)
    return BetaDistribution(cont.raw_alpha[row, sl], cont.raw_beta[row, sl], low, high)


@pytest.mark.parametrize("cont_kind", ["squashed_gaussian", "beta"])
def test_gated_parameterized_matches_per_action_reference(cont_kind: str) -> None:
    n = 12
    with torch.no_grad():
        dist, _ = _dists(cont_kind, (n,))
        action = dist.sample(torch.Generator().manual_seed(1))
        action = HybridAction(torch.arange(n) % 4, action.continuous)  # every k, incl. D_k = 0
        _check_against_reference(dist, action)


def _check_against_reference(dist: HybridParameterizedDistribution, action: HybridAction) -> None:
    n = action.discrete.shape[0]
    lp, ent = dist.log_prob_parts(action), dist.entropy_parts()
    probs = dist.discrete.probs
    for i in range(n):
        k = int(action.discrete[i])
        start = sum(SEGMENTS[:k])
        x_k = action.continuous[i, start : start + SEGMENTS[k]]
        ref_lp = (
            0.0 if SEGMENTS[k] == 0 else float(_slice_dist(dist.continuous, k, i).log_prob(x_k))
        )
        assert float(lp[i, 0]) == pytest.approx(float(torch.log(probs[i, k])), abs=1e-5)
        assert float(lp[i, 1]) == pytest.approx(ref_lp, abs=1e-4)
        ref_h = sum(
            float(probs[i, j]) * float(_slice_dist(dist.continuous, j, i).entropy())
            for j in range(4)
            if SEGMENTS[j] > 0
        )
        assert float(ent[i, 1]) == pytest.approx(ref_h, abs=1e-4)
        assert float(ent[i, 0]) == pytest.approx(float(dist.discrete.entropy()[i]), abs=1e-6)


@pytest.mark.parametrize("cont_kind", ["squashed_gaussian", "beta"])
def test_gated_parameterized_ignores_parameters_of_other_actions(cont_kind: str) -> None:
    """The V-trace ratios come from ``log_prob_parts``: neither another action's stored
    parameters nor the policy's parameters for another action may change them."""
    dist, (_, a, b) = _dists(cont_kind, (8,))
    action = dist.sample(torch.Generator().manual_seed(2))
    action = HybridAction(torch.full((8,), 2), action.continuous)  # action 2 owns dim 2 only
    lp = dist.log_prob_parts(action)
    other = action.continuous.clone()
    other[:, [0, 1, 3, 4, 5]] += 0.3
    assert torch.equal(dist.log_prob_parts(HybridAction(action.discrete, other)), lp)
    lp[:, 1].sum().backward()
    for p in (a, b):
        assert p.grad is not None
        assert torch.all(p.grad[:, [0, 1, 3, 4, 5]] == 0) and torch.any(p.grad[:, 2] != 0)
    # an action without parameters has continuous log-prob 0: a ratio of exactly 1
    none = dist.log_prob_parts(HybridAction(torch.ones(8, dtype=torch.long), other))
    assert torch.equal(none[:, 1], torch.zeros(8))


def test_factorized_counts_every_dimension() -> None:
    """The factorised head on a parameterised space: one joint distribution over all D."""
    spec = action_spec(param_space(), hybrid_mode="factorized")
    model = ActorCritic(3, spec, ModelConfig(hidden=(8,)))
    out = model(torch.randn(1, 5, 3), torch.zeros(1, 5))
    dist = model.distribution({k: v[0] for k, v in out.params.items()})
    assert type(dist) is HybridFactorizedDistribution
    action = dist.sample()
    lp = dist.log_prob_parts(action)
    torch.testing.assert_close(lp[:, 1], dist.continuous.log_prob(action.continuous))
    assert dist.continuous.action_dim == 6


def test_per_dimension_methods_sum_to_joint() -> None:
    for kind in ("squashed_gaussian", "beta"):
        dist, _ = _dists(kind, (3, 5))
        x = dist.continuous.sample(torch.Generator().manual_seed(3))
        torch.testing.assert_close(
            dist.continuous.log_prob_dims(x).sum(-1), dist.continuous.log_prob(x)
        )
        torch.testing.assert_close(
            dist.continuous.entropy_dims().sum(-1), dist.continuous.entropy()
        )


def test_actor_critic_on_parameterized_space() -> None:
    spec = action_spec(param_space("dict"), hybrid_mode="gated")
    model = ActorCritic(3, spec, ModelConfig(hidden=(8,)))
    assert model.shapes == {"logits": (4,), "mean": (6,), "log_std": (6,)}
    out = model(torch.randn(2, 5, 3), torch.zeros(2, 5))
    dist = model.distribution(out.params)
    assert isinstance(dist, HybridParameterizedDistribution)
    assert dist.log_prob_parts(dist.sample()).shape == (2, 5, 2)
