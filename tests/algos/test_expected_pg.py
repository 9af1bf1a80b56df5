"""``IMPALAConfig.discrete_pg = "expected"`` (issue 8): an action-advantage head ``Q(x, k)`` over
the discrete choices, trained on V-trace's ``q_s``, and the expected policy gradient
``sum_k pi(k|x) (Q(x, k) - sum_j pi(j|x) Q(x, j))`` for the discrete part, the sampled
(clipped-surrogate) one for the continuous part."""

from __future__ import annotations

import math

import pytest
import torch

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.models.actor_critic import ActorCritic, ModelConfig
from impala_hybrid.models.distributions import HybridAction
from impala_hybrid.models.spaces import action_spec
from impala_hybrid.ops.losses import expected_policy_gradient_loss
from impala_hybrid.runtime.serial import build, build_model
from impala_hybrid.types import Batch
from impala_hybrid.validation import ConfigError
from tests.algos import fit_alone

UAV = "impala_hybrid/UAVNet-v0"


def _setup(env: str = UAV, **algo: object) -> tuple[Learner, Batch]:
    cfg = TrainConfig(
        env=env,
        num_envs=8,
        total_steps=1024,
        model=ModelConfig(hidden=(32, 32)),
        algo=IMPALAConfig(unroll_length=8, batch_size=8, discrete_pg="expected", **algo),  # type: ignore[arg-type]
    )
    _, learner, actor = build(cfg)
    return learner, actor.unroll(learner.version)


def test_the_head_exists_only_when_asked_and_has_one_value_per_choice() -> None:
    learner, batch = _setup()
    fwd = learner.forward(batch)
    assert fwd.action_values is not None and fwd.action_values.shape == (8, 8, 6)
    assert isinstance(batch.actions, HybridAction)
    picked = fwd.action_values.gather(-1, batch.actions.discrete.long()[..., None])[..., 0]
    assert fwd.chosen_action_values is not None
    torch.testing.assert_close(fwd.chosen_action_values, picked)
    # Q = V + a with a near 0 at the start (the policy head's gain, 0.01; a unit-gain head
    # gives ~1.4 here): no choice is preferred before it is learned
    v = fwd.values[:8, :, 0].detach()
    assert (fwd.action_values - v[..., None]).abs().max() < 0.05
    plain = TrainConfig(env=UAV, num_envs=8, total_steps=1024, model=ModelConfig(hidden=(8,)))
    _, sampled, _ = build(plain)
    assert sampled.model.action_advantage is None
    assert sampled.forward(batch).action_values is None


def test_discrete_logits_follow_the_expected_gradient_of_the_action_values() -> None:
    """With the sampled advantages, the entropy and the value losses switched off, the discrete
    logits' gradient is exactly ``expected_policy_gradient_loss`` of the head's Q (divided by
    the advantage scale), and the choice with the largest Q gains probability."""
    torch.manual_seed(0)
    learner, batch = _setup(entropy_coef=0.0, baseline_coef=0.0, normalize_advantages=True)
    head = learner.model.action_advantage
    assert head is not None
    with torch.no_grad():  # Q(x, k) = c_k everywhere
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0, 3.0, 0.0]))
    fwd = learner.forward(batch)
    tg = learner.targets(batch, fwd)
    tg = tg._replace(advantages=torch.zeros_like(tg.advantages))  # no sampled term
    learner.model.zero_grad()
    learner.losses(fwd, tg, 0.0).loss.backward()
    policy_bias = learner.model.policy.bias.grad
    assert policy_bias is not None
    got = policy_bias[:6].clone()

    out = learner.model(batch.obs, batch.first, batch.core_state)
    logits = out.params["logits"][:8].detach().requires_grad_(True)
    q = torch.tensor([0.0, 1.0, 0.0, 0.0, 3.0, 0.0]).expand(8, 8, 6)
    expected_policy_gradient_loss(torch.softmax(logits, -1), q / tg.adv_scale).backward()
    assert logits.grad is not None
    torch.testing.assert_close(got, logits.grad.sum(dim=(0, 1)), rtol=1e-4, atol=1e-7)
    assert int(got.argmin()) == 4  # descending the loss raises choice 4's logit the most
    assert float(tg.adv_scale) != 1.0  # normalised: the Q advantages share the scale


def test_action_values_regress_to_the_scalarised_vtrace_q() -> None:
    learner, batch = _setup(entropy_coef=0.0)
    fwd = learner.forward(batch)
    tg = learner.targets(batch, fwd)
    ls = learner.losses(fwd, tg, 0.0)
    assert fwd.chosen_action_values is not None
    want = 0.5 * (tg.q_scalar - fwd.chosen_action_values.detach()).square().mean()
    torch.testing.assert_close(ls.action_value, want)
    head = learner.model.action_advantage
    assert head is not None
    # the head alone, toward the batch's fixed targets
    losses = fit_alone(head, lambda: learner.losses(learner.forward(batch), tg, 0.0).action_value)
    assert losses[-1] < 0.2 * losses[0], losses[::20]
    assert learner.step(batch)["loss_action_value"] > 0.0


def test_categorical_actions_use_the_expected_gradient_alone() -> None:
    learner, batch = _setup(env="CartPole-v1")
    fwd = learner.forward(batch)
    assert fwd.action_values is not None and fwd.action_values.shape == (8, 8, 2)
    m = learner.step(batch)
    assert math.isfinite(m["loss"]) and m["loss_action_value"] > 0


def test_errors() -> None:
    with pytest.raises(ConfigError, match="discrete_pg"):
        IMPALAConfig(discrete_pg="mean")
    cfg = TrainConfig(
        env="Pendulum-v1", num_envs=2, total_steps=64, model=ModelConfig(hidden=(8,)),
        algo=IMPALAConfig(unroll_length=8, batch_size=2, discrete_pg="expected"),
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"needs a discrete choice.*'squashed_gaussian'"):
        build(cfg)
    # a model built without the head cannot serve a learner that needs it, and vice versa
    from impala_hybrid.envs.factory import make_vector_env

    env = make_vector_env(UAV, 2, {})
    plain = ActorCritic(29, action_spec(env.single_action_space), ModelConfig(hidden=(8,)))
    with pytest.raises(ConfigError, match="needs a model with an action-advantage head"):
        Learner(plain, IMPALAConfig(discrete_pg="expected"))
    with_head = build_model(TrainConfig(env=UAV, algo=IMPALAConfig(discrete_pg="expected")), env, 1)
    with pytest.raises(ConfigError, match="needs a model without"):
        Learner(with_head, IMPALAConfig())
    with pytest.raises(ConfigError, match="zones"):
        build(
            TrainConfig(
                env=UAV,
                num_envs=2,
                total_steps=64,
                model=ModelConfig(structure="zones"),
                algo=IMPALAConfig(discrete_pg="expected"),
            )
        )


def test_action_value_check_of_a_trained_run(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``experiments.action_values`` on a tiny CLI run; with the advantage head zeroed, ``Q``
    is ``V`` exactly, so both errors agree and the spread is 0."""
    from pathlib import Path

    from impala_hybrid import cli
    from impala_hybrid.experiments import action_values
    from impala_hybrid.experiments.trainer import load_run_model

    out = Path(str(tmp_path)) / "run"
    tiny = [
        "--set", "env=impala_hybrid.envs.param_toys:goal", "total_steps=512", "num_envs=8",
        "algo.batch_size=8", "algo.unroll_length=8", "model.hidden=[16]", "eval_interval=0",
        "algo.discrete_pg=expected",
    ]  # fmt: skip
    assert cli.main(["train", "--preset", "param_choice", "--out", str(out), *tiny]) == 0
    r = action_values.action_value_check(out, unrolls=2, num_envs=8)
    assert all(math.isfinite(x) for x in r.values()) and r["spread"] > 0.0

    def zeroed(run_dir: object, checkpoint: str = "last") -> tuple[object, ActorCritic]:
        cfg, model = load_run_model(run_dir, checkpoint)  # type: ignore[arg-type]
        assert model.action_advantage is not None
        with torch.no_grad():
            model.action_advantage.weight.zero_()
            model.action_advantage.bias.zero_()
        return cfg, model

    monkeypatch.setattr(action_values, "load_run_model", zeroed)
    z = action_values.action_value_check(out, unrolls=2, num_envs=8)
    assert z["mse_q"] == pytest.approx(z["mse_v"], rel=1e-6) and z["spread"] == 0.0
    monkeypatch.undo()

    plain = Path(str(tmp_path)) / "plain"
    assert cli.main(["train", "--preset", "param_choice", "--out", str(plain), *tiny[:-1]]) == 0
    with pytest.raises(ValueError, match="discrete_pg = 'sampled'"):
        action_values.action_value_check(plain)
