"""A separate value trunk (``ModelConfig.value_trunk = 'separate'``): the values read their own
features, actors skip them, the critic warm-up trains them, and the learner still learns."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest
import torch

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.evaluation.policy import evaluate_returns
from impala_hybrid.experiments.spec import TrainConfig, param_choice
from impala_hybrid.models.actor_critic import ActorCritic, ModelConfig
from impala_hybrid.models.spaces import action_spec
from impala_hybrid.runtime.serial import build, train_serial
from impala_hybrid.validation import ConfigError

SPACE = gym.spaces.Dict({"k": gym.spaces.Discrete(3), "x": gym.spaces.Box(-1.0, 1.0, (2,))})


def _model(value_trunk: str = "separate") -> ActorCritic:
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=(16, 8), value_trunk=value_trunk)
    return ActorCritic(5, action_spec(SPACE, "squashed_gaussian", "factorized"), cfg)


def _obs(t: int = 3, b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(t, b, 5, generator=g), torch.zeros(t, b, dtype=torch.bool)


def test_values_read_only_their_own_trunk() -> None:
    model = _model()
    assert model.value_trunk is not None and model.value.in_features == 8
    obs, first = _obs()
    out = model(obs, first)
    assert out.values.shape == (3, 4, 1)
    with torch.no_grad():  # the policy's trunk moves: values unchanged, the policy not
        for p in model.trunk.parameters():
            p.add_(0.5)
    moved = model(obs, first)
    torch.testing.assert_close(moved.values, out.values)
    assert not torch.allclose(moved.params["mean"], out.params["mean"])
    with torch.no_grad():  # the value trunk moves: the policy unchanged, the values not
        for p in model.value_trunk.parameters():
            p.add_(0.5)
    again = model(obs, first)
    torch.testing.assert_close(again.params["mean"], moved.params["mean"])
    assert not torch.allclose(again.values, moved.values)
    # the bootstrap values of truncated episodes come from the same trunk
    torch.testing.assert_close(model.values_after(obs[0], ()), again.values[0])


def test_the_shared_network_is_the_default_and_unchanged() -> None:
    shared = _model("shared")
    assert ModelConfig().value_trunk == "shared" and shared.value_trunk is None
    assert not any(k.startswith("value_trunk.") for k in shared.state_dict())
    obs, first = _obs()
    out = shared(obs, first)
    torch.testing.assert_close(out.values, shared.value(shared.trunk(obs)))


def test_actors_skip_the_value_trunk() -> None:
    model = _model()
    assert model.value_trunk is not None
    calls: list[int] = []
    model.value_trunk.register_forward_hook(lambda *_: calls.append(1))
    obs, first = _obs(1, 6)
    out = model(obs, first, with_values=False)
    assert not calls and out.values.shape == (1, 6, 1) and not out.values.any()
    full = model(obs, first)
    assert calls == [1]
    torch.testing.assert_close(out.params, full.params)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [({"lstm_size": 8}, "lstm_size > 0"), ({"structure": "zones"}, "structure = 'zones'")],
)
def test_unsupported_combinations_name_the_fields(overrides: dict, named: str) -> None:
    with pytest.raises(ConfigError, match="value_trunk = 'separate'") as err:
        ModelConfig(value_trunk="separate", **overrides)
    assert named in str(err.value)
    with pytest.raises(ConfigError, match="value_trunk"):
        ModelConfig(value_trunk="own")


def test_critic_warmup_trains_the_value_trunk_and_not_the_policy() -> None:
    cfg = TrainConfig(
        num_envs=8, total_steps=4096, model=ModelConfig(hidden=(16, 16), value_trunk="separate"),
        algo=IMPALAConfig(unroll_length=8, batch_size=8, critic_warmup_steps=128),
    )  # fmt: skip
    _, learner, actor = build(cfg)
    before = {k: v.detach().clone() for k, v in learner.model.state_dict().items()}
    learner.step(actor.unroll(learner.version))  # warming up
    after = learner.model.state_dict()
    for k in before:
        moved = not torch.equal(before[k], after[k])
        assert moved == k.startswith(("value.", "value_trunk.")), k


def test_learns_param_choice_with_its_own_value_trunk() -> None:
    """The preset of the gated-head learning test (100k steps, seed 0), values on their own
    trunk: the same threshold."""
    base = param_choice()
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, value_trunk="separate"))
    result = train_serial(cfg)
    returns = evaluate_returns(result.model, cfg.env, 256, seed=1000)
    assert returns.mean() >= 0.9, returns.mean()
