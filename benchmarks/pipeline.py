"""Training throughput: end-to-end env steps/s of the local runtime against its two ceilings.

Pipeline efficiency (the issue's definition) = end-to-end rate / min(actor-side ceiling,
learner-side ceiling), all measured in one run with the same layout:

* **actor-side ceiling**: the same actor processes stepping their envs with CPU inference
  as fast as they can, no learner (each process runs ``Actor.unroll`` in a loop);
* **learner-side ceiling**: ``Learner.step`` on a resident batch, no actors;
* **end-to-end**: ``LocalRun`` training for a fixed number of env steps, every sample
  trained once (no replay), timed after a warm-up.

Model: the UAV preset's (29-256-256 MLP with LayerNorm, hybrid head, T = 32), one learner
thread. Layouts (``LAYOUTS``, actors x envs per actor, learner batch B): the UAV preset's, the
one RLlib is compared on, and wide single actors. On 2 cores one actor process stepping many
envs leaves the other core to the learner; the per-call inference cost is what makes wide
actors fast (one actor process steps ~77k env steps/s with 64 envs, ~115k with 128, ~150k with
256 on this machine), and ``runtime/local.py`` splits a wide unroll into B-column slots.

RLlib IMPALA (optional): when ``.venv-rllib`` exists (``bash benchmarks/setup_rllib.sh``), the
same env, model and layout under RLlib (``benchmarks/rllib_impala.py``) in the same run.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import multiprocessing as mp
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from impala_hybrid.algos.impala.actor import Actor
from impala_hybrid.envs.factory import make_vector_env
from impala_hybrid.experiments.spec import LocalConfig, TrainConfig, reward_setup, uav_hybrid
from impala_hybrid.models.actor_critic import resolve_trunk_dtype
from impala_hybrid.runtime.local import LocalRun
from impala_hybrid.runtime.serial import build, build_model


def _key(cfg: TrainConfig) -> tuple[int, int, int]:
    """A layout: (actors, envs per actor, learner batch B)."""
    return (cfg.local.num_actors, cfg.local.envs_per_actor, cfg.algo.batch_size)


#: The UAV preset's layout (what `make run` trains: one actor x 128 envs split into B = 64
#: slots) comes first; then the same actor with B = 32 slots (the preset before session 17)
#: and the 2 actors x 32 envs it trained before that (issue 8 compares them; docs/results.md
#: has the learning runs of each), the layout RLlib is compared on (one actor x 64 envs,
#: B = 64) and single wide actors, which fit 2 cores.
PRESET_LAYOUT = _key(uav_hybrid())
SLOT32_LAYOUT = (1, 128, 32)
PREVIOUS_LAYOUT = (2, 32, 32)
RLLIB_LAYOUT = (1, 64, 64)
LAYOUTS = (
    PRESET_LAYOUT, SLOT32_LAYOUT, PREVIOUS_LAYOUT, RLLIB_LAYOUT, (1, 128, 128), (1, 256, 128)
)  # fmt: skip


def bench_config(num_actors: int, envs_per_actor: int, batch_size: int) -> TrainConfig:
    base = uav_hybrid()
    layout = (num_actors, envs_per_actor, batch_size)
    local = LocalConfig(num_actors=num_actors, envs_per_actor=envs_per_actor)
    if layout in (PRESET_LAYOUT, SLOT32_LAYOUT):  # with the preset's own process settings
        local = base.local
    elif layout == PREVIOUS_LAYOUT:  # as the preset had it: each actor 8 slots ahead
        local = dataclasses.replace(local, slots_per_actor=8)
    return dataclasses.replace(
        base,
        total_steps=10**9,
        log_interval=1,
        algo=dataclasses.replace(base.algo, batch_size=batch_size),
        local=local,
    )


def _actor_loop(cfg: TrainConfig, model: Any, seconds: float, out: Any) -> None:
    torch.set_num_threads(1)
    env = make_vector_env(cfg.env, cfg.local.envs_per_actor, cfg.env_kwargs)
    reward_fn, weights = reward_setup(cfg, env)
    actor = Actor(env, model, cfg.algo.unroll_length, seed=cfg.seed, reward_fn=reward_fn,
                  num_rewards=len(weights))  # fmt: skip
    actor.unroll()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        actor.unroll()
        steps += cfg.algo.unroll_length * cfg.local.envs_per_actor
    out.put(steps / (time.perf_counter() - start))


def actor_ceiling(cfg: TrainConfig, seconds: float) -> float:
    """Env steps/s of ``cfg.local.num_actors`` actor processes with no learner."""
    env = make_vector_env(cfg.env, 1, cfg.env_kwargs)
    _, weights = reward_setup(cfg, env)
    model = build_model(cfg, env, len(weights))
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_actor_loop, args=(cfg, copy.deepcopy(model), seconds, out))
        for _ in range(cfg.local.num_actors)
    ]
    for p in procs:
        p.start()
    rates = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def learner_ceiling(cfg: TrainConfig, seconds: float) -> float:
    """Samples/s of ``Learner.step`` on one resident batch of ``cfg``'s shape."""
    one = dataclasses.replace(cfg, num_envs=cfg.algo.batch_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    try:
        _, learner, actor = build(one)
        batch = actor.unroll()
        learner.step(batch)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            learner.step(batch)
            steps += batch.unroll_length * batch.batch_size
        return steps / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def end_to_end(cfg: TrainConfig, seconds: float, warmup_s: float = 3.0) -> dict[str, float]:
    """Env steps/s trained by the local runtime, after ``warmup_s``, and its pipeline stats."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    run = LocalRun(cfg)
    try:
        start = time.perf_counter()
        while time.perf_counter() - start < warmup_s:
            run.step()
        s0, w0, t0 = run.learner.samples, run.learner_wait, time.perf_counter()
        lag: list[float] = []
        while time.perf_counter() - t0 < seconds:
            record = run.step()
            if record is not None:
                lag.append(record["policy_lag_mean"])
        elapsed = time.perf_counter() - t0
        return {
            "fps": (run.learner.samples - s0) / elapsed,
            "learner_wait_frac": (run.learner_wait - w0) / elapsed,
            "policy_lag_mean": sum(lag) / max(len(lag), 1),
        }
    finally:
        run.close()
        torch.set_num_threads(threads)


REPO = Path(__file__).resolve().parent.parent
#: The optional RLlib venv (``bash benchmarks/setup_rllib.sh``); RLlib runs one env runner x
#: 64 envs, B = 64, learner in the driver process, as our ``RLLIB_LAYOUT``.
RLLIB_PYTHON = REPO / ".venv-rllib" / "bin" / "python"


def rllib(seconds: float) -> dict[str, Any] | None:
    """RLlib IMPALA on the same env and layout (``benchmarks/rllib_impala.py``, run in its own
    venv since RLlib pins another gymnasium); None when that venv is not set up, and
    ``{"error": ...}`` when it fails, so an optional extra never discards our own figures."""
    if not RLLIB_PYTHON.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rllib.json"
        cmd = [str(RLLIB_PYTHON), "-m", "benchmarks.rllib_impala", "--layout", "1x64"]
        cmd += ["--seconds", str(seconds), "--json", str(out)]
        try:
            subprocess.run(cmd, cwd=REPO, check=True, timeout=600)
            result: dict[str, Any] = json.loads(out.read_text())
        except (subprocess.SubprocessError, OSError, ValueError) as e:
            return {"error": f"{type(e).__name__}: {e}"}
        return result


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 4.0 if quick else 15.0
    layouts = []
    for layout in LAYOUTS:
        cfg = bench_config(*layout)
        actor = actor_ceiling(cfg, seconds)
        learner = learner_ceiling(cfg, seconds)
        layouts.append({"cfg": cfg, "actor": actor, "learner": learner, **end_to_end(cfg, seconds)})
    return {"layouts": layouts, "rllib": rllib(10.0 if quick else 60.0)}


TARGET_FPS = 100_000
TARGET_EFFICIENCY = 0.8


def report(result: dict[str, Any]) -> str:
    results: list[dict[str, Any]] = result["layouts"]
    cores = os.cpu_count() or 1
    cfg0: TrainConfig = results[0]["cfg"]
    lines = [
        f"UAV env, model {cfg0.model.hidden} with LayerNorm, trunk "
        f"{resolve_trunk_dtype(cfg0.model.trunk_dtype)}, hybrid head with "
        f"{cfg0.model.continuous_kind} intensities, T = {cfg0.algo.unroll_length}; learner on "
        f"{cfg0.torch_threads} thread; CPU; every sample "
        "trained once. Ceilings are each measured with the machine to themselves.",
        "",
        "| layout | actor-side ceiling | learner-side ceiling | end-to-end | efficiency | "
        "shared-core bound | policy lag |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cfg: TrainConfig = r["cfg"]
        eff = r["fps"] / min(r["actor"], r["learner"])
        shared = _shared_bound(r, cores)
        lines.append(
            f"| {_layout(cfg)} | {r['actor']:,.0f} | {r['learner']:,.0f} | "
            f"{r['fps']:,.0f} | {eff:.2f} | {shared:,.0f} | {r['policy_lag_mean']:.2f} |"
        )
    preset = next(r for r in results if _key(r["cfg"]) == PRESET_LAYOUT)
    slot32 = next(r for r in results if _key(r["cfg"]) == SLOT32_LAYOUT)
    previous = next(r for r in results if _key(r["cfg"]) == PREVIOUS_LAYOUT)
    best = max(results, key=lambda r: r["fps"])
    lines += [
        "",
        "- Efficiency = end-to-end / min(ceilings) (target >= "
        f"{TARGET_EFFICIENCY}); shared-core bound = cores / (actor cost + learner cost per "
        "sample), what both sides can do together when they share the cores.",
        f"- The UAV preset's layout ({_layout(preset['cfg'])}, what `make run` trains): "
        f"{_verdict(preset, cores)}.",
        f"- Against its B = 32 slots ({_layout(slot32['cfg'])}, the preset before session "
        f"17; {slot32['fps']:,.0f} env steps/s): **{preset['fps'] / slot32['fps']:.2f}x**.",
        f"- Against the 2 x 32 layout it trained before ({_layout(previous['cfg'])}, "
        f"{previous['fps']:,.0f} env steps/s): **{preset['fps'] / previous['fps']:.2f}x**.",
        f"- Fastest layout ({_layout(best['cfg'])}): {_verdict(best, cores)}.",
    ]
    lines += _rllib_lines(result.get("rllib"), results)
    return "\n".join(lines)


def _layout(cfg: TrainConfig) -> str:
    return (
        f"{cfg.local.num_actors} actor(s) x {cfg.local.envs_per_actor} envs, "
        f"B = {cfg.algo.batch_size}"
    )


def _shared_bound(r: dict[str, Any], cores: int) -> float:
    cfg: TrainConfig = r["cfg"]
    return float(cores / (cfg.local.num_actors / r["actor"] + cfg.torch_threads / r["learner"]))


def _verdict(r: dict[str, Any], cores: int) -> str:
    eff = r["fps"] / min(r["actor"], r["learner"])
    return (
        f"{r['fps']:,.0f} env steps/s end-to-end, >= {TARGET_FPS:,} "
        f"**{'met' if r['fps'] >= TARGET_FPS else 'missed'}** ({r['fps'] / TARGET_FPS:.2f}x); "
        f"efficiency {eff:.2f}, target {TARGET_EFFICIENCY} "
        f"**{'met' if eff >= TARGET_EFFICIENCY else 'missed'}**; "
        f"{r['fps'] / _shared_bound(r, cores):.0%} of its shared-core bound"
    )


def _rllib_lines(rl: dict[str, Any] | None, results: list[dict[str, Any]]) -> list[str]:
    if rl is None:
        return [
            "- RLlib IMPALA on the same env: not measured here; the optional venv is missing "
            "(`bash benchmarks/setup_rllib.sh`, then `make bench` measures it)."
        ]
    if "error" in rl:
        return [
            f"- RLlib IMPALA on the same env: the run failed ({rl['error']}); rerun "
            "`.venv-rllib/bin/python -m benchmarks.rllib_impala --seconds 60` to see why."
        ]
    ours = next(
        (r for r in results if _key(r["cfg"]) == RLLIB_LAYOUT), max(results, key=lambda r: r["fps"])
    )
    ratio = ours["fps"] / max(rl["trained_fps"], 1)
    return [
        "",
        f"RLlib {rl['ray']} IMPALA on the same env and layout (`benchmarks/rllib_impala.py`, "
        f"its own venv: gymnasium {rl['gymnasium']}, torch {rl['torch']}; {rl['seconds']} s "
        "timed after a warm-up, from RLlib's own counters):",
        "",
        "| system | layout | env steps/s trained | ratio (ours / RLlib) |",
        "|---|---|---:|---:|",
        f"| impala-hybrid local runtime | {_layout(ours['cfg'])} | {ours['fps']:,.0f} | "
        f"**{ratio:.1f}x** |",
        f"| RLlib IMPALA (new API stack) | {rl['layout']} | {rl['trained_fps']:,} | 1.0x |",
        "",
        f"- RLlib's timers: one `sample()` call of T steps x all envs "
        f"{rl['rllib_timers_s'].get('env_runner_sample_call', float('nan')):.3f} s, of which "
        f"env steps {rl['rllib_timers_s'].get('env_step', float('nan')) * 1e3:.1f} ms and "
        f"inference {rl['rllib_timers_s'].get('module_inference', float('nan')) * 1e3:.1f} ms "
        "per step; learner update "
        f"{rl['rllib_timers_s'].get('learner_update', float('nan')):.3f} s per batch. Cores used "
        f"by RLlib {rl['cores_used_by_rllib']}, by other work {rl['cores_used_by_other_work']}.",
        "- Same model (29-256-256 ReLU + LayerNorm, shared trunk), T = 32, B = 64, gamma, "
        "V-trace clips, gradient clip, loss weights, Adam, one torch thread. Differs: "
        + "; ".join(rl["notes"])
        + ".",
    ]
