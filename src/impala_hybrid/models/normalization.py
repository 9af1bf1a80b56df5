"""Running observation normalisation: ``clip((x - mean) / sqrt(var + eps), -clip, clip)``.

Why: envs with unbounded observations (positions, velocities in their own units) feed the
trunk raw values of very different scales; LayerNorm after the first layer does not help the
first layer itself, whose inputs still differ by orders of magnitude. Bounded features can
gain from it too: the UAV env's all lie in [0, 1], but the emergency queues that decide a
transfer spread over ~0.1 of that range; normalised, the UAV preset's runs ended higher on
average but wrote a zone off more often (docs/results.md). The statistics are
buffers of the model, so they travel with it: into checkpoints (``state_dict``), to the
actors with the weights, and into exported artifacts, where they are constants (frozen at
export). They are updated by the learner from each batch's observations (``Learner.step``,
after the update, so a batch is scored under the statistics it was acted with, up to policy
lag). Off by default (``ModelConfig.obs_norm``) and in the UAV preset.

The update is the parallel-variance merge of Chan et al. (1979) as in SB3's
``RunningMeanStd``: :func:`merge_moments` is pure and tested against the moments of the
concatenated data. Float32 buffers, because deployment takes float32 weights only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

OBS_NORM_EPS = 1e-8
"""Added to the variance: a constant observation feature maps to 0, not to a division by 0."""


def merge_moments(
    mean: Tensor, var: Tensor, count: Tensor, batch_mean: Tensor, batch_var: Tensor, n: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Moments ``(mean [F], var [F], count [])`` of the union of data with moments
    ``(mean, var, count)`` and a batch of ``n`` rows with ``(batch_mean, batch_var)``
    (population variances)::

        delta = mu_b - mu_a,  N = n_a + n_b
        mu = mu_a + delta n_b / N
        var = (var_a n_a + var_b n_b + delta^2 n_a n_b / N) / N
    """
    total = count + n
    delta = batch_mean - mean
    new_mean = mean + delta * (n / total)
    m2 = var * count + batch_var * n + delta.square() * (count * n / total)
    return new_mean, m2 / total, total


class RunningObsNorm(nn.Module):
    """Observation normaliser with running statistics over ``[..., F]`` observations."""

    mean: Tensor
    var: Tensor
    count: Tensor

    def __init__(self, num_features: int, clip: float) -> None:
        super().__init__()
        if not clip > 0:
            raise ValueError(f"clip = {clip} is invalid: must be > 0")
        self.clip = clip
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("var", torch.ones(num_features))
        self.register_buffer("count", torch.zeros(()))

    def forward(self, obs: Tensor) -> Tensor:
        x = (obs.float() - self.mean) * torch.rsqrt(self.var + OBS_NORM_EPS)
        return x.clamp(-self.clip, self.clip)

    @torch.no_grad()
    def update(self, obs: Tensor) -> None:
        """Merge the rows of ``obs [..., F]`` into the statistics."""
        x = self.rows(obs)
        self.merge(x.mean(0), x.var(0, unbiased=False), x.shape[0])

    def rows(self, obs: Tensor) -> Tensor:
        """``obs [..., F]`` as float32 rows ``[N, F]``."""
        return obs.reshape(-1, self.mean.shape[0]).float()

    @torch.no_grad()
    def merge(self, batch_mean: Tensor, batch_var: Tensor, n: int) -> None:
        """Merge a batch's moments (population variance) of ``n`` rows into the statistics
        (the batch may be spread over several learners: ``algos/comm.py``)."""
        mean, var, count = merge_moments(self.mean, self.var, self.count, batch_mean, batch_var, n)
        self.mean.copy_(mean)
        self.var.copy_(var)
        self.count.copy_(count)
