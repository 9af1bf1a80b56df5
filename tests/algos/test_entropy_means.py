"""``IMPALAConfig.entropy_moves_means``: whether the entropy bonus may move the squashed
Gaussian's means (its log-Jacobian term pulls them toward the centre of the range) or only its
log-stds."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.runtime.serial import build
from impala_hybrid.validation import ConfigError

UAV = "impala_hybrid/UAVNet-v0"


def _entropy_gradient(moves_means: bool) -> tuple[dict[str, Tensor], Tensor]:
    """The entropy bonus's gradient on the policy layer's bias (the loss at entropy weight 1
    minus at 0), per distribution parameter, and the entropies, with every intensity's
    pre-squash mean at 1.5 (intensity ~0.95, near the upper bound)."""
    cfg = TrainConfig(
        env=UAV, num_envs=8, total_steps=1024, model=ModelConfig(hidden=(16, 16)),
        algo=IMPALAConfig(unroll_length=8, batch_size=8, entropy_moves_means=moves_means),
    )  # fmt: skip
    _, learner, actor = build(cfg)
    model = learner.model
    slices, offset = {}, 0
    for name, size in model._sizes.items():
        slices[name] = slice(offset, offset + size)
        offset += size
    with torch.no_grad():
        model.policy.bias[slices["mean"]] = 1.5
    batch = actor.unroll(learner.version)
    fwd = learner.forward(batch)
    tg = learner.targets(batch, fwd)
    grads = []
    for coef in (1.0, 0.0):
        model.zero_grad()
        losses = learner.losses(fwd, tg, coef)
        losses.loss.backward(retain_graph=True)
        bias = model.policy.bias.grad
        assert bias is not None
        grads.append(bias.clone())
    diff = grads[0] - grads[1]
    return {name: diff[at] for name, at in slices.items()}, losses.entropy_parts.detach()


def test_the_bonus_pulls_the_means_to_the_centre_by_default() -> None:
    grad, _ = _entropy_gradient(True)
    # descent on -entropy lowers a mean above the centre: a positive gradient on every one
    assert (grad["mean"] > 0).all(), grad["mean"]


def test_detached_means_keep_the_entropy_and_its_pull_on_the_stds() -> None:
    moving, entropy_moving = _entropy_gradient(True)
    fixed, entropy_fixed = _entropy_gradient(False)
    assert torch.equal(fixed["mean"], torch.zeros_like(fixed["mean"]))
    torch.testing.assert_close(fixed["log_std"], moving["log_std"])
    assert fixed["log_std"].abs().sum() > 0
    torch.testing.assert_close(fixed["logits"], moving["logits"])
    torch.testing.assert_close(entropy_fixed, entropy_moving)


def test_a_beta_head_rejects_entropy_moves_means_false() -> None:
    """A Beta head has no mean to detach: the option would be silently ignored, so the
    config names both fields instead."""
    with pytest.raises(ConfigError, match=r"entropy_moves_means = False .*'beta'"):
        TrainConfig(
            env=UAV, model=ModelConfig(continuous_kind="beta"),
            algo=IMPALAConfig(entropy_moves_means=False),
        )  # fmt: skip
    TrainConfig(env=UAV, model=ModelConfig(continuous_kind="beta"))  # the default is fine
