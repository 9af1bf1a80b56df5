"""Batch-1 decision latency of the deployed UAV policy on one core, by inference path.

The model is the UAV default (29-256-256, LayerNorm, ReLU, hybrid factorized head: Discrete(6)
+ 6-dim squashed Gaussian on [0, 1]) with untrained weights: latency does not depend on the
weight values. Every path is timed end to end, as a controller would call it: from a NumPy
observation ``[1, 29]`` to the env action dict ``{"transfer": int64 [1], "intensity": float32
[1, 6]}``, deterministic (the mode), with ``time.perf_counter_ns`` around each call. The
UAV preset deploys its transfer drawn (``discrete_choice = "sample"``: Gumbel noise from the
policy's seeded generator added to the logits), so the two fastest paths are also timed that
way, noise generation included.

* ``torch eager``: :class:`~impala_hybrid.evaluation.policy.TorchPolicy` (the training model,
  distribution objects, ``mode``, ``to_env``);
* ``TorchScript``: the traced :class:`~impala_hybrid.deploy.export.DeterministicActor`;
* ``ONNX Runtime``: the ONNX export on the CPU provider with 1 intra-op thread;
* ``NumPy``: :class:`~impala_hybrid.deploy.inference.NumpyPolicy`.

The paths are measured in interleaved rounds (each round times a block of calls of every
path), so a burst of background load on the machine hits all of them alike rather than one.
The garbage collector stays enabled, as in a deployed process.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TARGET_P99_US = 50.0
OBS_POOL = 1024


@dataclass
class Latency:
    path: str
    p50_us: float
    p99_us: float
    p999_us: float
    mean_us: float
    calls: int

    @property
    def meets_target(self) -> bool:
        return self.p99_us <= TARGET_P99_US


def runtimes() -> str:
    import onnxruntime
    import torch

    return f"PyTorch {torch.__version__}, ONNX Runtime {onnxruntime.__version__}"


def uav_default_model() -> Any:
    """``ActorCritic(29, action_spec(UAV action space), ModelConfig())``, untrained."""
    import torch

    from impala_hybrid.envs.vector import make_spaces
    from impala_hybrid.models.actor_critic import ActorCritic, ModelConfig
    from impala_hybrid.models.spaces import action_spec

    obs_space, act_space, _ = make_spaces()
    torch.manual_seed(0)
    return ActorCritic(int(obs_space.shape[0]), action_spec(act_space), ModelConfig()).eval()


def build_policies(model: Any, workdir: Path) -> dict[str, Callable[[np.ndarray], Any]]:
    import torch

    from impala_hybrid.deploy.export import export_model, load_exported
    from impala_hybrid.deploy.inference import NumpyPolicy
    from impala_hybrid.evaluation.policy import TorchPolicy

    torch.set_num_threads(1)
    return {
        "torch eager (`TorchPolicy`)": TorchPolicy(model),
        "TorchScript (traced)": load_exported(
            export_model(model, workdir / "policy.pt", "torchscript")
        ),
        "ONNX Runtime (1 thread)": load_exported(
            export_model(model, workdir / "policy.onnx", "onnx"), threads=1
        ),
        "NumPy (`NumpyPolicy`)": NumpyPolicy.from_model(model),
        "ONNX Runtime, transfer drawn": load_exported(
            export_model(model, workdir / "drawn.onnx", "onnx", discrete_choice="sample"),
            threads=1,
        ),
        "NumPy, transfer drawn": NumpyPolicy.from_model(model, "sample"),
    }


DRAWN = " transfer drawn"
"""Paths whose transfer is drawn (``discrete_choice = "sample"``); their reference is a
fresh ``TorchPolicy`` with the same choice and seed 0, like theirs."""


def measure(
    policies: dict[str, Callable[[np.ndarray], Any]],
    obs: np.ndarray,
    calls: int,
    warmup: int,
    rounds: int,
) -> list[Latency]:
    """Per-call latencies of every policy, interleaved over ``rounds`` rounds."""
    n = len(obs)
    for policy in policies.values():
        for i in range(warmup):
            policy(obs[i % n])
    samples = {name: np.empty(calls, np.int64) for name in policies}
    block = calls // rounds
    clock = time.perf_counter_ns
    gc.collect()
    for r in range(rounds):
        for name, policy in policies.items():
            out = samples[name]
            for j in range(r * block, (r + 1) * block):
                o = obs[j % n]
                start = clock()
                policy(o)
                out[j] = clock() - start
    rows = []
    for name, ns in samples.items():
        us = ns[: rounds * block] / 1e3
        p50, p99, p999 = np.percentile(us, [50, 99, 99.9])
        rows.append(Latency(name, p50, p99, p999, float(us.mean()), len(us)))
    return rows


def run(quick: bool = False) -> tuple[list[Latency], float]:
    """Latency rows of every path and the 1-minute load average right after measuring."""
    model = uav_default_model()
    rng = np.random.default_rng(0)
    obs = rng.random((OBS_POOL, 1, 29), dtype=np.float32)  # env observations lie in [0, 1]
    with tempfile.TemporaryDirectory() as tmp:
        policies = build_policies(model, Path(tmp))
        # Every path must give the same action before its speed means anything.
        from impala_hybrid.evaluation.policy import TorchPolicy

        reference = [policies["torch eager (`TorchPolicy`)"](o) for o in obs[:64]]
        drawn = TorchPolicy(model, discrete_choice="sample")
        reference_drawn = [drawn(o) for o in obs[:64]]
        for name, policy in policies.items():
            want_all = reference_drawn if name.endswith(DRAWN) else reference
            for o, want in zip(obs[:64], want_all, strict=True):
                got = policy(o)
                np.testing.assert_array_equal(got["transfer"], want["transfer"], err_msg=name)
                np.testing.assert_allclose(
                    got["intensity"], want["intensity"], atol=1e-5, err_msg=name
                )
        calls, warmup = (2_000, 200) if quick else (20_000, 2_000)
        rows = measure(policies, obs, calls=calls, warmup=warmup, rounds=10)
    return rows, os.getloadavg()[0]


def report(rows: list[Latency], load: float) -> str:
    """Markdown table and findings; ``load``: the 1-minute load average after measuring
    (a hint only: host contention from other VMs does not show in it)."""
    lines = [
        "| path | p50 us | p99 us | p99.9 us | mean us | p99 <= 50 us |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.path} | {r.p50_us:.1f} | {r.p99_us:.1f} | {r.p999_us:.1f} | {r.mean_us:.1f} "
            f"| {'met' if r.meets_target else 'missed'} |"
        )
    met = [r.path for r in rows if r.meets_target]
    eager = next(r for r in rows if r.path.startswith("torch eager"))
    best = min(rows, key=lambda r: r.p99_us)
    lines += [
        "",
        f"- Target batch-1 decision p99 <= {TARGET_P99_US:.0f} us on one core: "
        + (f"**met** by {', '.join(met)}" if met else "**missed** by every path")
        + f"; lowest p99 {best.p99_us:.1f} us ({best.path}). {rows[0].calls:,} timed calls "
        "per path after warm-up, interleaved in 10 rounds; untrained UAV default model "
        "(29-256-256, LayerNorm, hybrid factorized head).",
        f"- Where the time goes. Torch eager ({eager.p50_us:.0f} us median) is dispatch, not "
        "arithmetic: one `TorchPolicy` decision runs ~70 top-level ATen ops (~190 with nested "
        "ones; trunk, heads, the distribution objects' bound checks, `mode`, `to_env`, "
        "conversions) at ~3 us each, for ~5 us of matrix-vector work. TorchScript drops the "
        "Python and distribution layers but keeps per-op dispatch. ONNX Runtime and NumPy are "
        "bound by the two matrix-vector products plus per-call overhead: `NumpyPolicy` makes "
        "~15 NumPy calls (weights prepacked with the bias as a row, LayerNorm centring and "
        "positive scales folded into the weights, preallocated buffers).",
        "- Tails (p99, p99.9) depend on other load on the machine (a shared 2-core VM here; "
        f"1-minute load average {load:.2f} when the run ended; other VMs on the host are not "
        "visible in it): "
        "compare paths within one run.",
    ]
    return "\n".join(lines)
