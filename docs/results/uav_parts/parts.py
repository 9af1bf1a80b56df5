"""Which part of the learned UAV policy loses to threshold: the transfer or the intensities?

Run from the repository root on the run directories of a study (``--runs`` of
``impala_hybrid.experiments.study``), e.g.::

    python docs/results/uav_parts/parts.py runs/parts > docs/results/uav_parts/parts.md

For each run's ``best.pt`` it scores, on the 32 validation episodes the run selected on and
on 256 held-out episodes of the eval split (the study's; common random numbers throughout):

- the learned policy as deployed (``discrete_choice = sample``, intensities at their mode);
- its transfer with threshold's intensities, and threshold's transfer with its intensities
  (both policies see every observation; the action takes one part from each);
- its intensities shifted by ``+d`` (clipped to [0, 1]): a systematic bias of the continuous
  part shows as a gain on both episode sets; the same with the intensities drawn from the
  policy as in training (transfer and intensities sampled with a seeded generator), to see
  whether the stochastic policy sits at its own optimum; and its intensities at their mean
  under its noise instead of their median;
- its transfer drawn at temperature ``tau`` (the Gumbel noise scaled by ``tau``, i.e. drawn
  from ``softmax(logits / tau)``; 0 is the argmax, 1 the policy as trained).

Why a script here and not a CLI command: it is a one-off decomposition for docs/results.md;
the pieces it uses (``load_run_model``, ``run_policy``, ``evaluate``) are the library's.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import impala_hybrid.evaluation.policy as policy_module
from impala_hybrid.deploy.inference import gumbel_noise
from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.envs.heuristics import make_heuristic
from impala_hybrid.evaluation.policy import TorchPolicy
from impala_hybrid.evaluation.rollout import evaluate
from impala_hybrid.experiments.trainer import load_run_model, run_policy
from impala_hybrid.models.distributions import (
    HybridFactorizedDistribution,
    SquashedGaussianDistribution,
)

SHIFTS = (-0.05, 0.05, 0.1, 0.15)
TAUS = (0.0, 0.5, 1.5)
_TAU = [1.0]  # the temperature the patched noise uses (1: the policy as trained)


def _scaled_noise(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return _TAU[0] * gumbel_noise(rng, n, k)


policy_module.gumbel_noise = _scaled_noise


class Parts:
    """Transfer from ``transfer``, intensities from ``intensity`` (+ ``shift``, clipped)."""

    def __init__(self, transfer: Any, intensity: Any, shift: float = 0.0) -> None:
        self.transfer, self.intensity, self.shift = transfer, intensity, shift

    def _each(self, name: str, *args: Any) -> None:
        for p in {id(self.transfer): self.transfer, id(self.intensity): self.intensity}.values():
            if hasattr(p, name):
                getattr(p, name)(*args)

    def reset(self, n: int) -> None:
        self._each("reset", n)

    def observe_done(self, done: np.ndarray) -> None:
        self._each("observe_done", done)

    def __call__(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        a = self.transfer(obs)
        b = a if self.intensity is self.transfer else self.intensity(obs)
        intensity = np.clip(np.asarray(b["intensity"]) + self.shift, 0.0, 1.0)
        return {"transfer": np.asarray(a["transfer"]), "intensity": intensity.astype(np.float32)}


class MeanIntensity:
    """The deployed policy with each intensity at its mean under the policy's own noise,
    ``E[squash(u)]`` (32-node Gauss-Hermite), instead of its median ``squash(mean)``."""

    def __init__(self, policy: TorchPolicy) -> None:
        self.policy = policy
        nodes, weights = np.polynomial.hermite_e.hermegauss(32)
        self.nodes = torch.tensor(nodes, dtype=torch.float32)
        self.weights = torch.tensor(weights / weights.sum(), dtype=torch.float32)

    def reset(self, n: int) -> None:
        self.policy.reset(n)

    def observe_done(self, done: np.ndarray) -> None:
        self.policy.observe_done(done)

    def __call__(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        model = self.policy.model
        x = torch.as_tensor(np.asarray(obs, np.float32).reshape(len(obs), -1))
        with torch.no_grad(), model.full_precision():  # stateless MLP: no core state to carry
            out = model(
                x[None], torch.ones(1, len(x), dtype=torch.bool), model.initial_state(len(x))
            )
            dist = model.distribution({k: v[0] for k, v in out.params.items()})
            assert isinstance(dist, HybridFactorizedDistribution), "the UAV preset's head"
            cont = dist.continuous
            assert isinstance(cont, SquashedGaussianDistribution), "the UAV preset's head"
            u = cont.mean[..., None] + cont.std[..., None] * self.nodes  # [N, D, K]
            unit = ((torch.tanh(u) * self.weights).sum(-1) + 1.0) / 2.0
            intensity = torch.lerp(cont.low, cont.high, unit)
        action = dict(self.policy(obs))
        action["intensity"] = intensity.numpy().astype(np.float32)
        return action


def shifted(policy: Any, d: float) -> Parts:
    """``policy`` with its intensities shifted by ``d``."""
    return Parts(policy, policy, d)


def score(make: Callable[[], Any], env_cfg: UAVNetConfig, cfg: Any) -> tuple[float, float, Any]:
    """(validation return, held-out return, held-out objectives) of a fresh policy."""
    val = evaluate(
        make(), env_cfg, episodes=1, num_envs=cfg.eval_episodes, seed=cfg.eval_seed,
        split="validation",
    )  # fmt: skip
    held = evaluate(make(), env_cfg, episodes=4, num_envs=64, seed=0, split="eval")
    return val.return_mean, held.return_mean, held.objectives


def per_run(run_dir: Path) -> tuple[dict[str, tuple[float, float, Any]], UAVNetConfig, Any]:
    """Every case's score for one run's ``best.pt``, its env config and its train config."""
    cfg, model = load_run_model(run_dir, "best")
    env_cfg = UAVNetConfig(**cfg.env_kwargs)

    def learned() -> Any:
        return run_policy(cfg, model)

    def threshold() -> Any:
        return make_heuristic("threshold", env_cfg)

    def shifted_learned(d: float) -> Parts:
        return shifted(learned(), d)

    def shifted_drawn(d: float) -> Parts:
        return shifted(TorchPolicy(model, deterministic=False), d)

    cases: dict[str, Callable[[], Any]] = {
        "learned (as deployed)": learned,
        "learned transfer + threshold intensities": lambda: Parts(learned(), threshold()),
        "threshold transfer + learned intensities": lambda: Parts(threshold(), learned()),
    }
    for d in SHIFTS:
        cases[f"learned, intensities {d:+.2f}"] = functools.partial(shifted_learned, d)
    cases["learned, intensities at their mean"] = lambda: MeanIntensity(learned())
    for d in (0.0, 0.05, 0.1):  # the policy as trained: its intensities drawn too
        cases[f"learned, intensities drawn, {d:+.2f}"] = functools.partial(shifted_drawn, d)
    out = {name: score(make, env_cfg, cfg) for name, make in cases.items()}
    for tau in TAUS:
        _TAU[0] = tau
        out[f"learned, transfer at temperature {tau:g}"] = score(learned, env_cfg, cfg)
        _TAU[0] = 1.0
    return out, env_cfg, cfg


def main(runs: Path) -> None:
    rows: dict[str, list[tuple[float, float, Any]]] = {}
    for run_dir in sorted(runs.glob("seed*")):
        scores, env_cfg, cfg = per_run(run_dir)
        for name, value in scores.items():
            rows.setdefault(name, []).append(value)
    base = score(lambda: make_heuristic("threshold", env_cfg), env_cfg, cfg)
    objectives = list(base[2])
    print(
        "| policy | validation per seed | held out per seed | held-out mean | "
        + " | ".join(objectives)
        + " |"
    )
    print("|---|---|---|---:|" + "---:|" * len(objectives))
    for name, per_seed in [("threshold", [base]), *rows.items()]:
        val = ", ".join(f"{v:.1f}" for v, _, _ in per_seed)
        held = ", ".join(f"{h:.1f}" for _, h, _ in per_seed)
        mean = np.mean([h for _, h, _ in per_seed])
        objs = " | ".join(
            f"{np.mean([o[k]['mean'] for _, _, o in per_seed]):.1f}" for k in objectives
        )
        print(f"| {name} | {val} | {held} | {mean:.1f} | {objs} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
