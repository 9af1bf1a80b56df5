"""``make bench``: run the benchmarks on one core and record them in ``docs/benchmarks.md``.

Each benchmark owns a section of the document between ``<!-- BEGIN name -->`` and
``<!-- END name -->`` markers; a run replaces only the sections it measured, so figures taken
elsewhere (a lent GPU, a bigger machine) stay. Every section states the command, the machine
and the date it was measured on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
from pathlib import Path

SECTIONS = ("env", "inference", "pipeline")

HEADER = """# Benchmarks

Figures from `make bench` (`python -m benchmarks.run`). Each section says the command, the
machine and the date it was measured. Speed targets live here, not in timed tests.
"""


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import numba
    import numpy

    return (
        f"{cpu}, {os.cpu_count()} logical cores (pinned to 1), Python "
        f"{platform.python_version()}, NumPy {numpy.__version__}, Numba {numba.__version__}"
    )


ALL_CPUS = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def pin_one_core() -> None:
    """Measure per-core figures: one CPU, one thread everywhere."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"


def replace_section(doc: str, name: str, body: str) -> str:
    block = f"<!-- BEGIN {name} -->\n{body.rstrip()}\n<!-- END {name} -->"
    pattern = re.compile(rf"<!-- BEGIN {name} -->.*?<!-- END {name} -->", re.S)
    if pattern.search(doc):
        return pattern.sub(lambda _: block, doc)
    return doc.rstrip() + "\n\n" + block + "\n"


def env_section(quick: bool) -> str:
    from benchmarks import env_speed

    rows, single_us, rng_ns = env_speed.run(quick=quick)
    cmd = "make bench" if not quick else "python -m benchmarks.run --quick"
    return (
        "## Simulator: env steps/s on one core\n\n"
        f"Command: `{cmd}`. Machine: {machine()}. Date: {dt.date.today().isoformat()}.\n\n"
        + env_speed.report(rows, single_us, rng_ns)
    )


def inference_section(quick: bool) -> str:
    from benchmarks import inference

    rows, load = inference.run(quick=quick)
    cmd = "python -m benchmarks.run --only inference" + (" --quick" if quick else "")
    return (
        "## Inference: batch-1 decision latency on one core\n\n"
        f"Command: `{cmd}` (a section of `make bench`). Machine: {machine()}, "
        f"{inference.runtimes()}. Date: {dt.date.today().isoformat()}.\n\n"
        + inference.report(rows, load)
    )


def pipeline_section(quick: bool) -> str:
    """Uses every core this process may use: actors and learner run side by side."""
    from benchmarks import pipeline

    pinned = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if pinned is not None:
        os.sched_setaffinity(0, ALL_CPUS)
    try:
        result = pipeline.run(quick=quick)
    finally:
        if pinned is not None:
            os.sched_setaffinity(0, pinned)
    cmd = "python -m benchmarks.run --only pipeline" + (" --quick" if quick else "")
    cpu = machine().replace("(pinned to 1)", "(all used)")
    return (
        "## Training pipeline: end-to-end env steps/s and efficiency\n\n"
        f"Command: `{cmd}` (a section of `make bench`). Machine: {cpu}. "
        f"Date: {dt.date.today().isoformat()}.\n\n" + pipeline.report(result)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="markdown file to update")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="sections to run")
    parser.add_argument("--quick", action="store_true", help="short measurements (smoke run)")
    args = parser.parse_args(argv)
    pin_one_core()
    sections = {"env": env_section, "inference": inference_section, "pipeline": pipeline_section}
    doc = args.out.read_text() if args.out and args.out.exists() else HEADER
    for name in args.only or SECTIONS:
        body = sections[name](args.quick)
        print(body, flush=True)
        doc = replace_section(doc, name, body)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(doc)
        print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
