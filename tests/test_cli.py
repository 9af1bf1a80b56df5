"""CLI: ``eval`` and ``tune-heuristics`` in-process; bad input exits 2 with a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impala_hybrid import cli
from impala_hybrid.envs.config import OBJECTIVE_NAMES

FAST = ["--episodes", "1", "--num-envs", "4", "--seed", "0", "--set", "episode_steps=50"]


def test_eval_writes_documented_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sub" / "eval.json"
    argv = ["eval", "--policy", "local_only,maxweight", *FAST, "--set", "buffer=300"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "maxweight" in printed and "E p95/p99" in printed
    data = json.loads(out.read_text())
    assert data["overrides"] == {"episode_steps": 50, "buffer": 300}
    assert list(data["results"]) == ["local_only", "maxweight"]
    for res in data["results"].values():
        assert res["episodes"] == 4 and res["episode_steps"] == 50
        assert set(res["return"]) == {"mean", "std"}
        assert list(res["objectives"]) == list(OBJECTIVE_NAMES)
        assert all(set(v) == {"mean", "std"} for v in res["objectives"].values())
        for cls in ("emergency", "routine"):
            assert {"p50", "p95", "p99", "cvar"} <= set(res["latency"][cls])
        assert "dropped_emergency" in res["metrics"]


def test_eval_all_policies(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["eval", "--policy", "all", *FAST]) == 0
    printed = capsys.readouterr().out
    for name in ("local_only", "threshold", "drift_plus_penalty", "shortest_expected_delay"):
        assert name in printed


def test_tune_heuristics(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "tune.json"
    argv = ["tune-heuristics", "--policy", "maxweight", "--max-candidates", "2", *FAST]
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert "best maxweight: spill=" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert len(data["results"]["maxweight"]["candidates"]) == 2


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["eval", "--policy", "nope"], "unknown policy 'nope'"),
        (["eval", "--episodes", "0"], "--episodes"),
        (["eval", "--num-envs", "x"], "--num-envs"),
        (["eval", "--set", "no_such_field=1"], "no_such_field"),
        (["eval", "--set", "buffr=1"], "did you mean buffer"),
        (["eval", "--set", "dt=-1"], "UAVNetConfig.dt = -1"),
        (["eval", "--set", "dt"], "field=value"),
        (["eval", "--set", "routine_base_rates=[1, 2]"], "routine_base_rates"),
        (["tune-heuristics", "--policy", "local_only"], "unknown policy 'local_only'"),
        (["no-such-command"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture
) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert captured.out == ""


def test_set_parses_yaml_scalars() -> None:
    items = ["dt=0.05", "collapse_occupancy=null", "p_max_l=1e1", "constraint_hinges=false"]
    got = cli.parse_overrides([*items, "routine_base_rates=[1, 2, 3, 4]"])
    assert got == {
        "dt": 0.05,
        "collapse_occupancy": None,
        "p_max_l": 10.0,
        "constraint_hinges": False,
        "routine_base_rates": [1, 2, 3, 4],
    }


def test_train_help_lists_the_presets_and_runtimes(capsys: pytest.CaptureFixture) -> None:
    """The names are spelled out in cli.py (building the parser must not import torch); they
    must stay the real ones."""
    from impala_hybrid.experiments.spec import PRESETS
    from impala_hybrid.experiments.trainer import RUNTIMES

    assert (tuple(PRESETS), tuple(RUNTIMES)) == (cli.PRESET_NAMES, cli.RUNTIME_NAMES)
    assert cli.main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "RUNTIMES" not in text and "pendulum, ..." not in text
    for name in (*PRESETS, *RUNTIMES):
        assert name in text, name


def test_eval_shows_which_policy_it_is_evaluating(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal sees a spinner naming the policy under evaluation (eval can take a while
    before the table appears)."""
    from rich.status import Status

    shown: list[str] = []
    update = Status.update

    def spy(self: Status, status: object = None, **kwargs: object) -> None:
        shown.append(str(status))
        update(self, status, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Status, "update", spy)
    assert cli.main(["eval", "--policy", "local_only,maxweight", *FAST]) == 0
    assert shown == ["evaluating local_only (1/2)", "evaluating maxweight (2/2)"]


@pytest.mark.parametrize(
    ("command", "needle"),
    [("eval", "common random numbers"), ("tune-heuristics", "training seeds")],
)
def test_every_command_describes_itself(
    command: str, needle: str, capsys: pytest.CaptureFixture
) -> None:
    assert cli.main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    description = text.split("options:")[0].split("]")[-1]  # between usage and options
    assert needle in description, text


def test_compare_jobs_reaches_the_grid_and_is_checked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """``compare --jobs N`` runs the grid N runs at a time; N < 1 is refused by name."""
    from impala_hybrid.experiments import compare as cmp

    seen: dict[str, object] = {}

    def fake(preset: object, out: object, *, console: object = None, parallel: int = 1) -> int:
        seen.update(preset=preset, parallel=parallel)
        return 0

    monkeypatch.setattr(cmp, "compare", fake)
    assert cli.main(["compare", "--preset", "tiny", "--out", str(tmp_path), "--jobs", "2"]) == 0
    assert seen["parallel"] == 2 and seen["preset"] == cmp.get_preset("tiny")
    assert cli.main(["compare", "--preset", "tiny", "--out", str(tmp_path), "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err
