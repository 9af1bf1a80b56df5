"""Local vs Ray runtime, 1 and 2 actors (or 1 and 2 learners): env steps/s, as ratios.

Each layout is a real ``impala-hybrid train`` run of the ``uav_hybrid`` preset (the same
commands a user types, printed with the table), one after the other so they share the
machine's state. Speed is taken from ``metrics.jsonl``: env steps over training seconds
from the first record past a quarter of the budget to the last, so actor start-up (and Ray's)
is left out; the whole-run figure is the last record's ``fps``. On a shared machine the
``other work`` column says how many cores other processes took during each run (from
``/proc``): figures next to other work are lower than the machine's. The table goes to stdout
(``docs/scaling.md`` holds a copy with its machine and date)::

    python -m benchmarks.scaling --steps 1000000
    python -m benchmarks.scaling --steps 500000 --learners   # Ray, 1 vs 2 synchronous learners
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.rllib_impala import tree_cpu_seconds

#: (runtime, actors, envs per actor, learners); the first is the reference of the ratios.
LAYOUTS = (
    ("local", 1, 32, 1), ("ray", 1, 32, 1), ("local", 2, 32, 1), ("ray", 2, 32, 1),
    ("local", 2, 128, 1), ("ray", 2, 128, 1),
)  # fmt: skip
#: ``--learners``: one Ray actor feeding 1 or 2 synchronous learners (``ray.learners``).
LEARNER_LAYOUTS = (("ray", 1, 32, 1), ("ray", 1, 32, 2))


def command(
    runtime: str, actors: int, envs: int, steps: int, out: Path, learners: int = 1
) -> list[str]:
    return [
        "impala-hybrid", "train", "--preset", "uav_hybrid", "--runtime", runtime,
        "--out", str(out), "--set", f"total_steps={steps}", "eval_interval=0",
        "eval_episodes=1", f"{runtime}.num_actors={actors}", f"{runtime}.envs_per_actor={envs}",
    ] + ([f"ray.learners={learners}"] if learners > 1 else [])  # fmt: skip


def summarise(metrics: list[dict[str, Any]], steps: int) -> dict[str, float]:
    """Steady-state and whole-run env steps/s, policy lag and Ray's overhead of one run."""
    first = next(m for m in metrics if m["env_steps"] >= steps / 4)
    last = metrics[-1]
    steady = [m for m in metrics if m["env_steps"] > first["env_steps"]]
    return {
        "fps": (last["env_steps"] - first["env_steps"]) / (last["wall_s"] - first["wall_s"]),
        "fps_run": last["fps_runtime"],
        "lag": sum(m["policy_lag_mean"] for m in steady) / len(steady),
        "wait": last["learner_wait_frac"],
        "overhead": last.get("ray_overhead_frac", float("nan")),
        "call_ms": last.get("ray_call_overhead_ms", float("nan")),
    }


def report(rows: list[tuple[str, dict[str, float]]]) -> str:
    ref = rows[0][1]["fps"]
    lines = [
        "| command | env steps/s (steady) | ratio | whole run | policy lag | learner wait "
        "| Ray overhead (per call) | other work |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cmd, r in rows:
        ray = "-" if r["overhead"] != r["overhead"] else (
            f"{100 * r['overhead']:.0f}% ({r['call_ms']:.1f} ms)"
        )  # fmt: skip
        lines.append(
            f"| `{cmd}` | {r['fps']:,.0f} | {r['fps'] / ref:.2f}x | {r['fps_run']:,.0f} | "
            f"{r['lag']:.1f} | {100 * r['wait']:.0f}% | {ray} | {r['other_cores']:.2f} cores |"
        )
    return "\n".join(lines)


def _watch(proc: subprocess.Popen[bytes], every_s: float = 0.5) -> float:
    """Wait for ``proc``; the CPU seconds its process tree used (Ray's daemons and actors
    included), sampled every ``every_s`` from /proc while it runs: a process that ended is
    counted at its last sample."""
    seen: dict[int, float] = {}
    while proc.poll() is None:
        tree, _ = tree_cpu_seconds()
        seen.update({pid: cpu for pid, cpu in tree.items() if pid != os.getpid()})
        time.sleep(every_s)
    return sum(seen.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1_000_000, help="env steps per run")
    p.add_argument("--learners", action="store_true", help="Ray, 1 vs 2 learners instead")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        layouts = LEARNER_LAYOUTS if args.learners else LAYOUTS
        for i, (runtime, actors, envs, learners) in enumerate(layouts):
            out = Path(tmp) / f"run{i}"
            cmd = command(runtime, actors, envs, args.steps, out, learners)
            exe = str(Path(sys.executable).with_name(cmd[0]))
            log = Path(tmp) / f"run{i}.log"
            t0, all0 = time.perf_counter(), tree_cpu_seconds()[1]
            with open(log, "wb") as f:
                proc = subprocess.Popen([exe, *cmd[1:]], stdout=f, stderr=subprocess.STDOUT)
                ours = _watch(proc)
            elapsed, all1 = time.perf_counter() - t0, tree_cpu_seconds()[1]
            if proc.returncode != 0:
                raise RuntimeError(f"{shlex.join(cmd)} failed:\n{log.read_text()[-2000:]}")
            lines = (out / "metrics.jsonl").read_text().splitlines()
            r = summarise([json.loads(line) for line in lines], args.steps)
            r["other_cores"] = max(0.0, all1 - all0 - ours) / elapsed
            print(f"{runtime} x {actors} x {envs} x {learners} learners: {r['fps']:,.0f} env "
                  f"steps/s ({elapsed:.0f} s, other work {r['other_cores']:.2f} cores)",
                  file=sys.stderr)  # fmt: skip
            shown = shlex.join(cmd).replace(str(out), "runs/scale")
            rows.append((shown, r))
    print(report(rows))


if __name__ == "__main__":
    main()
