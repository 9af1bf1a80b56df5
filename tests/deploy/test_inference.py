"""The NumPy inference path reproduces the torch model's deterministic action."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from impala_hybrid.deploy.inference import (
    ArtifactError,
    NumpyPolicy,
    PolicySpec,
    UnsupportedModelError,
)
from impala_hybrid.envs.vector import make_spaces
from impala_hybrid.models.actor_critic import ActorCritic, ModelConfig
from impala_hybrid.models.spaces import action_spec
from tests.deploy import (
    KINDS,
    OBS_DIM,
    OBS_NORM,
    PARAMETERIZED,
    RECURRENT,
    assert_actions_match,
    make_model,
    observations,
    reference_actions,
    run_policy,
)


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("case", KINDS + RECURRENT + PARAMETERIZED + OBS_NORM)
def test_matches_torch_mode(case: str, batch: int) -> None:
    model = make_model(case)
    obs = observations(batch, 5, seed=batch)
    want = reference_actions(model, obs)
    got = run_policy(NumpyPolicy.from_model(model), obs)
    for g, w in zip(got, want, strict=True):
        assert_actions_match(g, w)


@pytest.mark.parametrize("gamma", ["positive", "mixed"])
def test_layer_norm_scale_fold_and_fallback(gamma: str) -> None:
    """ReLU + LayerNorm folds positive scales into the next layer; negative ones must not."""
    model = make_model("hybrid_factorized", seed=3, gamma=gamma)
    policy = NumpyPolicy.from_model(model)
    folded = [layer.gamma is None for layer in policy._layers]
    assert all(folded) if gamma == "positive" else not any(folded)
    obs = observations(7, 3, seed=4)
    for g, w in zip(run_policy(policy, obs), reference_actions(model, obs), strict=True):
        assert_actions_match(g, w)


@pytest.mark.parametrize("case", ["squashed_gaussian", "beta"])
def test_saturated_actions_stay_in_bounds(case: str) -> None:
    """Huge inputs (no LayerNorm to tame them) saturate the squash: the action is exactly a
    bound, as in torch; the NumPy path skips the clamp only where it provably cannot bind."""
    model = make_model(case)
    obs = observations(7, 1, scale=1e4)
    want = reference_actions(model, obs)[0]
    got = NumpyPolicy.from_model(model)(obs[0])
    assert_actions_match(got, want)
    low, high = model.action.low, model.action.high
    assert low is not None and high is not None
    if case == "squashed_gaussian":
        assert np.isin(got, [*low, *high]).mean() > 0.5
    assert np.all(got >= low.astype(np.float32)) and np.all(got <= high.astype(np.float32))


def test_uav_default_model() -> None:
    """The deployment target: 29-256-256, LayerNorm, hybrid factorized head, batch 1."""
    _, act, _ = make_spaces()
    torch.manual_seed(0)
    model = ActorCritic(29, action_spec(act), ModelConfig(policy_init_scale=1.0))
    rng = np.random.default_rng(0)
    obs = [rng.random((1, 29), dtype=np.float32) for _ in range(20)]
    got = run_policy(NumpyPolicy.from_model(model), obs)
    for g, w in zip(got, reference_actions(model, obs), strict=True):
        assert set(g) == {"transfer", "intensity"}
        assert_actions_match(g, w)


def test_returns_fresh_arrays_and_handles_batch_changes() -> None:
    model = make_model("hybrid_factorized")
    policy = NumpyPolicy.from_model(model)
    a, b = observations(1, 2, seed=5)
    first = policy(a)
    kept = {k: v.copy() for k, v in first.items()}
    policy(b)
    policy(observations(3, 1)[0])  # another batch size, then back
    for k in kept:
        np.testing.assert_array_equal(first[k], kept[k])
    assert_actions_match(policy(a.astype(np.float64)), reference_actions(model, [a])[0])
    assert_actions_match(policy(a.reshape(1, 1, OBS_DIM)), reference_actions(model, [a])[0])


def test_recurrent_state_reset() -> None:
    model = make_model("hybrid_factorized_lstm")
    policy = NumpyPolicy.from_model(model)
    obs = observations(4, 2)
    policy(obs[0])
    h, c = policy.state
    assert h.shape == c.shape == (4, 16) and np.abs(h).sum() > 0
    policy.observe_done(np.array([True, False, False, True]))
    h, c = policy.state
    assert not h[[0, 3]].any() and not c[[0, 3]].any() and h[1].any()
    with pytest.raises(ValueError, match="done must have shape"):
        policy.observe_done(np.zeros(3, bool))
    policy.reset(4)
    assert not any(s.any() for s in policy.state)
    assert NumpyPolicy.from_model(make_model("hybrid_factorized")).state == ()


def test_from_state_with_json_spec() -> None:
    """What an npz artifact does: state_dict arrays + the JSON spec, no model object."""
    model = make_model("hybrid_gated")
    spec = json.loads(json.dumps(PolicySpec.from_model(model).to_json()))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    obs = observations(7, 2)
    got = run_policy(NumpyPolicy.from_state(state, spec), obs)
    for g, w in zip(got, reference_actions(model, obs), strict=True):
        assert_actions_match(g, w)


def test_bad_observations_are_refused() -> None:
    policy = NumpyPolicy.from_model(make_model("categorical"))
    with pytest.raises(ValueError, match="expects 11"):
        policy(np.zeros((2, OBS_DIM + 1), np.float32))
    with pytest.raises(ValueError, match=r"scalar; pass one observation as \[11\]"):
        policy(np.float32(1.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"one observation has 12 features, .* expects 11"):
        policy(np.zeros(OBS_DIM + 1, np.float32))


def test_unsupported_models_are_refused() -> None:
    model = make_model("hybrid_factorized")
    with pytest.raises(UnsupportedModelError, match="float32"):
        NumpyPolicy.from_model(make_model("categorical").double())
    model.trunk[2] = torch.nn.Sigmoid()
    with pytest.raises(UnsupportedModelError, match="trunk layers"):
        NumpyPolicy.from_model(model)
    odd = make_model("hybrid_factorized")
    odd.action = dataclasses.replace(odd.action, keys=(1.5, "x"))
    with pytest.raises(UnsupportedModelError, match="keys"):
        PolicySpec.from_model(odd)


def test_bad_state_or_spec_is_an_artifact_error() -> None:
    model = make_model("beta")
    spec = PolicySpec.from_model(model)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    with pytest.raises(ArtifactError, match=r"lack 'policy\.bias'"):
        NumpyPolicy.from_state({k: v for k, v in state.items() if k != "policy.bias"}, spec)
    with pytest.raises(ArtifactError, match="shape"):
        NumpyPolicy.from_state({**state, "trunk.0.weight": np.zeros((3, 3))}, spec)
    bad = {**spec.to_json(), "kind": "gaussian_mixture"}
    with pytest.raises(ArtifactError, match="kind"):
        PolicySpec.from_json(bad)
    with pytest.raises(ArtifactError, match="lacks field"):
        PolicySpec.from_json({"kind": "beta"})
    with pytest.raises(ArtifactError, match="low < high"):
        PolicySpec.from_json({**spec.to_json(), "low": [5.0, 5.0, 50.0]})
    with pytest.raises(ArtifactError, match="integer"):
        PolicySpec.from_json({**spec.to_json(), "obs_dim": "11"})


def test_spec_round_trips_through_json() -> None:
    for case in ("hybrid_gated", "hybrid_factorized_lstm", "categorical"):
        spec = PolicySpec.from_model(make_model(case))
        again = PolicySpec.from_json(json.loads(json.dumps(spec.to_json())))
        assert again == spec
    tup = PolicySpec.from_model(make_model("hybrid_gated"))
    assert tup.container == "tuple" and tup.keys == (1, 0)


def test_parameterized_spec_round_trips_and_old_sidecars_still_load() -> None:
    spec = PolicySpec.from_model(make_model("beta_parameterized_dict_lstm"))
    assert spec.segments == (1, 2) and spec.param_keys == ("a", "b")
    assert PolicySpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    one = NumpyPolicy.from_model(make_model("beta_parameterized_dict_lstm"))(
        observations(1, 1)[0][0]
    )
    assert set(one) == {"id", "params"} and one["params"]["b"].shape == (2,)
    plain = PolicySpec.from_model(make_model("hybrid_gated")).to_json()
    assert "segments" not in plain  # other policies' sidecars are unchanged
    bad = {**spec.to_json(), "segments": [1, 1]}
    with pytest.raises(ArtifactError, match="sum to action_dim"):
        PolicySpec.from_json(bad)
