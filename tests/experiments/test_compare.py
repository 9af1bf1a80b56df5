"""``impala-hybrid compare`` and ``report`` on the tiny grid: the report's tables and plots
exist and hold the runs' own numbers; a stopped grid resumes to the same numbers."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from impala_hybrid.cli import main
from impala_hybrid.experiments import compare as cmp
from impala_hybrid.experiments.report import (
    REPORT_FILE,
    RUNS_CSV,
    SUMMARY_CSV,
    load_records,
    write_report,
)
from impala_hybrid.experiments.trainer import LAST, Trainer, start_run
from impala_hybrid.validation import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "tiny"
    assert main(["compare", "--preset", "tiny", "--out", str(out)]) == 0
    return out


def _evals(out: Path, name: str) -> list[dict]:
    slug = cmp.Entry(name, "impala", 1).slug
    return [json.loads(p.read_text()) for p in sorted((out / "evals" / slug).glob("seed*.json"))]


def test_report_tables_hold_the_runs_numbers(grid: Path) -> None:
    preset = cmp.get_preset("tiny")
    report = (grid / REPORT_FILE).read_text()
    for entry in preset.entries:
        recs = _evals(grid, entry.name)
        assert [r["seed"] for r in recs] == list(entry.seeds_in(preset))
        returns = np.array([r["heldout"]["return"]["mean"] for r in recs])
        assert np.all(np.isfinite(returns))
        # each held-out evaluation is of the run's own checkpoint, on the preset's episodes
        for r in recs:
            assert r["heldout"]["episodes"] == preset.heldout_rounds * preset.heldout_envs
            assert r["heldout"]["split"] == "eval"
            assert r["curve"]["env_steps"][-1] >= entry.steps
            assert len(r["curve"]["return"]) >= preset.evals_per_run
            assert r["inference_us"]["median"] > 0
            # how off-policy its training was: the means of the learner's own log
            stats = cmp.train_stats(cmp.run_dir(grid, entry, r["seed"]))
            assert r["train_stats"] == stats
            if entry.family == "sb3":
                assert stats is None
            else:
                rows = [
                    json.loads(x)
                    for x in (cmp.run_dir(grid, entry, r["seed"]) / "metrics.jsonl").open()
                ]
                assert stats["log_rho_abs"] == pytest.approx(
                    np.mean([x["log_rho_abs"] for x in rows])
                )
                assert stats["policy_lag_mean"] == 0.0  # serial runtime, no serial_lag
        if entry.group in ("sweep", "conditioned"):
            continue  # their own section (test_weight_sweep_fronts_are_the_runs_points)
        # the table row: mean ± std over seeds, worst and best seed, as the records say
        sd = returns.std(ddof=1)
        row = f"| {entry.name} | {len(recs)} |"
        line = next(x for x in report.splitlines() if x.startswith(row))
        assert f"{returns.mean():,.1f} ± {sd:,.1f}" in line
        assert f"| {returns.min():,.1f} | {returns.max():,.1f} |" in line
        lag = "| 0.0 |" if entry.family == "impala" else "| n/a | n/a |"
        assert lag in line  # the policy lag column (and |log rho|)
        # and the CSVs
        with (grid / SUMMARY_CSV).open() as f:
            summary = {r["name"]: r for r in csv.DictReader(f)}
        assert float(summary[entry.name]["return_mean"]) == pytest.approx(returns.mean())
        lo, hi = (
            float(summary[entry.name]["return_iqm_lo"]),
            float(summary[entry.name]["return_iqm_hi"]),
        )
        assert returns.min() - 1e-9 <= lo <= hi <= returns.max() + 1e-9
    with (grid / RUNS_CSV).open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(cmp.jobs(preset)) + 5  # + the classical policies
    for section in (
        "Held-out scalarised return",
        "Per objective",
        "Latency",
        "Sample efficiency",
        "Equal wall-clock",
        "Probability of improvement",
        "Pareto analysis",
        "Weight sweeps",
    ):
        assert f"## {section}" in report
    for name in re.findall(r"!\[[^]]*\]\(figures/([^)]+)\)", report):
        assert (grid / "figures" / name).read_bytes().startswith(PNG)
    assert len(list((grid / "figures").glob("*.png"))) == 8


def test_weight_sweep_fronts_are_the_runs_points(grid: Path) -> None:
    from impala_hybrid.experiments.config_io import load_config
    from impala_hybrid.experiments.report import _objectives, pareto_summary

    preset = cmp.get_preset("tiny")
    sweep = [e for e in preset.entries if e.group == "sweep"]
    assert len({e.weights for e in sweep}) == len(sweep) >= 2
    points = []
    for e in sweep:
        # each sweep run trained and was validated on its own weights
        cfg = load_config(cmp.run_dir(grid, e, 0) / "config.yaml")
        assert tuple(cfg.env_kwargs["weights"]) == pytest.approx(e.weights)
        (rec,) = _evals(grid, e.name)
        points.append(_objectives(rec))
    par = pareto_summary({"IMPALA-Hybrid": np.stack(points)}, preset.env_kwargs)["IMPALA-Hybrid"]
    report = (grid / REPORT_FILE).read_text()
    section = report.split("## Weight sweeps")[1].split("\n## ")[0]
    row = next(x for x in section.splitlines() if x.startswith("| IMPALA-Hybrid |"))
    assert f"| {len(sweep)} |" in row and f"{par['hypervolume']:.4g}" in row
    with (grid / SUMMARY_CSV).open() as f:
        summary = {r["name"]: r for r in csv.DictReader(f)}
    assert float(summary["IMPALA-Hybrid"]["sweep_hypervolume"]) == pytest.approx(par["hypervolume"])
    # the conditioned run: one preference-conditioned policy, held at each weight of the sweep
    (cond,) = [e for e in preset.entries if e.group == "conditioned"]
    assert cond.steps == len(sweep) * sweep[0].steps  # the env steps of the whole sweep
    cfg = load_config(cmp.run_dir(grid, cond, 0) / "config.yaml")
    assert cfg.preference == "dirichlet"
    (rec,) = _evals(grid, cond.name)
    assert [tuple(x["weights"]) for x in rec["sweep"]] == [e.weights for e in sweep]
    assert "with the weight input" in rec["inference_us"]["what"]
    cpoints = np.stack([_objectives(x) for x in rec["sweep"]])
    cpar = pareto_summary({"c": cpoints}, preset.env_kwargs)["c"]
    row = next(x for x in section.splitlines() if x.startswith(f"| {cond.algorithm} |"))
    assert f"| {len(sweep)} |" in row and f"{cpar['hypervolume']:.4g}" in row
    # an SB3 sweep point gets its weights too
    ppo = dataclasses.replace(preset.entries[1], group="sweep", algorithm="PPO", weights=(1.0,) * 6)
    assert cmp.sb3_config(preset, ppo, 0).env_kwargs["weights"] == [1.0] * 6


def test_classical_policies_are_evaluated_on_the_same_episodes(grid: Path) -> None:
    from impala_hybrid.envs.heuristics import HEURISTICS

    for name in HEURISTICS:
        rec = json.loads(cmp.eval_path(grid, f"classical_{name}").read_text())
        assert rec["heldout"]["seed"] == 0 and rec["heldout"]["split"] == "eval"
        assert np.isfinite(rec["validation_return"])


def test_report_rebuilds_without_training(grid: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / cmp.META_FILE).write_bytes((grid / cmp.META_FILE).read_bytes())
    for p in (grid / "evals").rglob("*.json"):  # the evaluation files alone suffice
        target = copy / p.relative_to(grid)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(p.read_bytes())
    assert main(["report", str(copy), "--reps", "500"]) == 0
    ours = (copy / REPORT_FILE).read_text()
    theirs = (grid / REPORT_FILE).read_text().replace(str(grid), str(copy))
    # the tables without bootstrap intervals are identical (intervals depend on --reps)
    strip = re.compile(r"\[[-\d., ]+\]")
    assert strip.sub("", ours) == strip.sub("", theirs)
    # an evaluation file written before train_stats existed gets them from the run's log
    preset = cmp.get_preset("tiny")
    entry = preset.entries[0]
    old = json.loads(cmp.eval_path(grid, entry, 0).read_text())
    del old["train_stats"]
    cmp.eval_path(copy, entry, 0).write_text(json.dumps(old))
    recs = load_records(copy, preset)[0][entry.name]
    assert recs[0]["train_stats"] is None  # the copy has no run directories
    shutil.copytree(cmp.run_dir(grid, entry, 0), cmp.run_dir(copy, entry, 0))
    recs = load_records(copy, preset)[0][entry.name]
    assert recs[0]["train_stats"] == cmp.train_stats(cmp.run_dir(grid, entry, 0))


def test_a_stopped_grid_resumes_to_the_same_numbers(grid: Path, tmp_path: Path) -> None:
    preset = cmp.get_preset("tiny")
    out = tmp_path / "resumed"
    entry = preset.entries[0]
    assert entry.family == "impala"
    # seed 0's IMPALA run is stopped halfway by Ctrl-C (last.pt written) before the grid runs
    run = cmp.run_dir(out, entry, 0)
    trainer = start_run(cmp.impala_config(preset, entry, 0), run, runtime="serial")

    def ctrl_c(t: Trainer) -> None:
        if t.runtime.env_steps >= entry.steps // 2:
            t.request_stop()

    trainer.on_step = ctrl_c
    assert trainer.run() == 130
    assert not cmp.trained(out, preset, entry, 0)
    assert cmp.compare(preset, out) == 0
    first = json.loads(cmp.eval_path(grid, entry, 0).read_text())
    again = json.loads(cmp.eval_path(out, entry, 0).read_text())
    assert again["curve"]["env_steps"] == first["curve"]["env_steps"]
    assert again["curve"]["return"] == pytest.approx(first["curve"]["return"])
    assert again["heldout"]["return"] == pytest.approx(first["heldout"]["return"])
    # a finished grid is not trained again: a second call changes no evaluation file
    stamps = {p: p.stat().st_mtime_ns for p in (out / "evals").rglob("*.json")}
    assert cmp.compare(preset, out) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "evals").rglob("*.json")} == stamps


def test_errors_name_the_problem(grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "not a comparison directory" in capsys.readouterr().err
    other = dataclasses.replace(cmp.get_preset("tiny"), seeds=(0, 1, 2, 3))
    with pytest.raises(ConfigError, match="another grid"):
        cmp.compare(other, grid)
    # a grid may grow (new entries are trained, finished ones kept), not change an entry
    preset = cmp.get_preset("tiny")
    grown = dataclasses.replace(preset, entries=(*preset.entries, cmp.Entry("PPO 2", "sb3", 9)))
    cmp._check_same_grid(json.loads((grid / cmp.META_FILE).read_text())["preset"],
                         dataclasses.asdict(grown), grid)  # fmt: skip
    changed = dataclasses.replace(preset.entries[0], steps=7_000)
    with pytest.raises(ConfigError, match="entry 'IMPALA-Hybrid'"):
        cmp.compare(dataclasses.replace(preset, entries=(changed, *preset.entries[1:])), grid)
    with pytest.raises(ConfigError, match="sweep entry needs algorithm and weights"):
        cmp.Entry("x", "impala", 10, group="sweep")
    with pytest.raises(ConfigError, match="compare preset 'huge' is invalid"):
        cmp.get_preset("huge")
    with pytest.raises(ConfigError, match=r"Entry\.steps = 0"):
        cmp.Entry("x", "impala", 0)
    with pytest.raises(ConfigError, match=r"Entry\.family"):
        cmp.Entry("x", "rllib", 10)


def test_presets_state_their_grids() -> None:
    for name in ("quick", "full"):
        p = cmp.get_preset(name)
        names = [e.name for e in p.entries]
        for algo in (
            "IMPALA-Hybrid",
            "IMPALA-Hybrid (gated)",
            "IMPALA-discrete",
            "PPO",
            "A2C",
            "SAC",
            "TD3",
        ):
            assert algo in names
        assert len(p.seeds) >= 3
        assert all(e.why for e in p.entries if e.group == "main")
    full = cmp.get_preset("full")
    abl = {e.name: e for e in full.entries if e.group == "ablation"}
    assert len(abl) == 11
    # the ratio ablations act with policy lag (without it every ratio is 1 and clipping at
    # or above 1 never binds), against a lagged base of their own
    lag = {"serial_lag": cmp.ABLATION_LAG}
    base = abl[f"abl: lag {cmp.ABLATION_LAG}"]
    assert dict(base.settings) == {**cmp.SERIAL_BATCH, **lag}
    ratio = [e for e in abl.values() if "rho" in str(e.settings) or "ratio_mode" in str(e.settings)]
    # (2, 1), (0.5, 0.5) twice, unclipped, per-component, IMPALA's gradient unclipped
    assert len(ratio) == 6
    ratio.append(abl[f"abl: lag {cmp.ABLATION_LAG}, IMPALA pg"])
    assert ratio[-1].settings["algo.pg_clip_eps"] is None
    for e in ratio:
        if e.name != "abl: rho,c = 0.5,0.5":  # kept without lag: a shorter trace there
            assert e.settings["serial_lag"] == cmp.ABLATION_LAG, e.name
    # every IMPALA run on the UAV preset keeps the serial batch its rows were measured with
    on_preset = [e for e in full.entries if e.family == "impala" and e.preset == "uav_hybrid"]
    assert len(on_preset) > 20
    assert all(e.settings["algo.batch_size"] == 32 for e in on_preset)
    swept = [e for e in full.entries if e.group == "sweep"]
    assert {e.algorithm for e in swept} == set(cmp.SWEPT)
    assert len(swept) == len(cmp.SWEPT) * len(cmp.sweep_weights({}))


def test_report_of_a_partial_grid_says_what_it_cannot_estimate(grid: Path, tmp_path: Path) -> None:
    part = tmp_path / "partial"
    part.mkdir()
    (part / cmp.META_FILE).write_bytes((grid / cmp.META_FILE).read_bytes())
    for p in (grid / "evals").rglob("*.json"):
        if p.parent.name == "IMPALA-Hybrid" and p.name == "seed2.json":
            continue  # a grid stopped before IMPALA-Hybrid's third seed was evaluated
        target = part / p.relative_to(grid)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(p.read_bytes())
    report = write_report(part, reps=200).read_text()
    row = next(x for x in report.splitlines() if x.startswith("| IMPALA-Hybrid | 2 |"))
    assert "n/a (< 3 runs)" in row
    assert "## Probability of improvement" not in report  # IMPALA-Hybrid needs 3 runs
    assert next(x for x in report.splitlines() if x.startswith("| PPO | 3 |"))


def test_a_grid_of_sweeps_alone_gets_its_report(grid: Path, tmp_path: Path) -> None:
    """The ``sweeps`` preset's shape: sweep entries only, no main algorithm."""
    tiny = cmp.get_preset("tiny")
    only = dataclasses.replace(tiny, entries=tuple(e for e in tiny.entries if e.group == "sweep"))
    out = tmp_path / "sweeps"
    out.mkdir()
    (out / cmp.META_FILE).write_text(json.dumps({"preset": dataclasses.asdict(only)}))
    for e in only.entries:
        src = cmp.eval_path(grid, e, 0)
        cmp.eval_path(out, e, 0).parent.mkdir(parents=True)
        cmp.eval_path(out, e, 0).write_bytes(src.read_bytes())
    for p in (grid / "evals").glob("classical_*/result.json"):
        (out / p.relative_to(grid)).parent.mkdir(parents=True)
        (out / p.relative_to(grid)).write_bytes(p.read_bytes())
    report = write_report(out, reps=200).read_text()
    assert "## Weight sweeps" in report and "| IMPALA-Hybrid | 3 |" in report
    assert "## Held-out scalarised return" not in report and "## Budgets" not in report
    for name in re.findall(r"!\[[^]]*\]\(figures/([^)]+)\)", report):
        assert (out / "figures" / name).read_bytes().startswith(PNG)
    rest = cmp.get_preset("sweeps").entries
    assert rest and all(e.group == "sweep" and e.algorithm not in cmp.SWEPT for e in rest)


def test_parallel_runs_make_the_serial_numbers(grid: Path, tmp_path: Path) -> None:
    """``parallel=2``: each run in a process of its own, the same numbers as in-process."""
    tiny = cmp.get_preset("tiny")
    sub = dataclasses.replace(tiny, entries=tiny.entries[:2], seeds=(0, 1))  # IMPALA, PPO
    assert [e.family for e in sub.entries] == ["impala", "sb3"]
    out = tmp_path / "parallel"
    assert cmp.compare(sub, out, parallel=2) == 0
    for entry in sub.entries:
        for seed in sub.seeds:
            serial = json.loads(cmp.eval_path(grid, entry, seed).read_text())
            par = json.loads(cmp.eval_path(out, entry, seed).read_text())
            assert par["curve"]["env_steps"] == serial["curve"]["env_steps"]
            assert par["curve"]["return"] == pytest.approx(serial["curve"]["return"])
            assert par["heldout"]["return"] == pytest.approx(serial["heldout"]["return"])
    assert (out / REPORT_FILE).is_file()
    with pytest.raises(ConfigError, match=r"parallel = 0 is invalid"):
        cmp.compare(sub, out, parallel=0)


def test_ctrl_c_stops_parallel_runs_resumably(tmp_path: Path) -> None:
    """SIGINT to ``compare(parallel=2)`` reaches each running job once: each writes its
    ``last.pt`` and the grid returns 130; the same call again finishes the grid."""
    tiny = cmp.get_preset("tiny")
    long = dataclasses.replace(tiny.entries[0], name="long", steps=24_000)
    preset = dataclasses.replace(tiny, entries=(long,), seeds=(0, 1))
    out = tmp_path / "stopped"
    logs = [cmp.run_dir(out, long, s).with_suffix(".log") for s in preset.seeds]

    def interrupt() -> None:  # once both runs have written a validation evaluation
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(p.is_file() and "eval @" in p.read_text() for p in logs):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    previous = signal.signal(signal.SIGINT, lambda *_: None)  # a late signal does nothing
    try:
        sender = threading.Thread(target=interrupt)
        sender.start()
        code = cmp.compare(preset, out, parallel=2)
        sender.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130
    for s in preset.seeds:
        assert (cmp.run_dir(out, long, s) / LAST).is_file()
        assert not cmp.trained(out, preset, long, s)
    assert cmp.compare(preset, out, parallel=2) == 0
    assert all(cmp.trained(out, preset, long, s) for s in preset.seeds)
    for p in logs:  # one signal each: a stop with last.pt, not an abort
        assert p.read_text().count("SIGINT: stopped at") == 1
