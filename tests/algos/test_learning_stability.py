"""What keeps learning from collapsing (issue 8): the learner's targets and ratio metrics,
PopArt, the bounded log-std and desynchronised episodes. Each test fails on the code before
its fix (noted per test)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from impala_hybrid.algos.impala.actor import Actor
from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.models.actor_critic import ActorCritic, ModelConfig
from impala_hybrid.models.distributions import LOG_STD_MIN, HybridAction
from impala_hybrid.runtime.serial import build
from impala_hybrid.types import Batch
from impala_hybrid.validation import ConfigError

UAV = "impala_hybrid/UAVNet-v0"


def _setup(critic: str = "scalar", **algo: object) -> tuple[Learner, Batch]:
    cfg = TrainConfig(
        env=UAV,
        num_envs=8,
        total_steps=1024,
        model=ModelConfig(hidden=(32, 32)),
        algo=IMPALAConfig(unroll_length=8, batch_size=8, **algo),  # type: ignore[arg-type]
        critic=critic,
    )
    _, learner, actor = build(cfg)
    return learner, actor.unroll(learner.version)


def _with_behaviour(batch: Batch, shift: torch.Tensor) -> Batch:
    """The batch as if the behaviour policy's per-component log-probs were ``target - shift``
    (so ``log rho = shift`` per component)."""
    return dataclasses.replace(batch, behaviour_logp=batch.behaviour_logp - shift)


def _targets(learner: Learner, batch: Batch):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        fwd = learner.forward(batch)
    on_policy = dataclasses.replace(batch, behaviour_logp=fwd.target_logp.detach().clone())
    return fwd, on_policy


def test_pg_clip_follows_rho_bar_by_default() -> None:
    # Before: IMPALAConfig.pg_rho_bar defaulted to 1.0, so rho_bar = 2 kept the pg clip at 1.
    learner, batch = _setup(rho_bar=2.0)
    fwd, on = _targets(learner, batch)
    off = _with_behaviour(on, torch.tensor([math.log(1.5), 0.0]))  # joint ratio 1.5
    tg = learner.targets(off, fwd)
    assert torch.allclose(tg.vtrace.pg_rhos, torch.full_like(tg.vtrace.pg_rhos, 1.5))
    explicit, _ = _setup(rho_bar=2.0, pg_rho_bar=1.0)
    assert explicit.targets(off, fwd).vtrace.pg_rhos.max().item() == pytest.approx(1.0)


def test_standardisation_precedes_the_ratio_weighting() -> None:
    # Before: advantages were standardised after the rho weighting, so samples whose ratio
    # is ~0 (actions the policy no longer takes) got a push from the mean shift, and a batch
    # of down-weighted samples was scaled back up to unit size.
    learner, batch = _setup(normalize_advantages=True)
    fwd, on = _targets(learner, batch)
    shift = torch.zeros(8, 8, 2)
    shift[:, :4, 1] = -60.0  # columns 0-3: continuous log-ratio -60, rho ~ 1e-26
    tg = learner.targets(_with_behaviour(on, shift), fwd)
    assert tg.advantages[:, :4].abs().max().item() < 1e-12
    fresh = learner.targets(on, fwd).advantages  # all on-policy: plain standardised A_s
    assert fresh.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert fresh.std().item() == pytest.approx(1.0, rel=1e-4)
    # Half the batch carries (almost) no weight, and the batch is not rescaled to unit size.
    assert 0.3 < tg.advantages.std().item() < 0.9


def test_ratio_metrics_per_component() -> None:
    # Before: only rho_clip_frac, which reads ~0.5 at rho_bar = 1 after any policy change.
    learner, batch = _setup()
    _, on = _targets(learner, batch)
    m = learner.step(_with_behaviour(on, torch.tensor([math.log(3.0), -0.25])))
    assert m["log_rho_abs_discrete"] == pytest.approx(math.log(3.0), rel=1e-4)
    assert m["log_rho_abs_continuous"] == pytest.approx(0.25, rel=1e-3)
    assert m["log_rho_abs"] == pytest.approx(math.log(3.0) - 0.25, rel=1e-3)
    assert m["ratio_outside_frac"] == 1.0  # joint ratio 3 e^-0.25 = 2.34 > 2 everywhere
    small = learner.step(_with_behaviour(on, torch.tensor([0.1, 0.1])))
    assert small["ratio_outside_frac"] == 0.0


def _zero_values(learner: Learner) -> None:
    with torch.no_grad():
        learner.model.value.weight.zero_()
        learner.model.value.bias.zero_()


@pytest.mark.parametrize("critic", ["scalar", "vector"])
def test_popart_first_update_is_invariant_to_the_reward_scale(critic: str) -> None:
    # With zero initial values the V-trace targets are linear in the rewards, and PopArt's
    # normalised losses and advantages make the whole update independent of their scale;
    # without PopArt the value loss grows with the square of the scale (the vector critic's
    # 7 raw components gave ~14x the scalar critic's value loss). (A constant component, like
    # the hinge component with hinges off, has its variance floored, the same at any scale.)
    grads, losses = [], []
    for scale in (100.0, 10000.0):  # large enough that no objective's variance is floored
        torch.manual_seed(0)
        learner, batch = _setup(popart=True, reward_scale=scale, critic=critic)
        _zero_values(learner)
        fwd = learner.forward(batch)
        tg = learner.targets(batch, fwd)
        ls = learner.losses(fwd, tg, 0.0)
        learner.optimizer.step = lambda *a, **k: None  # type: ignore[method-assign]
        learner.apply(ls.loss, tg)  # the gradient PopArt steps with (rescaled layer)
        grads.append([p.grad.clone() for p in learner.model.parameters()])  # type: ignore[union-attr]
        losses.append(ls.baseline.item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    for a, b in zip(*grads, strict=True):
        if critic == "vector" and a.shape[0] == 7:  # value layer: without the hinge row, whose
            a, b = a[:6], b[:6]  # targets are float32 rounding noise (r - w.vec) at the floor
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


def test_popart_preserves_the_unnormalised_values() -> None:
    learner, batch = _setup(popart=True, reward_scale=50.0)
    learner.step(batch)
    assert learner.popart_updates == 1 and learner.popart_sigma.item() > 1.0  # batch's scale
    with torch.no_grad():
        before = learner.forward(batch).values
        learner._commit_popart(learner.popart_mu * 2 + 1, learner.popart_nu * 5 + 3)
        after = learner.forward(batch).values
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    resumed = Learner(ActorCritic(29, learner.model.action, learner.model.config), learner.config)
    resumed.load_state_dict(learner.state_dict())
    torch.testing.assert_close(resumed.popart_sigma, learner.popart_sigma)
    assert resumed.popart_updates == 2


def _raw_log_std_grad(bound: str, raw: float) -> float:
    from impala_hybrid.models.spaces import action_spec

    env = make_vector_env(UAV, 2)
    model = ActorCritic(29, action_spec(env.single_action_space), ModelConfig(
        hidden=(16,), log_std_bound=bound))  # fmt: skip
    names = list(model._sizes)
    lo = sum(model._sizes[n] for n in names[: names.index("log_std")])
    hi = lo + model._sizes["log_std"]
    with torch.no_grad():
        model.policy.weight.zero_()
        model.policy.bias.zero_()
        model.policy.bias[lo:hi] = raw
    out = model(torch.rand(1, 4, 29), torch.zeros(1, 4, dtype=torch.bool))
    model.distribution(out.params).entropy().sum().backward()
    grad = model.policy.bias.grad
    assert grad is not None
    return float(grad[lo:hi].abs().max())


def test_entropy_can_raise_a_log_std_below_the_floor() -> None:
    # Before: the log-std was hard-clamped at -5; below it the entropy bonus had no gradient
    # and the collapsed width could never recover.
    assert _raw_log_std_grad("clamp", -8.0) == 0.0
    assert _raw_log_std_grad("tanh", -3.0) > 1e-3
    env = make_vector_env(UAV, 2)
    from impala_hybrid.models.spaces import action_spec

    model = ActorCritic(29, action_spec(env.single_action_space), ModelConfig(
        hidden=(16,), init_log_std=-0.5))  # fmt: skip
    with torch.no_grad():
        model.policy.weight.zero_()
    out = model(torch.rand(1, 3, 29), torch.zeros(1, 3, dtype=torch.bool))
    torch.testing.assert_close(out.params["log_std"], torch.full_like(out.params["log_std"], -0.5))
    assert out.params["log_std"].min() > LOG_STD_MIN


def test_desynchronised_first_episodes() -> None:
    env = make_vector_env(UAV, 16, {"episode_steps": 40})
    model = ActorCritic(29, _spec(env), ModelConfig(hidden=(16,)))
    actor = Actor(env, model, 10, seed=3, desync_steps=40)
    cuts = actor._cut.copy()
    assert cuts.min() >= 1 and cuts.max() <= 40 and len(set(cuts.tolist())) > 4
    batches = [actor.unroll() for _ in range(8)]  # 80 steps: first episodes, then full ones
    trunc = torch.cat([b.truncated for b in batches]).numpy()  # [80, 16]
    for i in range(16):
        ends = np.flatnonzero(trunc[:, i]) + 1  # episode lengths so far, cumulative
        assert ends[0] == cuts[i]  # the first episode is cut where drawn
        if cuts[i] < 40:  # later episodes run their full 40 steps
            np.testing.assert_array_equal(np.diff(ends), 40)
    # Each cut is a truncation the learner bootstraps from: final_obs is the env's next
    # observation and the next row starts a fresh episode (first flag, time feature 0).
    b0 = batches[0]
    t, i = map(int, np.argwhere(b0.truncated.numpy())[0])
    assert b0.first[t + 1, i] and b0.obs[t + 1, i, 28] == 0.0
    assert b0.final_obs[t, i, 28] == pytest.approx(cuts[i] / 40)
    assert not actor._cut.any()
    lengths = actor.drain_episodes()[1]
    assert sorted(lengths)[:4] == sorted(cuts.tolist())[:4]


def _spec(env):  # type: ignore[no-untyped-def]
    from impala_hybrid.models.spaces import action_spec

    return action_spec(env.single_action_space)


def test_desync_resumes_exactly() -> None:
    def make() -> Actor:
        env = make_vector_env(UAV, 4, {"episode_steps": 30})
        torch.manual_seed(0)
        model = ActorCritic(29, _spec(env), ModelConfig(hidden=(16,)))
        return Actor(env, model, 5, seed=1, desync_steps=30)

    a = make()
    a.unroll()
    state = a.state_dict()
    rest = [a.unroll() for _ in range(6)]
    b = make()
    b.load_state_dict(state)
    for x, y in zip(rest, [b.unroll() for _ in range(6)], strict=True):
        assert torch.equal(x.truncated, y.truncated) and torch.equal(x.obs, y.obs)
    assert isinstance(rest[0].actions, HybridAction)


def test_per_component_entropy_coefficients() -> None:
    """The discrete and continuous entropies of a hybrid policy get their own weights."""

    def entropy_grads(**algo: object) -> tuple[float, float]:
        torch.manual_seed(0)
        learner, batch = _setup(**algo)
        fwd = learner.forward(batch)
        tg = learner.targets(batch, fwd)
        tg = tg._replace(advantages=torch.zeros_like(tg.advantages))  # entropy term only
        learner.losses(fwd, tg, learner.config.entropy_coef).loss.backward()
        sizes = learner.model._sizes
        g = learner.model.policy.bias.grad
        assert g is not None
        return float(g[: sizes["logits"]].abs().sum()), float(g[sizes["logits"] :].abs().sum())

    base = entropy_grads(entropy_coef=0.01, baseline_coef=0.0)
    only_c = entropy_grads(entropy_coef=0.01, entropy_coef_discrete=0.0, baseline_coef=0.0)
    double_d = entropy_grads(entropy_coef=0.01, entropy_coef_discrete=0.02, baseline_coef=0.0)
    assert base[0] > 0 and only_c[0] == 0.0 and only_c[1] == pytest.approx(base[1])
    assert double_d[0] == pytest.approx(2 * base[0], rel=1e-5)
    assert double_d[1] == pytest.approx(base[1])


def test_clipped_surrogate_in_the_learner() -> None:
    """With algo.pg_clip_eps the advantages are not rho-weighted (the ratio is in the loss),
    and samples whose ratio left the clip range in their advantage's favour stop pushing."""
    learner, batch = _setup(pg_clip_eps=0.2)
    fwd, on = _targets(learner, batch)
    far = _with_behaviour(on, torch.tensor([math.log(3.0), 0.0]))  # every joint ratio is 3
    tg = learner.targets(far, fwd)
    plain = learner.targets(on, fwd)
    torch.testing.assert_close(tg.advantages, plain.advantages)  # not weighted by the ratio

    def pg_grad(targets) -> float:  # type: ignore[no-untyped-def]
        learner.model.zero_grad()
        f = learner.forward(far if targets is tg else on)
        t = targets._replace(advantages=torch.ones_like(targets.advantages))
        learner.losses(f, t, 0.0).pg.backward()
        return float(
            sum(p.grad.abs().sum() for p in learner.model.parameters() if p.grad is not None)
        )

    assert pg_grad(tg) == 0.0 and pg_grad(plain) > 0.0


@pytest.mark.parametrize("field", ["entropy_coef_discrete", "target_entropy_discrete"])
def test_per_component_entropy_needs_hybrid_actions(field: str) -> None:
    from impala_hybrid.validation import ConfigError

    cfg = TrainConfig(
        env="CartPole-v1", num_envs=4, total_steps=64, model=ModelConfig(hidden=(8,)),
        algo=IMPALAConfig(unroll_length=8, batch_size=4, **{field: 0.5}),  # type: ignore[arg-type]
    )  # fmt: skip
    with pytest.raises(ConfigError, match=rf"{field}.*'categorical'"):
        build(cfg)


def test_target_entropy_adapts_each_weight_toward_its_target() -> None:
    """SAC's temperature rule per component: ``log alpha_c += lr (target_c - H_c)``, where
    ``H_c`` is the batch's mean entropy of component ``c``; a component without a target keeps
    its fixed (scheduled) weight (issue 13)."""
    learner, batch = _setup(
        entropy_coef=0.01, entropy_coef_discrete=0.03, target_entropy_continuous=5.0,
        target_entropy_lr=0.1,
    )  # fmt: skip
    start = learner.entropy_log_coefs.clone()
    assert torch.allclose(start.exp(), torch.tensor([0.03, 0.01]))
    with torch.no_grad():
        h = learner.forward(batch).dist.entropy_parts().mean(dim=(0, 1))
    m = learner.step(batch)
    assert m["entropy_continuous"] == pytest.approx(float(h[1]), rel=1e-5)
    expected = start[1] + 0.1 * (5.0 - h[1])  # below its target: the weight grows
    assert float(learner.entropy_log_coefs[1]) == pytest.approx(float(expected), rel=1e-5)
    assert float(learner.entropy_log_coefs[1]) > float(start[1])
    assert m["entropy_coef_continuous"] == pytest.approx(float(expected.exp()), rel=1e-5)
    assert m["entropy_coef_discrete"] == pytest.approx(0.03)  # fixed, no target

    low, batch = _setup(entropy_coef=0.01, target_entropy_discrete=0.1, target_entropy_lr=0.1)
    before = low.entropy_log_coefs.clone()
    low.step(batch)  # a near-uniform choice over 6 transfers is above 0.1 nats: it shrinks
    assert float(low.entropy_log_coefs[0]) < float(before[0])
    assert float(low.entropy_log_coefs[1]) == float(before[1])


def test_adapted_entropy_weight_is_the_one_in_the_loss_and_is_checkpointed() -> None:
    def discrete_entropy_grad(learner: Learner, batch: Batch) -> float:
        learner.model.zero_grad()
        fwd = learner.forward(batch)
        tg = learner.targets(batch, fwd)
        tg = tg._replace(advantages=torch.zeros_like(tg.advantages))
        learner.losses(fwd, tg, learner.config.entropy_coef).loss.backward()
        g = learner.model.policy.bias.grad
        assert g is not None
        return float(g[: learner.model._sizes["logits"]].abs().sum())

    torch.manual_seed(0)
    learner, batch = _setup(entropy_coef=0.01, target_entropy_discrete=1.0, baseline_coef=0.0)
    base = discrete_entropy_grad(learner, batch)
    learner.entropy_log_coefs[0] += math.log(2.0)
    assert discrete_entropy_grad(learner, batch) == pytest.approx(2 * base, rel=1e-5)

    learner.step(batch)
    state = learner.state_dict()
    fresh, _ = _setup(entropy_coef=0.01, target_entropy_discrete=1.0, baseline_coef=0.0)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.entropy_log_coefs, learner.entropy_log_coefs)


def test_target_entropy_errors_name_the_field_and_range() -> None:
    from impala_hybrid.validation import ConfigError

    with pytest.raises(ConfigError, match=r"target_entropy_discrete = 2\.0.*\(-inf, 1\.79"):
        _setup(target_entropy_discrete=2.0)  # log 6 = 1.79 nats at most
    with pytest.raises(ConfigError, match=r"target_entropy_continuous.*must be > 0"):
        _setup(entropy_coef=0.0, target_entropy_continuous=-1.0)
    with pytest.raises(ConfigError, match="target_entropy_lr"):
        IMPALAConfig(target_entropy_lr=0.0)


def test_fixed_component_weights_follow_the_run_time_entropy_scale() -> None:
    """A PBT-style ``entropy_scale`` reaches the per-component weights, also when the base
    ``entropy_coef`` is 0 (then only the per-component coefficients are non-zero)."""
    learner, _ = _setup(entropy_coef=0.0, entropy_coef_discrete=0.03)
    assert learner.entropy_coefs(0.0).tolist() == pytest.approx([0.03, 0.0])
    learner.entropy_scale = 2.0
    assert learner.entropy_coefs(0.0).tolist() == pytest.approx([0.06, 0.0])
    scaled, _ = _setup(entropy_coef=0.01, entropy_coef_discrete=0.03)
    scaled.entropy_scale = 2.0  # step() passes the scaled schedule: 2 x 0.01
    assert scaled.entropy_coefs(0.02).tolist() == pytest.approx([0.06, 0.02])


def test_log_barrier_pushes_back_a_dropped_choice_where_the_entropy_bonus_does_not() -> None:
    # One choice's probability ~0 in a softmax policy: it is never taken, so its logit gets no
    # policy gradient, and the entropy bonus's gradient vanishes with the probability. The log
    # barrier (ops.losses.log_barrier_loss) still pushes it back up.
    def rise(coef: float) -> float:
        torch.manual_seed(0)
        cfg = TrainConfig(
            env=UAV, num_envs=8, total_steps=1024, model=ModelConfig(hidden=(32, 32)),
            algo=IMPALAConfig(
                unroll_length=8, batch_size=8, lr=1e-3, entropy_coef=0.05,
                log_barrier_coef=coef,
            ),
        )  # fmt: skip
        _, learner, actor = build(cfg)  # serial: the actor acts with the learner's model
        assert next(iter(learner.model._sizes)) == "logits"  # the head's first outputs
        with torch.no_grad():
            learner.model.policy.bias[2] -= 25.0  # transfer 2 dropped: pi ~ 1e-11
        fwd, on = _targets(learner, actor.unroll(learner.version))
        assert isinstance(on.actions, HybridAction) and not bool((on.actions.discrete == 2).any())
        before = learner._choice(fwd.dist).logits[..., 2].mean().item()
        for _ in range(30):
            m = learner.step(on)
        assert ("loss_log_barrier" in m) == (coef > 0)
        assert m["log_prob_min_discrete"] < -15.0  # the metric sees the dropped choice
        fwd, _ = _targets(learner, on)
        return learner._choice(fwd.dist).logits[..., 2].mean().item() - before

    plain, barrier = rise(0.0), rise(0.05)
    assert abs(plain) < 0.1  # left dropped: no gradient reaches it
    assert barrier > 0.3  # about lr * sum_j |h_j| per step, through the head's weights


def test_log_barrier_term_and_config_errors() -> None:
    learner, batch = _setup(log_barrier_coef=0.1)
    fwd, on = _targets(learner, batch)
    tg = learner.targets(on, fwd)
    with_barrier = learner.losses(fwd, tg, 0.01)
    expected = -learner._choice(fwd.dist).logits.mean()
    torch.testing.assert_close(with_barrier.log_barrier, expected)
    plain, _ = _setup()
    plain.model.load_state_dict(learner.model.state_dict())
    without = plain.losses(fwd, tg, 0.01)
    torch.testing.assert_close(with_barrier.loss - without.loss, 0.1 * expected)
    with pytest.raises(ValueError, match="log_barrier_coef"):
        IMPALAConfig(log_barrier_coef=-0.1)
    cfg = TrainConfig(
        env="Pendulum-v1", num_envs=2, model=ModelConfig(hidden=(8,)),
        algo=IMPALAConfig(log_barrier_coef=0.01),
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"log_barrier_coef = 0.01 .*'squashed_gaussian'"):
        build(cfg)
