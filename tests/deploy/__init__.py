"""Shared fixtures for the deployment tests: one small model per action kind, and an action
comparison that is exact for discrete parts and within 1e-5 for continuous ones.

The models are small (fast) but cover every branch of the NumPy forward: all four
activations, with and without LayerNorm, LayerNorm scales of both signs (the ReLU scale fold
applies only to positive ones), Dict and Tuple containers with either key order, and an LSTM.
The policy layer is initialised with gain 1 (not the training default 0.01) so logits are
well separated and the continuous heads reach the saturated ends of the squash.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from impala_hybrid.evaluation.policy import TorchPolicy
from impala_hybrid.models.actor_critic import ActorCritic, ModelConfig
from impala_hybrid.models.spaces import action_spec

OBS_DIM = 11
LOW, HIGH = [-2.0, 0.0, 10.0], [3.0, 1.0, 10.5]

# name -> (action space, model config overrides)
CASES: dict[str, tuple[gym.Space[Any], dict[str, Any]]] = {
    "categorical": (gym.spaces.Discrete(5), {"hidden": (32, 24), "activation": "tanh"}),
    "squashed_gaussian": (
        gym.spaces.Box(np.array(LOW, np.float32), np.array(HIGH, np.float32)),
        {"hidden": (32,), "activation": "silu", "layer_norm": False},
    ),
    "beta": (
        gym.spaces.Box(np.array(LOW, np.float32), np.array(HIGH, np.float32)),
        {"hidden": (32, 32), "activation": "elu", "continuous_kind": "beta"},
    ),
    "hybrid_factorized": (
        gym.spaces.Dict(
            {"transfer": gym.spaces.Discrete(4), "intensity": gym.spaces.Box(0.0, 1.0, (3,))}
        ),
        {"hidden": (32, 32)},
    ),
    "hybrid_gated": (
        gym.spaces.Tuple((gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Discrete(4))),
        {"hidden": (32, 16), "hybrid_mode": "gated"},
    ),
    # recurrent cores on top of two kinds
    "hybrid_factorized_lstm": (
        gym.spaces.Dict(
            {"transfer": gym.spaces.Discrete(4), "intensity": gym.spaces.Box(0.0, 1.0, (3,))}
        ),
        {"hidden": (32,), "lstm_size": 16},
    ),
    "beta_gated_lstm": (
        gym.spaces.Dict({"k": gym.spaces.Discrete(3), "x": gym.spaces.Box(-1.0, 2.0, (2,))}),
        {
            "hidden": (24,),
            "lstm_size": 8,
            "activation": "tanh",
            "continuous_kind": "beta",
            "hybrid_mode": "gated",
        },
    ),
    # parameterised spaces (issue 13): action k owns Box k, sizes 2, 0 and 1, own bounds
    "hybrid_parameterized": (
        gym.spaces.Tuple(
            (
                gym.spaces.Discrete(3),
                gym.spaces.Tuple(
                    (
                        gym.spaces.Box(-1.0, 1.0, (2,)),
                        gym.spaces.Box(0.0, 1.0, (0,)),
                        gym.spaces.Box(5.0, 6.0, (1,)),
                    )
                ),
            )
        ),
        {"hidden": (32, 16), "hybrid_mode": "gated"},
    ),
    "beta_parameterized_dict_lstm": (
        gym.spaces.Dict(
            {
                "id": gym.spaces.Discrete(2),
                "params": gym.spaces.Dict(
                    {"a": gym.spaces.Box(0.0, 2.0, (1,)), "b": gym.spaces.Box(-3.0, 0.0, (2,))}
                ),
            }
        ),
        {"hidden": (24,), "lstm_size": 8, "continuous_kind": "beta", "hybrid_mode": "gated"},
    ),
    "obs_norm_lstm": (
        gym.spaces.Box(np.array(LOW, np.float32), np.array(HIGH, np.float32)),
        {"hidden": (16,), "lstm_size": 8, "obs_norm": True, "obs_norm_clip": 2.0},
    ),
    # a learner-only action-value head (discrete_pg = expected): never part of the artifact
    "hybrid_action_values_lstm": (
        gym.spaces.Dict({"k": gym.spaces.Discrete(3), "x": gym.spaces.Box(-1.0, 1.0, (2,))}),
        {"hidden": (16,), "lstm_size": 8, "_action_values": True},
    ),
    # a learner-only action critic (continuous_pg = qprop / reparameterized): never exported
    "hybrid_action_critic_lstm": (
        gym.spaces.Dict({"k": gym.spaces.Discrete(3), "x": gym.spaces.Box(-1.0, 1.0, (2,))}),
        {"hidden": (16,), "lstm_size": 8, "_action_critic": True},
    ),
    # the values' own trunk (model.value_trunk = 'separate'): learner-only, never exported
    "hybrid_value_trunk": (
        gym.spaces.Dict({"k": gym.spaces.Discrete(3), "x": gym.spaces.Box(-1.0, 1.0, (2,))}),
        {"hidden": (16, 8), "value_trunk": "separate"},
    ),
    "parameterized_factorized": (
        gym.spaces.Tuple(
            (
                gym.spaces.Discrete(2),
                gym.spaces.Tuple((gym.spaces.Box(0.0, 1.0, (0,)), gym.spaces.Box(-2.0, 2.0, (3,)))),
            )
        ),
        {"hidden": (16,)},
    ),
}
KINDS = ("categorical", "squashed_gaussian", "beta", "hybrid_factorized", "hybrid_gated")
RECURRENT = ("hybrid_factorized_lstm", "beta_gated_lstm")
PARAMETERIZED = ("hybrid_parameterized", "beta_parameterized_dict_lstm", "parameterized_factorized")
OBS_NORM = ("obs_norm_lstm",)


def make_model(case: str, seed: int = 0, gamma: str = "positive") -> ActorCritic:
    """A small ``ActorCritic`` for ``case`` with randomised LayerNorm affine parameters
    (``gamma``: ``"positive"`` scales in [0.5, 1.5], ``"mixed"`` some negative)."""
    space, overrides = CASES[case]
    kwargs = {k: v for k, v in overrides.items() if not k.startswith("_")}
    cfg = ModelConfig(**{"policy_init_scale": 1.0, **kwargs})
    torch.manual_seed(seed)
    spec = action_spec(space, cfg.continuous_kind, cfg.hybrid_mode)  # type: ignore[arg-type]
    model = ActorCritic(
        OBS_DIM,
        spec,
        cfg,
        action_advantages=bool(overrides.get("_action_values")),
        action_critic=bool(overrides.get("_action_critic")),
    )
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.trunk:
            if isinstance(m, torch.nn.LayerNorm):
                scale = 0.5 + torch.rand(m.weight.shape, generator=g)
                if gamma == "mixed":
                    scale *= torch.where(torch.rand(scale.shape, generator=g) < 0.3, -1.0, 1.0)
                m.weight.copy_(scale)
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
        if model.lstm is not None:
            model.lstm.bias_hh.add_(0.2 * torch.randn(model.lstm.bias_hh.shape, generator=g))
        if model.obs_norm is not None:  # statistics as if observed (the clip must bind)
            model.obs_norm.update(3.0 * torch.randn(64, OBS_DIM, generator=g) + 1.0)
    return model.eval()


def observations(n: int, steps: int, seed: int = 0, scale: float = 2.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(scale * rng.standard_normal((n, OBS_DIM))).astype(np.float32) for _ in range(steps)]


def done_flags(n: int, step: int) -> np.ndarray:
    """Episode ends after some steps for some rows, so state resets are exercised."""
    return (np.arange(n) + step) % 3 == 0


def reference_actions(
    model: ActorCritic, obs: list[np.ndarray], discrete_choice: str = "mode", seed: int = 0
) -> list[Any]:
    """``TorchPolicy``'s deterministic actions over consecutive steps (with done resets);
    with ``discrete_choice = "sample"`` its choices drawn from a generator at ``seed``."""
    policy = TorchPolicy(model, discrete_choice=discrete_choice, seed=seed)
    out = []
    for t, o in enumerate(obs):
        out.append(policy(o))
        policy.observe_done(done_flags(len(o), t))
    return out


def run_policy(policy: Any, obs: list[np.ndarray]) -> list[Any]:
    out = []
    for t, o in enumerate(obs):
        out.append(policy(o))
        policy.observe_done(done_flags(len(o), t))
    return out


def assert_actions_match(got: Any, want: Any) -> None:
    """Same structure and keys; discrete parts equal (int64), continuous within 1e-5."""
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, dict):
        assert list(got) == list(want)
        for k in want:
            assert_actions_match(got[k], want[k])
    elif isinstance(want, tuple):
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert_actions_match(a, b)
    else:
        assert got.shape == want.shape and got.dtype == want.dtype, (got.dtype, want.dtype)
        if want.dtype.kind == "i":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
