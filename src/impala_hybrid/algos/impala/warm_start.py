"""Warm start from a classical UAV policy: behaviour cloning before IMPALA (issue 8).

Why: on the UAV env the policies learned from scratch stay below the best classical policy
(docs/results.md). The issue allows a warm start from a classical policy "only as a
documented, switchable option, reported separately from learning from scratch": this is it.
``TrainConfig.warm_start = NAME`` rolls the classical policy ``NAME`` out for
``warm_start_steps`` env steps (the native vector env, ``env_kwargs`` as configured) and fits
the freshly initialised network to its actions before the first IMPALA update:

* the discrete transfer by cross-entropy on the policy's logits (label-smoothed, so the other
  transfers keep some probability to explore);
* the continuous intensities by the squared error of the head's *mode* (``squash(mean)``,
  or the Beta's ``(alpha - 1) / (alpha + beta - 2)``: what evaluation and deployment act
  with) in env units; the Gaussian's log-std is left at its initial value, so IMPALA starts
  from the classical policy's actions with the configured exploration noise around them, not
  from a collapsed distribution (a likelihood fit of deterministic targets would drive the
  std to its floor, where ratios explode, issue 8). A Beta's width moves with its mode (the
  fit sets both concentrations).

With observation normalisation (``ModelConfig.obs_norm``) the running statistics are first set
to the demonstrations' moments, so the network is fitted to the inputs it will see when IMPALA
starts; otherwise the first learner step would merge the initial statistics (mean 0, variance 1,
count 0) with its batch, move every normalised input at once, and undo the clone.

The critic is not fitted here: ``IMPALAConfig.critic_warmup_steps`` trains only the value
losses for the first env steps of IMPALA, on the warm-started policy's own data, so the first
policy updates use a critic that knows that policy. Plain supervised learning with PyTorch;
nothing in a library does "clone a NumPy policy into this ActorCritic".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch.nn import functional as F

from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.envs.heuristics import HEURISTICS, make_heuristic
from impala_hybrid.envs.vector import UAVNetVectorEnv
from impala_hybrid.models.actor_critic import ActorCritic
from impala_hybrid.validation import ConfigError

#: Cross-entropy label smoothing of the transfer: the cloned choice keeps about 8% of its
#: probability on the other five transfers, so IMPALA can still explore them (a fit to
#: one-hot targets leaves logits so peaked that no sampled advantage reaches the others).
LABEL_SMOOTHING = 0.1


def collect_demonstrations(
    policy: str, env_kwargs: dict[str, Any], steps: int, *, num_envs: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(obs [N, 29], transfer [N], intensity [N, 6])`` of ``policy`` acting in the UAV env
    for ``N = ceil(steps / num_envs) * num_envs`` steps (its own state distribution)."""
    if policy not in HEURISTICS:
        raise ConfigError(
            f"TrainConfig.warm_start = {policy!r} is invalid: must be one of {sorted(HEURISTICS)}"
        )
    cfg = UAVNetConfig(**env_kwargs)
    env = UAVNetVectorEnv(num_envs, cfg, autoreset_mode=AutoresetMode.SAME_STEP)
    act = make_heuristic(policy, cfg)
    obs, _ = env.reset(seed=seed)
    xs, ds, cs = [], [], []
    for _ in range(-(-steps // num_envs)):
        a = act(obs)
        xs.append(obs.copy())
        ds.append(a["transfer"].copy())
        cs.append(a["intensity"].copy())
        obs, *_ = env.step(a)
    env.close()
    return np.concatenate(xs), np.concatenate(ds), np.concatenate(cs)


def behaviour_clone(
    model: ActorCritic,
    obs: np.ndarray,
    transfer: np.ndarray,
    intensity: np.ndarray,
    *,
    updates: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, float]:
    """Fit ``model``'s logits and continuous mode to the demonstrations (module docstring);
    returns the last minibatch's losses and the greedy agreement on all the data."""
    if model.action.kind != "hybrid_factorized" or model.recurrent:
        raise ConfigError(
            "TrainConfig.warm_start needs the UAV env's factorised hybrid head without an LSTM "
            f"(got {model.action.kind!r}, lstm_size = {model.config.lstm_size})"
        )
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(obs, dtype=torch.float32)
    if model.obs_norm is not None:  # fit on the inputs IMPALA will start with (module doc)
        model.obs_norm.update(x)
    d = torch.as_tensor(transfer, dtype=torch.long)
    c = torch.as_tensor(intensity, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr)  # the value heads get no gradient here
    first = torch.zeros(1, batch_size, dtype=torch.bool)
    ce = mse = torch.zeros(())
    for _ in range(updates):
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        out = model(x[idx][None], first)
        dist: Any = model.distribution(out.params)
        ce = F.cross_entropy(out.params["logits"][0], d[idx], label_smoothing=LABEL_SMOOTHING)
        mode = _continuous_mode(dist)
        mse = (mode[0] - c[idx]).square().mean()
        opt.zero_grad(set_to_none=True)
        (ce + mse).backward()
        opt.step()
    with torch.no_grad():
        out = model(x[None], torch.zeros(1, len(x), dtype=torch.bool))
        dist = model.distribution(out.params)
        agree = (out.params["logits"][0].argmax(-1) == d).float().mean().item()
        mae = (_continuous_mode(dist)[0] - c).abs().mean().item()
    return {
        "bc_cross_entropy": ce.item(),
        "bc_mse": mse.item(),
        "bc_transfer_agreement": agree,
        "bc_intensity_mae": mae,
    }


def _continuous_mode(dist: Any) -> torch.Tensor:
    """The continuous part's mode in env units with its gradient (``mode()`` detaches):
    ``squash(mean)`` for the squashed Gaussian, ``(alpha - 1) / (alpha + beta - 2)`` for the
    Beta (a full-speed target is reached only in the limit ``beta -> 1``)."""
    cont = dist.continuous
    return cont.to_env(cont.mode_with_grad())
