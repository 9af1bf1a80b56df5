"""The IMPALA learner, actor, model and serial runtime on small problems (no learning asserted:
see tests/learning for thresholds)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from impala_hybrid.algos.impala.actor import Actor
from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.algos.impala.learner import Learner, make_optimizer
from impala_hybrid.envs.config import ZONE_STRUCTURE
from impala_hybrid.envs.factory import EnvSpecError, make_vector_env
from impala_hybrid.experiments.spec import TrainConfig, cartpole
from impala_hybrid.models.actor_critic import ActorCritic, ModelConfig
from impala_hybrid.models.distributions import HybridAction
from impala_hybrid.models.spaces import SpaceError, action_spec
from impala_hybrid.models.zones import ZoneStructure
from impala_hybrid.runtime.serial import build, train_serial
from impala_hybrid.types import Batch
from impala_hybrid.validation import ConfigError

SMALL = ModelConfig(hidden=(32, 32))


def tiny(env: str, **kw: object) -> TrainConfig:
    model = kw.pop("model", SMALL)
    algo = kw.pop("algo", IMPALAConfig(unroll_length=8, batch_size=4))
    return TrainConfig(env=env, num_envs=4, total_steps=256, model=model, algo=algo, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ("CartPole-v1", "categorical"),
        ("Pendulum-v1", "squashed_gaussian"),
        ("impala_hybrid/UAVNet-v0", "hybrid_factorized"),
        ("impala_hybrid/ParamChoice-v0", "hybrid_factorized"),
        ("impala_hybrid.envs.toys:TargetEnv", "squashed_gaussian"),
    ],
)
def test_any_gymnasium_env_trains_without_code_changes(env: str, kind: str) -> None:
    cfg = tiny(env)
    result = train_serial(cfg)
    assert result.learner.model.action.kind == kind
    assert result.learner.samples >= cfg.total_steps
    # every one of the 8 updates applied (a non-finite loss or gradient would be skipped)
    assert result.learner.version == 8 and result.history[-1]["skipped_total"] == 0


@pytest.mark.parametrize(
    "model",
    [
        ModelConfig(hidden=(32,), hybrid_mode="gated"),
        ModelConfig(hidden=(32,), continuous_kind="beta"),
        ModelConfig(hidden=(32,), lstm_size=16),
    ],
)
def test_model_variants_on_uav(model: ModelConfig) -> None:
    result = train_serial(tiny("impala_hybrid/UAVNet-v0", model=model))
    m = result.model  # the variant is the one trained, and all 8 updates applied
    assert m.action.kind == f"hybrid_{model.hybrid_mode}"
    assert m.action.continuous_kind == model.continuous_kind
    assert (m.lstm is not None) == (model.lstm_size > 0)
    assert result.learner.version == 8 and result.history[-1]["skipped_total"] == 0


def test_per_component_ratio_mode_and_vector_critic() -> None:
    algo = IMPALAConfig(unroll_length=8, batch_size=4, ratio_mode="per_component")
    result = train_serial(tiny("impala_hybrid/UAVNet-v0", algo=algo, critic="vector"))
    assert result.learner.model.num_values == 7  # six objectives + the constraint hinges
    assert result.learner.version == 8 and result.history[-1]["skipped_total"] == 0


def test_vector_reward_components_sum_to_scalar_reward() -> None:
    cfg = tiny("impala_hybrid/UAVNet-v0", critic="vector")
    _, learner, actor = build(cfg)
    batch = actor.unroll()
    weighted = batch.rewards @ learner.reward_weights  # [T, B]
    env = make_vector_env("impala_hybrid/UAVNet-v0", 4)
    env.reset(seed=cfg.seed)
    # Replay the same actions on a fresh env seeded alike: the scalar reward must match.
    model = learner.model
    spec = model.action
    for t in range(batch.unroll_length):
        a = HybridAction(batch.actions.discrete[t], batch.actions.continuous[t])  # type: ignore[union-attr]
        dist = model.distribution(
            {k: v[0] for k, v in model(batch.obs[t][None], batch.first[t][None]).params.items()}
        )
        _, reward, *_ = env.step(spec.to_env(dist.to_env(a)))
        np.testing.assert_allclose(weighted[t].numpy(), reward, rtol=1e-4, atol=1e-4)


def test_serial_runs_are_reproducible() -> None:
    cfg = dataclasses.replace(cartpole(), total_steps=4096, log_interval=2)
    a = train_serial(cfg).history
    b = train_serial(cfg).history
    assert len(a) == len(b) > 1
    for ra, rb in zip(a, b, strict=True):
        assert ra == rb or all((np.isnan(ra[k]) and np.isnan(rb[k])) or ra[k] == rb[k] for k in ra)
    c = train_serial(dataclasses.replace(cfg, seed=1)).history
    assert c[-1]["loss"] != a[-1]["loss"]


def _batch(cfg: TrainConfig) -> tuple[Learner, Batch]:
    _, learner, actor = build(cfg)
    return learner, actor.unroll(learner.version)


def test_learner_metrics_and_version() -> None:
    learner, batch = _batch(tiny("CartPole-v1"))
    before = [p.detach().clone() for p in learner.model.parameters()]
    m = learner.step(batch)
    keys = ("loss", "loss_pg", "loss_baseline", "loss_entropy", "entropy", "rho_mean",
            "rho_max", "log_rho_abs", "ratio_outside_frac", "grad_norm",
            "policy_lag_mean")  # fmt: skip
    for key in keys:
        assert key in m and np.isfinite(m[key]), key
    assert m["rho_mean"] == pytest.approx(1.0)  # on-policy: the actor used these weights
    assert learner.version == 1 and m["skipped"] == 0.0
    assert any(
        not torch.equal(p, q) for p, q in zip(before, learner.model.parameters(), strict=True)
    )
    m2 = learner.step(batch)  # the same data again is now one version old
    assert m2["policy_lag_mean"] == 1.0
    assert m2["rho_mean"] != pytest.approx(1.0, abs=1e-7)


def test_non_finite_update_is_skipped_and_reported() -> None:
    learner, batch = _batch(tiny("CartPole-v1"))
    batch.rewards[3, 1] = float("nan")
    before = [p.detach().clone() for p in learner.model.parameters()]
    m = learner.step(batch)
    assert m["skipped"] == 1.0 and learner.skipped == 1 and learner.version == 0
    for p, q in zip(before, learner.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_learning_rate_and_entropy_schedules() -> None:
    algo = IMPALAConfig(unroll_length=8, batch_size=4, lr=1e-3, lr_final=0.0,
                        entropy_coef=0.1, entropy_coef_final=0.0)  # fmt: skip
    cfg = dataclasses.replace(tiny("CartPole-v1", algo=algo), total_steps=64)
    learner, batch = _batch(cfg)
    m0 = learner.step(batch)  # progress 0
    m1 = learner.step(batch)  # progress 0.5
    assert m0["lr"] == pytest.approx(1e-3) and m1["lr"] == pytest.approx(5e-4)
    assert m1["entropy_coef"] == pytest.approx(0.05)


def test_schedule_multipliers_take_effect_and_travel_in_state_dict() -> None:
    """A learning rate or entropy coefficient changed while training (a PBT perturbation)
    scales the schedule instead of being overwritten by it at the next step."""
    algo = IMPALAConfig(unroll_length=8, batch_size=4, lr=1e-3, lr_final=0.0,
                        entropy_coef=0.1, entropy_coef_final=0.0)  # fmt: skip
    cfg = dataclasses.replace(tiny("CartPole-v1", algo=algo), total_steps=64)
    learner, batch = _batch(cfg)
    learner.lr_scale, learner.entropy_scale = 0.5, 2.0
    m = learner.step(batch)  # progress 0: the schedules give 1e-3 and 0.1
    assert m["lr"] == pytest.approx(5e-4) == learner.optimizer.param_groups[0]["lr"]
    assert m["entropy_coef"] == pytest.approx(0.2)
    want = m["loss_pg"] + algo.baseline_coef * m["loss_baseline"] + 0.2 * m["loss_entropy"]
    assert m["loss"] == pytest.approx(want, rel=1e-5)
    state = copy.deepcopy(learner.state_dict())
    restored, _ = _batch(cfg)
    restored.load_state_dict(state)
    assert (restored.lr_scale, restored.entropy_scale) == (0.5, 2.0)
    restored.lr_scale = 0.0  # the schedule says 5e-4 at progress 0.5: no step is taken
    before = [p.detach().clone() for p in restored.model.parameters()]
    m = restored.step(batch)
    assert m["lr"] == 0.0 and m["skipped"] == 0.0 and restored.version == 2
    for p, q in zip(before, restored.model.parameters(), strict=True):
        assert torch.equal(p, q)
    del state["scales"]  # a checkpoint from before the multipliers
    restored.load_state_dict(state)
    assert (restored.lr_scale, restored.entropy_scale) == (1.0, 1.0)


def test_truncation_bootstraps_from_final_observation() -> None:
    """Only the final observation of a truncated step feeds its bootstrap value."""
    learner, batch = _batch(tiny("CartPole-v1"))
    batch.truncated[2, 0] = True
    batch.final_obs[2, 0] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    state = copy.deepcopy(learner.state_dict())  # state_dict() holds live references
    m_a = learner.step(batch)
    learner.load_state_dict(state)
    batch.final_obs[2, 0] = torch.tensor([2.0, -3.0, 0.5, 1.0])
    m_b = learner.step(batch)
    assert m_a["loss_baseline"] != m_b["loss_baseline"]
    learner.load_state_dict(state)
    batch.final_obs[2, 1] = 5.0  # not truncated: ignored
    m_c = learner.step(batch)
    assert m_c["loss_baseline"] == m_b["loss_baseline"]


@pytest.mark.parametrize(("activation", "layer_norm"), [("relu", True), ("elu", False)])
def test_in_place_activations_give_the_same_gradients(activation: str, layer_norm: bool) -> None:
    """The trunk's in-place ReLU/ELU (a speed choice) change neither outputs nor gradients."""
    spec = action_spec(make_vector_env("impala_hybrid/UAVNet-v0", 1).single_action_space)
    cfg = ModelConfig(hidden=(16, 16), activation=activation, layer_norm=layer_norm)
    model = ActorCritic(29, spec, cfg)
    plain = copy.deepcopy(model)
    acts = [m for m in plain.trunk if hasattr(m, "inplace")]
    assert len(acts) == 2 and all(m.inplace for m in acts)
    for m in acts:
        m.inplace = False
    obs, first = torch.randn(5, 3, 29), torch.zeros(5, 3, dtype=torch.bool)
    grads = []
    for net in (model, plain):
        out = net(obs, first)
        loss = out.values.square().sum() + sum(p.sin().sum() for p in out.params.values())
        grads.append(torch.autograd.grad(loss, list(net.parameters())))
    for a, b in zip(*grads, strict=True):
        if activation == "relu":
            assert torch.equal(a, b)
        else:  # ELU's in-place backward works from its output: float rounding differs
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("structure", ["mlp", "zones"])
def test_bfloat16_trunk_is_close_to_float32_and_shape_independent(structure: str) -> None:
    """``trunk_dtype = "bfloat16"``: float32 outputs and gradients close to the float32
    network's, and an action's log-prob the same whether computed one step at a time (an
    actor) or on the whole unroll at once (the learner), so bf16 adds no actor-learner
    log-ratio; a float32 network against the bf16 one differs by far more."""
    torch.manual_seed(0)
    spec = action_spec(make_vector_env("impala_hybrid/UAVNet-v0", 1).single_action_space)
    cfg = ModelConfig(hidden=(96, 96), structure=structure, zone_width=16, policy_init_scale=1.0)
    zones = ZoneStructure(**ZONE_STRUCTURE) if structure == "zones" else None
    f32 = ActorCritic(29, spec, cfg, zones=zones)
    b16 = ActorCritic(29, spec, dataclasses.replace(cfg, trunk_dtype="bfloat16"), zones=zones)
    b16.load_state_dict(f32.state_dict())
    gen = torch.Generator().manual_seed(0)
    obs, first = torch.randn(8, 16, 29, generator=gen), torch.zeros(8, 16, dtype=torch.bool)
    with torch.no_grad():
        actions = f32.distribution(f32(obs, first).params).sample()

    def logp(net: ActorCritic, t: slice = slice(None)) -> torch.Tensor:
        out = net(obs[t], first[t])
        return net.distribution(out.params).log_prob_parts(HybridAction(*(a[t] for a in actions)))

    with torch.no_grad():
        whole, full = logp(b16), logp(f32)
        steps = torch.cat([logp(b16, slice(t, t + 1)) for t in range(8)])
    assert whole.dtype == torch.float32
    assert (whole - steps).abs().max() < 1e-4
    assert (whole - full).abs().mean() > 1e-3  # the precision is really lower
    torch.testing.assert_close(whole, full, atol=0.25, rtol=0.05)
    grads = []
    for net in (f32, b16):
        loss = net(obs, first).values.square().mean() - logp(net).mean()
        grads.append(torch.autograd.grad(loss, list(net.parameters())))
    for a, b in zip(*grads, strict=True):
        assert b.dtype == torch.float32
        if a.numel() == 0:  # the zone net's empty global blocks
            continue
        # 0.995 at this seed; 0.971 the least over 15 seeds (a small zone-net block)
        assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.98


def test_trunk_dtype_rejects_other_dtypes() -> None:
    with pytest.raises(ConfigError, match="trunk_dtype"):
        ModelConfig(trunk_dtype="float16")


@pytest.mark.parametrize(("bf16", "amx", "expected"), [
    (True, False, "bfloat16"), (False, True, "bfloat16"), (False, False, "float32"),
])  # fmt: skip
def test_auto_trunk_dtype_follows_the_cpu(
    monkeypatch: pytest.MonkeyPatch, bf16: bool, amx: bool, expected: str
) -> None:
    """``auto`` is bfloat16 only where the CPU has native bf16 (emulated, it is slower than
    float32), and the choice travels with copies of the model (actors get deep copies)."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    spec = action_spec(make_vector_env("impala_hybrid/UAVNet-v0", 1).single_action_space)
    model = ActorCritic(29, spec, ModelConfig(hidden=(8,), trunk_dtype="auto"))
    assert model.trunk_dtype == expected
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: not bf16)
    assert copy.deepcopy(model).trunk_dtype == expected
    for fixed in ("float32", "bfloat16"):
        net = ActorCritic(29, spec, ModelConfig(hidden=(8,), trunk_dtype=fixed))
        assert net.trunk_dtype == fixed


def test_lstm_resets_at_episode_starts() -> None:
    """Outputs after a ``first`` flag do not depend on anything before it."""
    spec = action_spec(make_vector_env("CartPole-v1", 1).single_action_space)
    model = ActorCritic(4, spec, ModelConfig(hidden=(16,), lstm_size=8))
    obs = torch.randn(6, 2, 4)
    first = torch.zeros(6, 2, dtype=torch.bool)
    first[3] = True
    out = model(obs, first)
    obs2 = obs.clone()
    obs2[:3] = torch.randn(3, 2, 4)  # change the previous episode only
    state = (torch.randn(2, 8), torch.randn(2, 8))
    out2 = model(obs2, first, state)
    torch.testing.assert_close(out.values[3:], out2.values[3:])
    assert not torch.allclose(out.values[:3], out2.values[:3])
    # Time-major unroll equals stepping one step at a time.
    h = model.initial_state(2)
    vals = []
    for t in range(6):
        o = model(obs[t : t + 1], first[t : t + 1], h)
        h = o.core_state
        vals.append(o.values[0])
    torch.testing.assert_close(torch.stack(vals), out.values)


def test_actor_writes_time_major_unrolls_with_bootstrap_overlap() -> None:
    cfg = tiny("impala_hybrid/UAVNet-v0", env_kwargs={"episode_steps": 5})
    _, learner, actor = build(cfg)
    b1 = actor.unroll()
    b2 = actor.unroll()
    assert b1.obs.shape == (9, 4, 29) and b1.behaviour_logp.shape == (8, 4, 2)
    assert isinstance(b1.actions, HybridAction)
    torch.testing.assert_close(b1.obs[-1], b2.obs[0])  # overlap by one observation
    assert b1.truncated[4].all() and not b1.terminated.any()
    assert b1.first[5].all() and b1.first[0].all()
    assert (b1.final_obs[4, :, 28] == 1.0).all()  # t / T = 1 at the end of an episode
    assert (b1.obs[5, :, 28] == 0.0).all()  # next episode's first observation
    # Both unrolls (across the episode boundary at t = 5) came from these weights: the
    # learner's recomputed log-probs equal the actor's, so every ratio is one.
    m = learner.step(Batch.concat([b1, b2]))
    assert m["skipped"] == 0.0 and m["rho_mean"] == pytest.approx(1.0, abs=1e-5)
    assert m["rho_max"] == pytest.approx(1.0, abs=1e-4)


def test_actor_rejects_next_step_autoreset() -> None:
    import gymnasium as gym

    env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    spec = action_spec(env.single_action_space)
    with pytest.raises(ValueError, match="SAME_STEP"):
        Actor(env, ActorCritic(4, spec, SMALL), 4, seed=0)


def test_clear_errors_for_bad_setups() -> None:
    import gymnasium as gym

    with pytest.raises(SpaceError, match="finite"):
        action_spec(gym.spaces.Box(-np.inf, np.inf, (2,)))
    with pytest.raises(SpaceError, match="low < high"):
        action_spec(gym.spaces.Box(np.array([0.0, 1.0]), np.array([1.0, 1.0])))
    with pytest.raises(SpaceError, match="exactly one Discrete and one Box"):
        action_spec(gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))))
    with pytest.raises(SpaceError, match="unsupported action space"):
        action_spec(gym.spaces.MultiBinary(3))
    with pytest.raises(EnvSpecError, match="not a registered"):
        make_vector_env("NoSuchEnv-v9", 2)
    with pytest.raises(EnvSpecError, match="cannot import"):
        make_vector_env("no_such_module:make", 2)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(num_envs=3, algo=IMPALAConfig(batch_size=32))
    with pytest.raises(ConfigError, match="rho_bar >= c_bar"):
        IMPALAConfig(rho_bar=1.0, c_bar=2.0)
    with pytest.raises(ConfigError, match="critic"):
        build(tiny("CartPole-v1", critic="vector"))


def test_fused_adam_takes_the_steps_of_plain_adam() -> None:
    """``make_optimizer``'s Adam is torch's fused kernel (docs/benchmarks.md: a quarter of the
    optimizer step's time); it must move the parameters as the plain implementation does."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    twin = copy.deepcopy(net)
    algo = IMPALAConfig(lr=1e-2)
    fused = make_optimizer(net.parameters(), algo)
    plain = torch.optim.Adam(twin.parameters(), lr=algo.lr, eps=algo.adam_eps, foreach=False)
    assert fused.defaults["fused"] is True
    x = torch.randn(64, 5)
    start = net[0].weight.detach().clone()

    def steps(opt_a: torch.optim.Optimizer, opt_b: torch.optim.Optimizer, n: int) -> None:
        for _ in range(n):
            for model, opt in ((net, opt_a), (twin, opt_b)):
                opt.zero_grad()
                model(x).pow(2).mean().backward()
                opt.step()
        for a, b in zip(net.parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    steps(fused, plain, 20)
    assert (net[0].weight - start).abs().max() > 0.05  # the steps moved the parameters
    # a checkpoint written with the plain implementation resumes into the fused one
    resumed = make_optimizer(twin.parameters(), algo)
    resumed.load_state_dict(plain.state_dict())
    steps(fused, resumed, 1)
