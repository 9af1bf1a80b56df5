"""Running observation normalisation: the moment merge against the moments of the whole
data, the statistics in the model's state (checkpoints, actors) and updated by the learner."""

from __future__ import annotations

import numpy as np
import torch

from impala_hybrid.models.actor_critic import ActorCritic, ModelConfig
from impala_hybrid.models.normalization import RunningObsNorm, merge_moments
from impala_hybrid.models.spaces import action_spec


def test_merge_moments_matches_moments_of_the_concatenation() -> None:
    rng = np.random.default_rng(0)
    chunks = [rng.normal(m, s, (n, 3)) for m, s, n in ((5.0, 2.0, 7), (-1.0, 0.1, 40), (0, 9, 1))]
    mean, var, count = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), 0
    c = torch.tensor(0.0, dtype=torch.float64)
    for x in chunks:
        t = torch.as_tensor(x)
        mean, var, c = merge_moments(mean, var, c, t.mean(0), t.var(0, unbiased=False), len(x))
        count += len(x)
    whole = np.concatenate(chunks)
    np.testing.assert_allclose(mean.numpy(), whole.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var.numpy(), whole.var(0), rtol=1e-12)
    assert float(c) == count


def test_normalizer_standardises_and_clips() -> None:
    norm = RunningObsNorm(2, clip=3.0)
    x = torch.tensor([[100.0, -5.0], [102.0, -5.0], [104.0, -5.0]])
    norm.update(x)
    y = norm(torch.tensor([[102.0, -5.0], [1000.0, 7.0]]))
    torch.testing.assert_close(y[0], torch.zeros(2))  # a constant feature maps to 0
    torch.testing.assert_close(y[1], torch.tensor([3.0, 3.0]))  # clipped


def test_statistics_are_model_state_and_off_by_default() -> None:
    import gymnasium as gym

    spec = action_spec(gym.spaces.Discrete(2))
    plain = ActorCritic(3, spec, ModelConfig(hidden=(8,)))
    assert plain.obs_norm is None and not any(k.startswith("obs_norm") for k in plain.state_dict())
    model = ActorCritic(3, spec, ModelConfig(hidden=(8,), obs_norm=True))
    model.obs_norm.update(torch.full((4, 3), 50.0))  # type: ignore[union-attr]
    copy = ActorCritic(3, spec, ModelConfig(hidden=(8,), obs_norm=True))
    copy.load_state_dict(model.state_dict())  # checkpoints and actors get the statistics
    assert torch.equal(copy.obs_norm.mean, torch.full((3,), 50.0))  # type: ignore[union-attr]
    raw = {k: v for k, v in copy.state_dict().items() if not k.startswith("obs_norm")}
    plain.load_state_dict(raw)  # the same weights without normalisation
    first = torch.zeros(1, 1)
    out = copy(torch.full((1, 1, 3), 50.0), first)  # the forward normalises: 50 -> 0
    torch.testing.assert_close(out.values, plain(torch.zeros(1, 1, 3), first).values)


def test_learner_updates_the_statistics_from_its_batches() -> None:
    from impala_hybrid.algos.impala.config import IMPALAConfig
    from impala_hybrid.experiments.spec import TrainConfig
    from impala_hybrid.runtime.serial import train_serial

    cfg = TrainConfig(
        env="impala_hybrid.envs.param_toys:reach",
        env_kwargs={"obs_scale": 100.0, "obs_shift": 50.0},
        num_envs=4, total_steps=256, model=ModelConfig(hidden=(8,), obs_norm=True),
        algo=IMPALAConfig(unroll_length=8, batch_size=4),
    )  # fmt: skip
    norm = train_serial(cfg).model.obs_norm
    assert norm is not None and float(norm.count) == 256  # every observation acted on, once
    assert abs(float(norm.mean[:3].mean()) - (50 + 100 / 3)) < 5.0  # the shifted one-hot
