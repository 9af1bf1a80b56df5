"""Warm start from a classical policy (``TrainConfig.warm_start``) and the critic warm-up
(``IMPALAConfig.critic_warmup_steps``), issue 8's documented, switchable option."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.algos.impala.warm_start import (
    _continuous_mode,
    behaviour_clone,
    collect_demonstrations,
)
from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.envs.heuristics import make_heuristic
from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.runtime.serial import build, build_model
from impala_hybrid.validation import ConfigError

UAV = "impala_hybrid/UAVNet-v0"


def test_demonstrations_are_the_policy_acting_in_the_env() -> None:
    obs, transfer, intensity = collect_demonstrations("threshold", {}, 1000, num_envs=16)
    assert obs.shape == (1008, 29) and transfer.shape == (1008,) and intensity.shape == (1008, 6)
    again = make_heuristic("threshold", UAVNetConfig())(obs)
    np.testing.assert_array_equal(again["transfer"], transfer)
    np.testing.assert_allclose(again["intensity"], intensity)
    assert len(np.unique(transfer)) > 1  # transfers happen (incidents in 63 steps of 16 envs)


def _clone(kind: str, mae: float) -> tuple[Any, torch.Tensor]:
    """A (64, 64) model with ``kind`` intensities cloned from threshold (400 updates); checks
    the fit (transfer agreement > 0.95, intensity MAE < ``mae``) and that the mode it fits is
    the one evaluation acts with. Returns the model and its policy bias before the fit."""
    env = make_vector_env(UAV, 1, {})
    torch.manual_seed(0)
    cfg = TrainConfig(model=ModelConfig(hidden=(64, 64), continuous_kind=kind))
    model = build_model(cfg, env, 1)
    demos = collect_demonstrations("threshold", {}, 20_000, seed=3)
    bias_before = model.policy.bias.detach().clone()
    m = behaviour_clone(model, *demos, updates=400)
    assert m["bc_transfer_agreement"] > 0.95, m
    assert m["bc_intensity_mae"] < mae, m
    x = torch.as_tensor(demos[0][:5])[None]
    out = model(x, torch.zeros(1, 5, dtype=torch.bool))
    dist = model.distribution(out.params)
    torch.testing.assert_close(
        _continuous_mode(dist),
        dist.to_env(dist.mode()).continuous,  # type: ignore[arg-type]
    )
    return model, bias_before


def test_behaviour_cloning_reproduces_the_classical_actions() -> None:
    model, log_std_before = _clone("squashed_gaussian", 0.05)
    # the log-std outputs keep their initial bias: exploration is not cloned away
    sizes = model._sizes
    start = sizes["logits"] + sizes["mean"]
    torch.testing.assert_close(
        model.policy.bias.detach()[start:], log_std_before[start:], rtol=0.0, atol=0.05
    )


def test_behaviour_cloning_fits_a_beta_head_by_its_mode() -> None:
    """The UAV preset's Beta intensities: the fit moves the concentrations so that the Beta's
    mode matches threshold's intensities (0.5 and full speed; the mode reaches 1 only in the
    limit, so the bound is looser than the Gaussian's; 0.033 when written)."""
    _clone("beta", 0.06)


def test_behaviour_cloning_with_obs_norm_sets_the_statistics_first() -> None:
    """With ``model.obs_norm`` the clone is fitted on the demonstrations' own normalised inputs:
    the statistics are theirs before the first update, so IMPALA's first merge (of data from
    the same policy) barely moves them and the cloned actions survive it."""
    env = make_vector_env(UAV, 1, {})
    torch.manual_seed(0)
    cfg = TrainConfig(model=ModelConfig(hidden=(64, 64), obs_norm=True))
    model = build_model(cfg, env, 1)
    assert model.obs_norm is not None
    demos = collect_demonstrations("threshold", {}, 20_000, seed=3)
    m = behaviour_clone(model, *demos, updates=400)
    norm = model.obs_norm
    x = torch.as_tensor(demos[0])
    torch.testing.assert_close(norm.mean, x.mean(0))
    torch.testing.assert_close(norm.var, x.var(0, unbiased=False))
    assert int(norm.count) == len(x)
    assert m["bc_transfer_agreement"] > 0.95, m
    assert m["bc_intensity_mae"] < 0.05, m


def test_warm_start_errors() -> None:
    with pytest.raises(ConfigError, match=r"warm_start = 'threshold' is invalid for env"):
        TrainConfig(env="CartPole-v1", warm_start="threshold")
    with pytest.raises(ConfigError, match=r"warm_start = 'oracle' is invalid: must be null or"):
        TrainConfig(warm_start="oracle")
    with pytest.raises(ConfigError, match="warm_start_steps"):
        TrainConfig(warm_start="threshold", warm_start_steps=0)


def test_a_warm_started_run_starts_from_the_classical_policy() -> None:
    cfg = TrainConfig(
        num_envs=8, total_steps=1024, model=ModelConfig(hidden=(32, 32)),
        algo=IMPALAConfig(unroll_length=8, batch_size=8),
        warm_start="maxweight", warm_start_steps=4096, warm_start_updates=300,
    )  # fmt: skip
    _, learner, _ = build(cfg)
    obs, transfer, _ = collect_demonstrations("maxweight", {}, 2048, seed=11)
    with torch.no_grad():
        out = learner.model(torch.as_tensor(obs)[None], torch.zeros(1, len(obs), dtype=torch.bool))
    agree = (out.params["logits"][0].argmax(-1).numpy() == transfer).mean()
    assert agree > 0.9, agree
    _, scratch, _ = build(dataclasses.replace(cfg, warm_start=None))
    with torch.no_grad():
        out = scratch.model(torch.as_tensor(obs)[None], torch.zeros(1, len(obs), dtype=torch.bool))
    assert (out.params["logits"][0].argmax(-1).numpy() == transfer).mean() < agree


def test_critic_warmup_trains_only_the_value_head() -> None:
    cfg = TrainConfig(
        num_envs=8, total_steps=4096, model=ModelConfig(hidden=(16, 16)),
        algo=IMPALAConfig(unroll_length=8, batch_size=8, critic_warmup_steps=128),
    )  # fmt: skip
    _, learner, actor = build(cfg)

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in learner.model.state_dict().items()}

    before = snapshot()
    learner.step(actor.unroll(learner.version))  # samples 0 -> 64: warming up
    after = snapshot()
    for k in before:
        moved = not torch.equal(before[k], after[k])
        assert moved == k.startswith("value."), k
    learner.step(actor.unroll(learner.version))  # 64 -> 128
    assert not learner.warming_up
    mid = snapshot()
    learner.step(actor.unroll(learner.version))  # the policy trains again
    assert not torch.equal(mid["policy.weight"], learner.model.state_dict()["policy.weight"])
