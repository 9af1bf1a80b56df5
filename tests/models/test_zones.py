"""Zone-tied networks (``model.structure = "zones"``): equivariance across zones, the dense
copy computes the same function (so every export format deploys it), the actors' weight cache
never goes stale, and misuse gets a clear error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from impala_hybrid.deploy import FORMATS, export_model, load_exported
from impala_hybrid.deploy.inference import NumpyPolicy
from impala_hybrid.envs.config import ZONE_STRUCTURE
from impala_hybrid.experiments.spec import TrainConfig, uav_hybrid
from impala_hybrid.models.actor_critic import ActorCritic, ModelConfig
from impala_hybrid.models.spaces import action_spec
from impala_hybrid.models.zones import TiedLinear, ZoneStructure, dense_copy
from impala_hybrid.validation import ConfigError
from tests.deploy import assert_actions_match, reference_actions, run_policy

UAV_ACTION = gym.spaces.Dict(
    {"transfer": gym.spaces.Discrete(6), "intensity": gym.spaces.Box(0.0, 1.0, (6,))}
)
ZONES = ZoneStructure(**ZONE_STRUCTURE)


def zone_model(seed: int = 0, **overrides: object) -> ActorCritic:
    cfg = ModelConfig(
        **{"hidden": (40, 40), "structure": "zones", "zone_width": 6, "policy_init_scale": 1.0}
        | overrides  # type: ignore[arg-type]
    )
    torch.manual_seed(seed)
    model = ActorCritic(29, action_spec(UAV_ACTION), cfg, zones=ZONES)
    with torch.no_grad():  # every tied parameter non-zero, so each block is exercised
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def swap_zones(obs: torch.Tensor, i: int, j: int) -> torch.Tensor:
    perm = list(range(29))
    for a, b in zip(ZONES.obs_zone[i], ZONES.obs_zone[j], strict=True):
        perm[a], perm[b] = b, a
    return obs[..., perm]


def test_swapping_two_zones_swaps_their_outputs_and_nothing_else() -> None:
    model = zone_model()
    for layer in model.trunk:  # equivariance holds exactly without the per-zone biases
        if isinstance(layer, TiedLinear) and layer.zone_delta is not None:
            torch.nn.init.zeros_(layer.zone_delta)
    obs = torch.rand(2, 5, 29)
    first = torch.zeros(2, 5)
    out = model(obs, first)
    swapped = model(swap_zones(obs, 0, 2), first)
    logits, slogits = out.params["logits"], swapped.params["logits"]
    # transfer 1 beams zone 0, transfer 3 beams zone 2; 0, 2, 4 and 5 stay
    torch.testing.assert_close(slogits[..., [3, 2, 1, 4, 5, 0]], logits[..., [1, 2, 3, 4, 5, 0]])
    for name in ("mean", "log_std"):  # intensity 0 is zone 0's, 2 is zone 2's
        a, b = out.params[name], swapped.params[name]
        torch.testing.assert_close(b[..., [2, 1, 0, 3, 4, 5]], a)
    torch.testing.assert_close(swapped.values, out.values)
    assert not torch.allclose(logits[..., 1], logits[..., 3])  # the test can see a swap


def test_per_zone_bias_breaks_the_symmetry_once_learned() -> None:
    model = zone_model()  # zone_delta perturbed: zones may now differ
    obs = torch.rand(1, 4, 29)
    out = model(obs, torch.zeros(1, 4)).params["logits"]
    swapped = model(swap_zones(obs, 0, 2), torch.zeros(1, 4)).params["logits"]
    assert not torch.allclose(swapped[..., [3, 2, 1]], out[..., [1, 2, 3]])


def test_dense_copy_computes_the_same_function_with_stock_layers() -> None:
    model = zone_model()
    dense = dense_copy(model)
    assert dense.config.structure == "mlp"
    assert {type(m) for m in dense.trunk} == {torch.nn.Linear, torch.nn.LayerNorm, torch.nn.ReLU}
    obs, first = torch.rand(3, 4, 29), torch.zeros(3, 4)
    a, b = model(obs, first), dense(obs, first)
    for k in a.params:
        torch.testing.assert_close(b.params[k], a.params[k])
    torch.testing.assert_close(b.values, a.values)
    assert dense_copy(dense) is dense  # a dense model is returned as it is


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_export_format_deploys_a_zone_model(tmp_path: Path, fmt: str) -> None:
    model = zone_model(seed=1)
    path = export_model(model, tmp_path / f"policy.{fmt}", fmt)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    obs = [rng.random((5, 29), dtype=np.float32) for _ in range(3)]
    want = reference_actions(model, obs)
    for policy in (load_exported(path), NumpyPolicy.from_model(model)):
        for g, w in zip(run_policy(policy, obs), want, strict=True):
            assert_actions_match(g, w)


def test_no_grad_forward_sees_every_weight_update() -> None:
    """The assembled weights are cached for gradient-free calls (actors); an optimiser step
    and a load_state_dict must both invalidate the cache."""
    model = zone_model()
    obs, first = torch.rand(1, 3, 29), torch.zeros(1, 3)
    with torch.no_grad():
        before = model(obs, first).params["logits"].clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(obs, first).params["logits"].square().sum()
    loss.backward()
    opt.step()
    with torch.no_grad():
        after = model(obs, first).params["logits"]
    with torch.enable_grad():
        fresh = model(obs, first).params["logits"].detach()
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, fresh)
    other = zone_model(seed=5)
    model.load_state_dict(other.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(
            model(obs, first).params["logits"], other(obs, first).params["logits"]
        )


def test_every_tied_parameter_gets_a_gradient() -> None:
    model = zone_model()
    out = model(torch.rand(2, 3, 29), torch.zeros(2, 3))
    (sum(v.square().sum() for v in out.params.values()) + out.values.sum()).backward()
    params = [(n, p) for n, p in model.named_parameters() if p.numel() > 0]
    missing = [n for n, p in params if p.grad is None or not p.grad.any()]
    assert missing == []


def test_misuse_is_refused_with_the_field_named() -> None:
    spec = action_spec(UAV_ACTION)
    with pytest.raises(ConfigError, match="zone_structure"):
        ActorCritic(29, spec, ModelConfig(structure="zones"))
    with pytest.raises(ConfigError, match=r"hidden\[0\] = 20"):
        ActorCritic(29, spec, ModelConfig(hidden=(20,), structure="zones"), zones=ZONES)
    with pytest.raises(ConfigError, match="lstm_size"):
        ModelConfig(structure="zones", lstm_size=8)
    gated = action_spec(UAV_ACTION, hybrid_mode="gated")
    with pytest.raises(ConfigError, match="hybrid_mode"):
        ActorCritic(29, gated, ModelConfig(structure="zones"), zones=ZONES)
    with pytest.raises(ConfigError, match="same number"):
        ZoneStructure(obs_zone=((0, 1), (2,)), obs_shared=(3,))
    with pytest.raises(ConfigError, match="exactly once"):
        ZoneStructure(obs_zone=((0,), (0,)), obs_shared=(1,))


def test_training_config_builds_the_zone_model_for_the_uav_env() -> None:
    from impala_hybrid.envs.factory import make_vector_env
    from impala_hybrid.runtime.serial import build_model

    base = uav_hybrid()
    cfg: TrainConfig = dataclasses.replace(
        base, model=dataclasses.replace(base.model, structure="zones")
    )
    env = make_vector_env(cfg.env, 2, cfg.env_kwargs)
    try:
        model = build_model(cfg, env, 1)
    finally:
        env.close()
    assert isinstance(model.trunk[0], TiedLinear)
    assert isinstance(model.policy, TiedLinear)
