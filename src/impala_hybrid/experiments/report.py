"""The comparison's report: ``report.md`` with tables and PNG plots, and CSV of every number,
built from a ``compare`` directory's evaluation files alone (``impala-hybrid report OUT``).

What it reports, and how (each statistic is a tested function elsewhere; this module only
gathers, tabulates and draws):

* **Equal samples** (every run at its own step budget, the preset states the budgets and why
  they differ): each run's best-on-validation checkpoint on the held-out episodes. Per
  algorithm over its training seeds: the interquartile mean (IQM) of the scalarised return
  with rliable's stratified-bootstrap 95% interval (``evaluation.aggregate``), the mean and
  std, the worst and best seed, and the ratio of the mean to the best classical policy's.
* **Per objective**, latency percentiles and CVaR per class, drops: means over seeds of the
  held-out means.
* **Sample efficiency**: env steps and training seconds until the validation curve first
  reached the best classical policy's validation return (``evaluation.curves.
  time_to_threshold``), per seed; "not reached" otherwise.
* **Training jitter** (``evaluation.curves.training_jitter``): the spread across seeds (IQR of
  the last evaluations' means) and within runs (mean std over the last evaluations).
* **Equal wall-clock**: every algorithm's validation curve read at the same training time,
  the shortest median training time among the main algorithms (the policy a user who stopped
  then would hold; validation episodes, as the held-out ones are played only by the chosen
  checkpoints).
* **Probability of improvement** of IMPALA-Hybrid over each other algorithm (rliable).
* **Pareto analysis** (``ops.pareto``, moocore): each algorithm's seeds' mean objective
  vectors and the classical policies; the non-dominated set over all of them; each
  algorithm's hypervolume with the reference point from the objectives' analytic bounds
  (``envs.bounds``) minus a 10% margin; expected utility over the Das-Dennis weight lattice.
  There an algorithm's point set is its seeds at the env's one scalarisation.
* **Weight sweeps** (a preset's ``"sweep"`` entries): an algorithm trained once per weight
  vector of a set (``compare.sweep_weights``) gives one point per weight; the same
  non-dominated set, hypervolume and expected utility over each algorithm's sweep. (One
  preference-conditioned policy against such a sweep is ``experiments/pareto_study.py``.)
* **Inference**: the deployed policy's batch-1 latency (median and p99, microseconds).

Intervals need at least 3 runs (rliable's minimum here); with fewer the tables say so.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from impala_hybrid.envs.config import CLASS_NAMES, OBJECTIVE_NAMES
from impala_hybrid.experiments.compare import (
    TRAIN_STATS,
    ComparePreset,
    Entry,
    eval_path,
    load_meta,
    run_dir,
    train_stats,
)

LEARNED = "IMPALA-Hybrid"
REPORT_FILE, RUNS_CSV, SUMMARY_CSV = "report.md", "runs.csv", "summary.csv"


# --- gathering -------------------------------------------------------------------------------


def load_records(out: Path, preset: ComparePreset) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """``(entry name -> its seeds' evaluation records, classical name -> record)`` for the
    runs that have an evaluation file."""
    from impala_hybrid.envs.heuristics import HEURISTICS

    runs: dict[str, list[dict]] = {}
    for entry in preset.entries:
        recs = []
        for s in entry.seeds_in(preset):
            if (p := eval_path(out, entry, s)).is_file():
                rec = json.loads(p.read_text())
                if "train_stats" not in rec:  # written before the field: from the run's log
                    rec["train_stats"] = train_stats(run_dir(out, entry, s))
                recs.append(rec)
        if recs:
            runs[entry.name] = recs
    classical = {}
    for name in HEURISTICS:
        p = eval_path(out, f"classical_{name}")
        if p.is_file():
            classical[name] = json.loads(p.read_text())
    return runs, classical


def _mean_train_stats(recs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """:data:`~.compare.TRAIN_STATS` averaged over an entry's seeds (empty for SB3 runs,
    which log none): the policy lag of its data in learner steps and its mean ``|log rho|``."""
    stats = [r["train_stats"] for r in recs if r.get("train_stats")]
    keys = [k for k in TRAIN_STATS if stats and all(k in x for x in stats)]
    return {k: float(np.mean([x[k] for x in stats])) for k in keys}


def _ret(rec: Mapping[str, Any]) -> float:
    return float(rec["heldout"]["return"]["mean"])


def _objectives(rec: Mapping[str, Any]) -> np.ndarray:
    return np.array([rec["heldout"]["objectives"][n]["mean"] for n in OBJECTIVE_NAMES], float)


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def run_row(rec: Mapping[str, Any]) -> dict[str, Any]:
    """Every number of one evaluation record as a flat CSV row."""
    h = rec["heldout"]
    row: dict[str, Any] = {
        "name": rec["name"],
        "family": rec["family"],
        "group": rec["group"],
        "seed": rec["seed"],
        "episodes": h["episodes"],
        "return": h["return"]["mean"],
        "return_std": h["return"]["std"],
    }
    for n in OBJECTIVE_NAMES:
        row[f"objective_{n}"] = h["objectives"][n]["mean"]
    for c in CLASS_NAMES:
        for st in ("p50", "p95", "p99", "cvar"):
            row[f"latency_{st}_{c}"] = h["latency"][c][st]
    for k, v in h["metrics"].items():
        row[k] = v
    train = rec.get("train", {})
    row["train_env_steps"] = train.get("env_steps")
    row["train_seconds"] = train.get("seconds")
    for k in TRAIN_STATS:
        row[f"train_{k}"] = (rec.get("train_stats") or {}).get(k)
    row["inference_us_median"] = rec["inference_us"]["median"]
    row["inference_us_p99"] = rec["inference_us"]["p99"]
    return row


# --- statistics -----------------------------------------------------------------------------


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def intervals(scores: Mapping[str, np.ndarray], reps: int) -> dict[str, Any]:
    """IQM intervals of ``[runs, tasks]`` scores for algorithms with enough runs."""
    from impala_hybrid.evaluation.aggregate import MIN_RUNS, aggregate

    ok = {k: v for k, v in scores.items() if v.shape[0] >= MIN_RUNS}
    if not ok:
        return {}
    return aggregate(ok, metrics=("iqm", "mean"), reps=reps)


def threshold_crossings(
    recs: Sequence[Mapping[str, Any]], threshold: float
) -> list[tuple[float, float] | None]:
    """Per run: ``(env steps, seconds)`` at which its validation curve first reached
    ``threshold``, or None."""
    from impala_hybrid.evaluation.curves import time_to_threshold

    out: list[tuple[float, float] | None] = []
    for rec in recs:
        c = rec["curve"]
        hit = time_to_threshold(
            np.array(c["return"], float),
            threshold,
            env_steps=np.array(c["env_steps"], float),
            seconds=np.array(c["wall_s"], float),
        )
        out.append(None if hit is None else (float(hit.env_steps), float(hit.seconds or 0.0)))
    return out


def jitter(recs: Sequence[Mapping[str, Any]], evals: int) -> tuple[float, float] | None:
    """``(across seeds, within runs)`` training jitter of the validation curves (None with
    fewer than 2 runs or 2 evaluations)."""
    from impala_hybrid.evaluation.curves import resample_curves, training_jitter

    curves = [r["curve"] for r in recs]
    if len(curves) < 2 or min(len(c["return"]) for c in curves) < 2:
        return None
    xs = [np.array(c["env_steps"], float) for c in curves]
    ys = [np.array(c["return"], float) for c in curves]
    _, grid = resample_curves(xs, ys, points=max(2, evals))
    j = training_jitter(grid, last_k=min(5, grid.shape[1]))
    return j.across_seeds_iqr, j.within_run_std


def value_at(curve: Mapping[str, Sequence[float]], seconds: float) -> float:
    """The validation return of the last evaluation at or before ``seconds`` of training
    (NaN before the first)."""
    wall = np.array(curve["wall_s"], float)
    idx = np.flatnonzero(wall <= seconds + 1e-9)
    return float(curve["return"][idx[-1]]) if idx.size else math.nan


def pareto_summary(
    points: Mapping[str, np.ndarray], env_kwargs: Mapping[str, Any]
) -> dict[str, dict[str, float]]:
    """Per algorithm: its points on the joint front, hypervolume, expected utility."""
    from impala_hybrid.envs.bounds import objective_bounds
    from impala_hybrid.envs.config import UAVNetConfig
    from impala_hybrid.ops.pareto import (
        expected_utility,
        hypervolume,
        non_dominated,
        reference_point,
        simplex_weights,
    )

    bounds = objective_bounds(UAVNetConfig(**env_kwargs))
    lower, upper = np.asarray(bounds.lower, float), np.asarray(bounds.upper, float)
    # On the bounds' [0, 1] scale, so that no objective's units dominate the volume.
    ref = reference_point(np.zeros_like(lower), np.ones_like(upper), margin=0.1)
    names = list(points)
    stacked = np.concatenate([points[n] for n in names])
    front = non_dominated(stacked)
    weights = simplex_weights(len(OBJECTIVE_NAMES), 3)
    out, i = {}, 0
    for n in names:
        p = points[n]
        k = p.shape[0]
        normalised = (p - lower) / (upper - lower)
        out[n] = {
            "points": k,
            "on_front": int(front[i : i + k].sum()),
            "hypervolume": hypervolume(normalised, ref),
            "expected_utility": expected_utility(normalised, weights),
        }
        i += k
    return out


def _pareto_table(par: Mapping[str, Mapping[str, float]], first: str) -> str:
    """``pareto_summary``'s numbers as a table."""
    return _table(
        [first, "points", "on the joint front", "hypervolume", "expected utility (normalised)"],
        [
            [
                n,
                str(p["points"]),
                str(p["on_front"]),
                f"{p['hypervolume']:.4g}",
                _fmt(p["expected_utility"], 4),
            ]
            for n, p in par.items()
        ],
    )


def _held_at(rec: Mapping[str, Any], weights: Any) -> dict:
    """A conditioned run's held-out record at ``weights``."""
    for x in rec["sweep"]:
        if tuple(x["weights"]) == tuple(weights):
            return dict(x["heldout"])
    raise ValueError(f"{rec['name']} seed {rec['seed']}: no held-out evaluation at {weights}")


def sweep_points(
    entries: Sequence[Entry], runs: Mapping[str, list[dict]]
) -> list[tuple[str, str, str, list[dict]]]:
    """``(algorithm, weight label, row name, held-out records over seeds)`` of every point of
    the weight sweeps: one per sweep entry, and one per weight vector of the sweep for each
    preference-conditioned entry (its one policy held at that weight)."""
    labels = {e.weights: e.name.rsplit(" ", 1)[-1] for e in entries if e.group == "sweep"}
    out = []
    for e in entries:
        recs = runs[e.name]
        if e.group == "sweep":
            out.append((e.algorithm, labels[e.weights], e.name, [r["heldout"] for r in recs]))
        elif e.group == "conditioned":
            for w, label in labels.items():
                held = [_held_at(r, w) for r in recs]
                out.append((e.algorithm, label, f"{e.name} {label}", held))
    return out


def sweep_section(
    sweep: Sequence[Entry],
    runs: Mapping[str, list[dict]],
    classical: Mapping[str, dict],
    preset: ComparePreset,
) -> tuple[list[str], dict[str, np.ndarray], dict[str, dict[str, float]]]:
    """The weight-sweep section: per algorithm, one point per weight vector it was trained on
    (the held-out mean objective vector, averaged over that weight's seeds), or, for a
    preference-conditioned run, was held at; the joint non-dominated set with the classical
    policies; hypervolume and expected utility (``pareto_summary``). Returns ``(markdown
    lines, points per algorithm, summary)``."""
    pts = sweep_points(sweep, runs)
    algs = list(dict.fromkeys(p[0] for p in pts))

    def mean_objectives(held: list[dict]) -> np.ndarray:
        return np.mean([_objectives({"heldout": h}) for h in held], axis=0)

    points = {a: np.stack([mean_objectives(p[3]) for p in pts if p[0] == a]) for a in algs}
    par = pareto_summary(
        {**points, **{n: _objectives(c)[None] for n, c in classical.items()}}, preset.env_kwargs
    )
    fixed = [e for e in sweep if e.group == "sweep"]
    weights = {e.weights: e.name.rsplit(" ", 1)[-1] for e in fixed}
    first = {a: next(e for e in sweep if e.algorithm == a) for a in algs}
    md = [
        "## Weight sweeps: a Pareto front per algorithm",
        "",
        f"Each algorithm trained once per weight vector below ({len(weights)} scalarisations: "
        "the env's default `w0` and its half-way mixture with each objective's corner), its "
        "checkpoint chosen on validation episodes scored with its own weights; a "
        "preference-conditioned run (`(conditioned)`) trained once and held at each of the "
        "weights. Seeds and env steps per point: "
        + ", ".join(f"{a}: {list(first[a].seeds_in(preset))} at {first[a].steps:,}" for a in algs)
        + ". Each policy's objective vector is measured on the held-out episodes. Hypervolume "
        "and expected utility as in the section above, over each algorithm's whole sweep; the "
        "classical policies (one point each) for scale.",
        "",
        _table(
            ["label", *OBJECTIVE_NAMES],
            [[label, *[f"{x:.4g}" for x in (w or ())]] for w, label in weights.items()],
        ),
        "",
        _pareto_table(par, "policy set"),
        "",
        "Per sweep point (held-out mean objectives; the scalarised return column is under `w0`, "
        "as for every policy in this report):",
        "",
        _table(
            ["run", "seeds", "return under w0", *OBJECTIVE_NAMES],
            [
                [
                    name,
                    str(len(held)),
                    _fmt(float(np.mean([h["return"]["mean"] for h in held]))),
                    *[_fmt(float(x), 1) for x in mean_objectives(held)],
                ]
                for _, _, name, held in pts
            ],
        ),
        "",
    ]
    return md, points, {a: par[a] for a in algs}


# --- the report -----------------------------------------------------------------------------


def _config(e: Entry) -> str:
    """An entry's config as a user would write it: the preset and ``--set`` fields, or the
    SB3Config fields."""
    if e.family == "sb3":
        return f"SB3Config `{json.dumps(dict(e.settings))}`"
    sets = " ".join(f"{k}={json.dumps(v)}" for k, v in e.settings.items())
    return f"preset `{e.preset}`" + (f" `--set {sets}`" if sets else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def write_report(out: str | Path, *, reps: int = 2000) -> Path:
    """Build ``report.md``, the plots and the CSVs in ``out`` from its evaluation files."""
    from impala_hybrid.envs.config import UAVNetConfig
    from impala_hybrid.envs.sim import UAVNetSim
    from impala_hybrid.evaluation.aggregate import MIN_RUNS, probability_of_improvement
    from impala_hybrid.experiments import plots

    out = Path(out)
    preset = load_meta(out)
    runs, classical = load_records(out, preset)
    if not runs:
        raise FileNotFoundError(f"{out}: no evaluated runs yet (run `impala-hybrid compare`)")
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    entries = {e.name: e for e in preset.entries}
    main = [n for n in runs if entries[n].group == "main"]
    ablations = [n for n in runs if entries[n].group == "ablation"]
    ranked = main + ablations  # the sweep's runs have a section of their own

    # CSV of every number, one row per run
    rows = [run_row(r) for n in runs for r in runs[n]] + [run_row(r) for r in classical.values()]
    _write_csv(out / RUNS_CSV, rows)

    scores = {n: np.array([[_ret(r)] for r in runs[n]]) for n in ranked}
    iv = intervals(scores, reps)
    best_classical = max(classical, key=lambda k: _ret(classical[k])) if classical else None
    best_c_ret = _ret(classical[best_classical]) if best_classical else math.nan
    best_c_val = (
        max(float(c["validation_return"]) for c in classical.values()) if classical else math.nan
    )

    summary: dict[str, dict[str, Any]] = {}
    md: list[str] = [f"# Comparison: preset `{preset.name}`", ""]
    md += [
        f"Regenerate: `impala-hybrid compare --preset {preset.name} --out {out}` (training, "
        f"resumable), then `impala-hybrid report {out}` (this file from the evaluation files).",
        "",
        f"Grid: {len(preset.entries)} entries x seeds {list(preset.seeds)}; validation: "
        f"{preset.val_episodes} episodes every 1/{preset.evals_per_run} of each budget "
        f"(checkpoint selection); held-out: {preset.heldout_rounds * preset.heldout_envs} "
        "episodes of the `eval` split with common random numbers (every policy meets the same "
        f"episodes). Env settings: `{dict(preset.env_kwargs) or 'defaults'}`. {preset.about}.",
        "",
    ]
    budgets = [
        [e.name, _config(e), f"{e.steps:,}", e.why] for e in preset.entries if e.group != "sweep"
    ]
    if budgets:  # (the sweeps' budgets are in their own section)
        md += [
            "## Budgets (env steps per seed) and why",
            "",
            _table(["entry", "config", "env steps", "why"], budgets),
            "",
        ]

    # 1. equal samples: held-out scalarised return
    def ret_rows(names: Sequence[str]) -> list[list[str]]:
        out_rows = []
        for n in names:
            r = np.array([_ret(x) for x in runs[n]])
            i = iv.get(n, {}).get("iqm")
            ci = (
                f"{_fmt(i.point)} [{_fmt(i.lo)}, {_fmt(i.hi)}]" if i else f"n/a (< {MIN_RUNS} runs)"
            )
            ratio = r.mean() / best_c_ret if best_classical and best_c_ret > 0 else math.nan
            sd = r.std(ddof=1) if len(r) > 1 else math.nan
            off = _mean_train_stats(runs[n])
            out_rows.append(
                [
                    n,
                    str(len(r)),
                    ci,
                    f"{_fmt(r.mean())} ± {_fmt(sd)}",
                    _fmt(r.min()),
                    _fmt(r.max()),
                    _fmt(ratio, 3),
                    _fmt(off.get("policy_lag_mean")),
                    _fmt(off.get("log_rho_abs"), 3),
                ]
            )
            summary.setdefault(
                n,
                {
                    "name": n,
                    "runs": len(r),
                    "return_iqm": i.point if i else None,
                    "return_iqm_lo": i.lo if i else None,
                    "return_iqm_hi": i.hi if i else None,
                    "return_mean": r.mean(),
                    "return_std": sd,
                    "return_min": r.min(),
                    "return_max": r.max(),
                    "ratio_to_best_classical": ratio,
                },
            )
        return out_rows

    head = [
        "algorithm",
        "seeds",
        "IQM [95% CI]",
        "mean ± std",
        "worst seed",
        "best seed",
        f"mean / {best_classical}",
        "policy lag",
        "mean \\|log rho\\|",
    ]
    if main:
        md += [
            "## Held-out scalarised return (equal samples: each at its budget)",
            "",
            _table(head, ret_rows(main)),
            "",
        ]
    if ablations:
        md += [
            "### Ablations of IMPALA-Hybrid",
            "",
            _table(head, ret_rows([LEARNED] * (LEARNED in runs) + ablations)),
            "",
        ]
    c_rows = [
        [n, _fmt(_ret(c)), _fmt(c["heldout"]["return"]["std"]), _fmt(float(c["validation_return"]))]
        for n, c in sorted(classical.items(), key=lambda kv: -_ret(kv[1]))
    ]
    md += [
        "Classical policies (one deterministic policy each; no training seeds):",
        "",
        _table(["policy", "held-out return", "std over episodes", "validation return"], c_rows),
        "",
    ]

    # 2. per objective, latency, drops
    def mean_of(n: str, f: Any) -> float:
        src = runs[n] if n in runs else [classical[n]]
        return float(np.nanmean([_nan(f(r["heldout"])) for r in src]))

    everyone = ranked + list(classical)
    md += [
        "## Per objective (held-out; mean over seeds; higher is better)",
        "",
        _table(
            ["policy", *OBJECTIVE_NAMES],
            [
                [
                    n,
                    *[
                        _fmt(mean_of(n, lambda h, o=o: h["objectives"][o]["mean"]), 2)
                        for o in OBJECTIVE_NAMES
                    ],
                ]
                for n in everyone
            ],
        ),
        "",
    ]
    lat_head = ["policy"] + [f"{st} {c[:3]}" for c in CLASS_NAMES for st in ("p95", "p99", "cvar")]
    lat_head += ["dropped emg", "dropped rtn"]
    md += [
        "## Latency (seconds; per-episode percentiles and CVaR, averaged) and drops per episode",
        "",
        _table(
            lat_head,
            [
                [
                    n,
                    *[
                        _fmt(mean_of(n, lambda h, c=c, st=st: h["latency"][c][st]), 3)
                        for c in CLASS_NAMES
                        for st in ("p95", "p99", "cvar")
                    ],
                    _fmt(mean_of(n, lambda h: h["metrics"]["dropped_emergency"]), 1),
                    _fmt(mean_of(n, lambda h: h["metrics"]["dropped_routine"]), 1),
                ]
                for n in everyone
            ],
        ),
        "",
    ]

    # 3. sample efficiency, jitter, time, inference
    eff_rows = []
    for n in ranked:
        hits = threshold_crossings(runs[n], best_c_val)
        reached = [h for h in hits if h is not None]
        steps = _fmt(float(np.median([h[0] for h in reached])), 0) if reached else "not reached"
        secs = _fmt(float(np.median([h[1] for h in reached])), 1) if reached else "not reached"
        j = jitter(runs[n], preset.evals_per_run)
        tr = np.array([r["train"]["seconds"] for r in runs[n]], float)
        inf = np.array([r["inference_us"]["median"] for r in runs[n]], float)
        eff_rows.append(
            [
                n,
                f"{len(reached)}/{len(hits)}",
                steps,
                secs,
                _fmt(j[0]) if j else "n/a",
                _fmt(j[1]) if j else "n/a",
                _fmt(float(np.median(tr)), 1),
                _fmt(float(np.median(inf)), 1),
                runs[n][0]["inference_us"]["what"],
            ]
        )
    md += (
        []
        if not eff_rows
        else [
            f"## Sample efficiency, jitter, cost (validation curves; threshold: the best "
            f"classical policy's validation return, {_fmt(best_c_val)})",
            "",
            _table(
                [
                    "algorithm",
                    "seeds reaching it",
                    "median env steps to reach",
                    "median seconds to reach",
                    "jitter across seeds (IQR)",
                    "jitter within runs (std, last evals)",
                    "median training s",
                    "inference µs (median, batch 1)",
                    "timed",
                ],
                eff_rows,
            ),
            "",
        ]
    )

    # 4. equal wall-clock
    med_time = {n: float(np.median([r["train"]["seconds"] for r in runs[n]])) for n in main}
    if med_time:
        w = min(med_time.values())
        wall_rows = []
        for n in ranked:
            v = np.array([value_at(r["curve"], w) for r in runs[n]])
            wall_rows.append(
                [
                    n,
                    _fmt(float(np.nanmean(v))) if np.isfinite(v).any() else "no evaluation yet",
                    f"{int(np.isfinite(v).sum())}/{len(v)}",
                ]
            )
        md += [
            f"## Equal wall-clock: validation return after {w:,.1f} s of training (the "
            "shortest median training time among the main algorithms)",
            "",
            _table(["algorithm", "mean validation return", "seeds evaluated by then"], wall_rows),
            "",
        ]

    # 5. probability of improvement
    poi = {}
    enough = {n: v for n, v in scores.items() if v.shape[0] >= MIN_RUNS}
    if LEARNED in enough:
        pairs = [(LEARNED, n) for n in enough if n != LEARNED]
        if pairs:
            poi = probability_of_improvement(enough, pairs, reps=max(100, reps // 2))
            md += [
                "## Probability of improvement (rliable; held-out return per seed)",
                "",
                _table(
                    ["X", "Y", "P(X > Y) [95% CI]"],
                    [
                        [x, y, f"{_fmt(p.point, 2)} [{_fmt(p.lo, 2)}, {_fmt(p.hi, 2)}]"]
                        for (x, y), p in poi.items()
                    ],
                ),
                "",
            ]

    # 6. Pareto
    points = {n: np.stack([_objectives(r) for r in runs[n]]) for n in main}
    points.update({n: _objectives(c)[None] for n, c in classical.items()})
    par = pareto_summary(points, preset.env_kwargs)
    md += [
        "## Pareto analysis (held-out mean objective vectors: one point per seed)",
        "",
        _pareto_table(par, "policy"),
        "",
        "Each objective is scaled to [0, 1] by its analytic bounds (`envs/bounds.py`). "
        "Hypervolume (moocore): reference point at the bounds' worst corner minus 10% of "
        "the range (-0.1 on every scaled objective); expected utility: mean over the 56 "
        "Das-Dennis weights (3 divisions) of the best point's weighted scaled objectives. "
        "Each algorithm here trains for the env's one scalarisation (its weight sweep, where "
        "the preset has one, is the next section); one preference-conditioned policy against "
        "a sweep is `experiments/pareto_study.py` (docs/multi_objective.md).",
        "",
    ]
    for s in summary.values():
        if s["name"] in par:
            s.update({f"pareto_{k}": v for k, v in par[s["name"]].items()})

    # 7. the weight sweeps: one front per algorithm
    sweep = [e for e in preset.entries if e.group in ("sweep", "conditioned") and e.name in runs]
    sweep_points: dict[str, np.ndarray] = {}
    if sweep:
        sweep_md, sweep_points, sweep_par = sweep_section(sweep, runs, classical, preset)
        md += sweep_md
        for alg, p in sweep_par.items():
            if alg in sweep_points:
                row = summary.setdefault(alg, {"name": alg})
                row.update({f"sweep_{k}": v for k, v in p.items()})

    # figures
    figs = []
    baselines = {
        f"{n} (classical)": float(c["validation_return"])
        for n, c in classical.items()
        if n == best_classical
    }
    curves_steps = {
        n: [
            (np.array(r["curve"]["env_steps"], float), np.array(r["curve"]["return"]))
            for r in runs[n]
        ]
        for n in main
    }
    curves_wall = {
        n: [
            (np.array(r["curve"]["wall_s"], float), np.array(r["curve"]["return"])) for r in runs[n]
        ]
        for n in main
    }
    if main:
        figs.append(
            plots.plot_learning_curves(
                curves_steps,
                fig_dir / "curves_steps.png",
                baselines=baselines,
                y_label="validation return",
            )
        )
        figs.append(
            plots.plot_learning_curves(
                curves_wall,
                fig_dir / "curves_wall.png",
                x_label="training seconds",
                baselines=baselines,
                y_label="validation return",
            )
        )
    if ablations:
        abl = [LEARNED] * (LEARNED in runs) + ablations
        figs.append(
            plots.plot_learning_curves(
                {
                    n: [
                        (np.array(r["curve"]["env_steps"], float), np.array(r["curve"]["return"]))
                        for r in runs[n]
                    ]
                    for n in abl
                },
                fig_dir / "curves_ablations.png",
                baselines=baselines,
                y_label="validation return",
            )
        )
    from impala_hybrid.evaluation.aggregate import Interval

    obj_iv: dict[str, list[Interval]] = {}
    for n in main:
        per = np.stack([_objectives(r) for r in runs[n]])
        obj_iv[n] = [
            Interval(float(per[:, k].mean()), float(per[:, k].min()), float(per[:, k].max()))
            for k in range(per.shape[1])
        ]
    for n, c in classical.items():
        v = _objectives(c)
        obj_iv[n] = [Interval(float(x), float(x), float(x)) for x in v]
    figs.append(
        plots.plot_objective_bars(
            obj_iv,
            fig_dir / "objectives.png",
            title="held-out objectives: mean over seeds, bars span the seeds",
        )
    )
    figs.append(plots.plot_pareto_projections(points, fig_dir / "pareto.png"))
    if sweep_points:
        figs.append(
            plots.plot_pareto_projections(
                {**sweep_points, **{n: _objectives(c)[None] for n, c in classical.items()}},
                fig_dir / "pareto_sweep.png",
                title="weight sweeps: one point per scalarisation (held-out means)",
            )
        )
    cells = UAVNetSim(UAVNetConfig(**preset.env_kwargs), 1).latency_cells
    lat = {}
    for n in everyone:
        src = runs[n] if n in runs else [classical[n]]
        lat[n] = {
            c: (cells[k], np.sum([r["heldout"]["latency_hist"][c] for r in src], axis=0))
            for k, c in enumerate(CLASS_NAMES)
        }
    cfg = UAVNetConfig(**preset.env_kwargs)
    figs.append(
        plots.plot_latency_cdfs(
            lat,
            fig_dir / "latency_cdf.png",
            deadlines={"emergency": cfg.deadline_emergency, "routine": cfg.deadline_routine},
        )
    )
    main_iv = {n: {"IQM return": iv[n]["iqm"]} for n in main if n in iv}
    if main_iv:
        figs.append(
            plots.plot_interval_estimates(
                main_iv, fig_dir / "intervals.png", x_label="held-out return"
            )
        )
    if poi:
        figs.append(plots.plot_probability_of_improvement(poi, fig_dir / "improvement.png"))
    md += ["## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figs] + [""]
    md += [
        "Files: `runs.csv` (every run's numbers), `summary.csv` (per algorithm), "
        "`evals/*/*.json` (per-episode data), `runs/*/seed*/` (run directories).",
        "",
    ]

    _write_csv(out / SUMMARY_CSV, list(summary.values()))
    path = out / REPORT_FILE
    path.write_text("\n".join(md))
    return path
