"""``impala-hybrid train``: the run directory, stop and exact resume, bad input exits 2."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from impala_hybrid import cli
from impala_hybrid.experiments.config_io import load_config
from impala_hybrid.experiments.trainer import (
    TIME_KEYS,
    Trainer,
    done_rates,
    resume_run,
    start_run,
)
from impala_hybrid.models.actor_critic import resolve_trunk_dtype
from impala_hybrid.runtime.checkpoint import load_checkpoint

# 32 env steps per learner step; 20 learner steps; log every 3; eval every 160 steps.
# Both forms of --set: several items after one flag, and the flag repeated.
TINY = [
    "--preset", "uav_hybrid",
    "--set", "num_envs=4", "algo.unroll_length=8", "algo.batch_size=4",
    "--set", "model.hidden=[16]", "--set", "total_steps=640", "--set", "log_interval=3",
    "--set", "env_kwargs.episode_steps=30", "--set", "eval_interval=160",
    "--set", "eval_episodes=3", "--set", "checkpoint_interval=96",
]  # fmt: skip


def _lines(path: Path, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def _signal_after(k: int, signum: int) -> Any:
    def hook(trainer: Trainer) -> None:
        if trainer.state.learner_steps == k:
            os.kill(os.getpid(), signum)  # the real handler path, delivered in-process

    return hook


def test_train_writes_the_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "runs" / "a"
    assert cli.main(["train", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # the first evaluation is always the best so far: its marker must reach the screen
    first_eval = next(ln for ln in printed.splitlines() if "eval @" in ln)
    assert first_eval.endswith(" [best]"), first_eval
    # the preset's trunk_dtype = auto: which precision this machine trains in is on screen
    assert f"trunk {resolve_trunk_dtype('auto')} (auto)" in " ".join(printed.split())
    # the last line states the run's own training rate: env steps over training seconds
    done = re.search(
        r"done: 640 env steps in [\d.]+ s of training \(([\d,]+) env steps/s\)",
        " ".join(printed.split()),
    )
    assert done is not None, printed
    cfg = load_config(out / "config.yaml")
    assert cfg.total_steps == 640 and cfg.model.hidden == (16,)
    assert cfg.env_kwargs == {"episode_steps": 30}
    assert list(out.glob("events.out.tfevents.*"))
    metrics = _lines(out / "metrics.jsonl")
    assert [m["env_steps"] for m in metrics] == [96, 192, 288, 384, 480, 576, 640]
    assert {"fps", "loss", "episode_return", "policy_lag_mean"} <= set(metrics[0])
    assert "fps_runtime" not in metrics[0]  # the serial runtime reports no rate of its own
    evals = _lines(out / "eval.jsonl")
    assert [e["env_steps"] for e in evals] == [160, 320, 480, 640]
    seconds = [e["wall_s"] for e in evals]  # training time so far, for curves against time
    assert seconds[0] > 0.0 and seconds == sorted(seconds)
    assert set(evals[0]["baselines"]) == {"local_only", "maxweight"}
    # each validation episode's return, for paired comparisons (``selection = paired``)
    assert len(evals[0]["episode_returns"]) == cfg.eval_episodes
    assert np.mean(evals[0]["episode_returns"]) == pytest.approx(evals[0]["return_mean"])
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert last["env_steps"] == 640 and last["runtime"] == "serial"
    assert best["trainer"]["best_return"] == max(e["return_mean"] for e in evals)
    assert last["config"]["algo"]["batch_size"] == 4
    rate = 640 / last["trainer"]["train_seconds"]
    assert abs(int(done[1].replace(",", "")) - rate) <= 0.5, (done[0], rate)
    # the validations between learner steps were timed apart from training (the done line's
    # second figure counts them; the serial runtime prints none: nothing runs meanwhile)
    assert last["trainer"]["pause_seconds"] > 0.0


def test_done_rates_bracket_the_rate_where_actors_run_during_pauses() -> None:
    assert done_rates(1000, 2.0, 3.0, "serial") == "500 env steps/s"
    assert done_rates(1000, 2.0, 0.0, "local") == "500 env steps/s"
    text = done_rates(1_000_000, 8.0, 2.0, "local")
    assert text.startswith("125,000 env steps/s; 100,000 with the 2.0 s of validations"), text
    assert text.endswith("the rate lies between")


def test_progress_lines_when_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped output has no live progress bar: with no evaluations before the end, plain
    progress lines are the only sign of life (every PLAIN_PROGRESS_S seconds; 0 here)."""
    monkeypatch.setattr("impala_hybrid.experiments.trainer.PLAIN_PROGRESS_S", 0.0)
    out = tmp_path / "quiet"
    assert cli.main(["train", *TINY, "--set", "eval_interval=0", "--out", str(out)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("train ")]
    assert lines[0].startswith("train 96/640 env steps, ") and " fps, return " in lines[0]
    assert len(lines) == 7, lines  # one per metrics.jsonl record


def test_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli.main(["train", *TINY, "--out", str(full)]) == 0
    cfg = load_config(full / "config.yaml")
    # Stop after learner step 7 (224 env steps: between log, eval and checkpoint points).
    trainer = start_run(cfg, part, on_step=_signal_after(7, signal.SIGINT))
    assert trainer.run() == 130
    assert load_checkpoint(part / "checkpoints" / "last.pt")["env_steps"] == 7 * 32
    assert cli.main(["train", "--resume", str(part)]) == 0

    for name in ("metrics.jsonl", "eval.jsonl"):
        assert _lines(part / name, TIME_KEYS) == _lines(full / name, TIME_KEYS), name
    a = load_checkpoint(full / "checkpoints" / "last.pt")["state"]
    b = load_checkpoint(part / "checkpoints" / "last.pt")["state"]
    for key, value in a["learner"]["model"].items():
        assert torch.equal(value, b["learner"]["model"][key]), key
    assert a["learner"]["optimizer"]["state"].keys() == b["learner"]["optimizer"]["state"].keys()
    for i, s in a["learner"]["optimizer"]["state"].items():
        for k, v in s.items():
            assert torch.equal(v, b["learner"]["optimizer"]["state"][i][k]), (i, k)
    assert a["actor"]["env_steps"] == b["actor"]["env_steps"] == 640
    assert torch.equal(a["actor"]["generator"], b["actor"]["generator"])


def test_a_paused_and_continued_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    """``run(until=200)`` stops at the first learner step past 200 env steps (224), evaluates
    there (the one extra eval.jsonl line) and writes last.pt; a Trainer on that checkpoint
    continues exactly as the uninterrupted run (how pbt trains in rounds)."""
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli.main(["train", *TINY, "--out", str(full)]) == 0
    cfg = load_config(full / "config.yaml")
    trainer = start_run(cfg, part)
    assert trainer.run(until=200) == 0
    assert trainer.last_eval is not None and trainer.last_eval["env_steps"] == 224
    last = load_checkpoint(part / "checkpoints" / "last.pt")
    assert last["env_steps"] == 224
    assert Trainer(cfg, part, checkpoint=last).run() == 0
    assert _lines(part / "metrics.jsonl", TIME_KEYS) == _lines(full / "metrics.jsonl", TIME_KEYS)
    evals = _lines(part / "eval.jsonl", TIME_KEYS)
    assert [e for e in evals if e["env_steps"] != 224] == _lines(full / "eval.jsonl", TIME_KEYS)
    a = load_checkpoint(full / "checkpoints" / "last.pt")["state"]["learner"]["model"]
    b = load_checkpoint(part / "checkpoints" / "last.pt")["state"]["learner"]["model"]
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_sigterm_writes_last_and_exits_143(tmp_path: Path) -> None:
    small = ["num_envs=4", "algo.batch_size=4", "algo.unroll_length=8", "model.hidden=[8]"]
    cfg = load_config(preset="cartpole", overrides=[*small, "total_steps=320", "eval_episodes=2"])
    out = tmp_path / "cp"
    assert start_run(cfg, out, on_step=_signal_after(2, signal.SIGTERM)).run() == 143
    assert load_checkpoint(out / "checkpoints" / "last.pt")["env_steps"] == 64
    assert not (out / "checkpoints" / "best.pt").exists()  # no evaluation yet
    # CartPole cannot be restored exactly: the envs restart, the run still completes.
    assert resume_run(out).run() == 0
    assert load_checkpoint(out / "checkpoints" / "last.pt")["env_steps"] == 320
    assert (out / "checkpoints" / "best.pt").exists()


def test_the_printed_continue_command_resumes_a_local_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Ctrl-C during ``train --runtime local`` (``make run``) prints a command; that exact
    command continues the run (the checkpoint's runtime is used, not the default serial)."""
    tiny = [a for a in TINY[2:] if a != "--set"]
    local = ["local.num_actors=1", "local.envs_per_actor=4", "eval_interval=0"]
    cfg = load_config(preset="uav_hybrid", overrides=[*tiny, *local])
    out = tmp_path / "local"
    trainer = start_run(cfg, out, runtime="local", on_step=_signal_after(3, signal.SIGINT))
    assert trainer.run() == 130
    printed = capsys.readouterr().out
    command = printed.split("Continue with: ")[1].split()
    assert command[:3] == ["impala-hybrid", "train", "--resume"], printed
    _fails([*command[1:], "--runtime", "serial"], capsys, "'local'", "drop --runtime")
    assert cli.main(command[1:]) == 0, capsys.readouterr().err
    assert load_checkpoint(out / "checkpoints" / "last.pt")["runtime"] == "local"
    assert load_checkpoint(out / "checkpoints" / "last.pt")["env_steps"] >= cfg.total_steps
    # the trainer's rate (per second of training) and the runtime's (per wall-clock second
    # since it started) under a name each; both once wrote to "fps", the runtime's winning
    metrics = _lines(out / "metrics.jsonl")
    assert all(m["fps"] > 0 and m["fps_runtime"] > 0 for m in metrics)


def test_resuming_a_finished_run_says_how_to_extend_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "done"
    assert cli.main(["train", *TINY, "--set", "total_steps=32", "--out", str(out)]) == 0
    capsys.readouterr()
    _fails(["train", "--resume", str(out)], capsys, "finished", "total_steps = 32", "--set")


def test_resume_with_more_steps_reports_the_change(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "a"
    assert cli.main(["train", *TINY, "--set", "total_steps=64", "--out", str(out)]) == 0
    assert cli.main(["train", "--resume", str(out), "--set", "total_steps=128"]) == 0
    assert "total_steps: 64 -> 128" in capsys.readouterr().out
    assert load_config(out / "config.yaml").total_steps == 128
    assert load_checkpoint(out / "checkpoints" / "last.pt")["env_steps"] == 128


def _readme_own_env() -> tuple[str, list[list[str]]]:
    """The README's "Train on your own environment" example: the module's source and the
    commands (each without the leading ``impala-hybrid``)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Train on your own environment")[1].split("\n## ")[0]
    source = section.split("```python\n")[1].split("```")[0]
    shell = section.split("```bash\n")[1].split("```")[0]
    return source, [shlex.split(line)[1:] for line in shell.splitlines() if line.strip()]


def test_the_readme_own_env_example_trains_and_exports(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the directory holding my_env.py, with nothing on PYTHONPATH: train and export
    work; from elsewhere, export says what is missing in one line; a wrong attribute is
    named as such (it was reported as "not a registered Gymnasium id")."""
    source, (train, export) = _readme_own_env()
    (tmp_path / "my_env.py").write_text(source)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    monkeypatch.delitem(sys.modules, "my_env", raising=False)
    monkeypatch.chdir(tmp_path)
    tiny = ["--set", "total_steps=64", "num_envs=4", "algo.batch_size=4",
            "algo.unroll_length=8", "eval_episodes=2", "model.hidden=[8]"]  # fmt: skip
    assert train[:2] == ["train", "--preset"] and "env=my_env:make" in train
    assert cli.main([*train, *tiny]) == 0, capsys.readouterr().err
    assert cli.main(export) == 0, capsys.readouterr().err
    assert (tmp_path / "runs" / "mine" / "export" / "policy.npz").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    monkeypatch.delitem(sys.modules, "my_env")
    run = str(tmp_path / "runs" / "mine")
    assert cli.main(["export", "--run", run]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot import module 'my_env'" in err, err
    monkeypatch.chdir(tmp_path)
    _fails(["train", "--preset", "cartpole", "--set", "env=my_env:nope", "--out", "x"], capsys,
           "module 'my_env' has no attribute 'nope'")  # fmt: skip


def _fails(argv: list[str], capsys: pytest.CaptureFixture, *needles: str) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("impala-hybrid train: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = str(tmp_path / "run")
    bad_field = tmp_path / "field.yaml"
    bad_field.write_text("preset: cartpole\nalgo:\n  lrr: 0.1\n")
    _fails(["train", "--config", str(bad_field), "--out", out], capsys, "algo.lrr", "algo.lr")
    bad_value = tmp_path / "value.yaml"
    bad_value.write_text("preset: cartpole\nalgo: {gamma: 1.5}\n")
    _fails(["train", "--config", str(bad_value), "--out", out], capsys, "IMPALAConfig.gamma = 1.5")
    _fails(["train", "--config", str(tmp_path / "nope.yaml"), "--out", out], capsys, "nope.yaml")
    _fails(["train", "--preset", "cartpole", "--set", "algo.lr=-1", "--out", out], capsys,
           "IMPALAConfig.lr = -1 ")  # fmt: skip
    _fails(["train", "--preset", "cartpole", "--set", "totl_steps=5", "--out", out], capsys,
           "totl_steps", "total_steps")  # fmt: skip
    _fails(["train", "--preset", "uav_hybrid", "--set", "env_kwargs.bufer=3", "--out", out],
           capsys, "env_kwargs.bufer", "env_kwargs.buffer")  # fmt: skip
    _fails(["train", "--preset", "nope", "--out", out], capsys, "unknown preset 'nope'")
    _fails(["train", "--preset", "cartpole", "--out", out, "--runtime", "mpi"], capsys, "'mpi'")
    _fails(["train", "--preset", "cartpole"], capsys, "--out")
    _fails(["train", "--out", out], capsys, "--config")
    assert not Path(out).exists()  # nothing was created by a failed start


def test_run_directory_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("x")
    _fails(["train", "--preset", "cartpole", "--out", str(used)], capsys, "not empty", "--resume")
    _fails(["train", "--resume", str(used)], capsys, "config.yaml")
    _fails(["train", "--resume", str(used), "--preset", "cartpole"], capsys, "--resume")
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--set", "total_steps=32", "--out", str(run)]) == 0
    last = run / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3])
    _fails(["train", "--resume", str(run)], capsys, str(last), "corrupt")
    torch.save({"model": {}}, last)
    _fails(["train", "--resume", str(run)], capsys, "not an impala-hybrid checkpoint")
    last.unlink()
    _fails(["train", "--resume", str(run)], capsys, "first checkpoint")


class _Scripted:
    """An evaluator that returns scripted per-episode returns, one list per evaluation."""

    uav = False

    def __init__(self, script: list[list[float]]) -> None:
        self.script = list(script)

    def baselines(self) -> dict[str, Any]:
        return {}

    def __call__(self, learner: Any) -> dict[str, Any]:
        returns = self.script.pop(0)
        return {
            "return_mean": float(np.mean(returns)),
            "return_std": float(np.std(returns, ddof=1)),
            "episode_returns": returns,
        }


@pytest.mark.parametrize(("selection", "best_at"), [("mean", 640), ("paired", 320)])
def test_selection_paired_keeps_the_peak_over_a_sure_loss(
    tmp_path: Path, selection: str, best_at: int
) -> None:
    """The same episodes every evaluation: a checkpoint 2 points below the peak on every
    episode is a sure loss (paired), though a tie within one unpaired standard error."""
    tiny = [a for a in TINY[2:] if a != "--set"]
    cfg = load_config(
        preset="uav_hybrid", overrides=[*tiny, "eval_episodes=4", f"selection={selection}"]
    )
    peak = [100.0, 0.0, 50.0, 10.0]
    script = [[90.0, -5.0, 40.0, 5.0], peak, [p - 2.0 for p in peak], [p - 1.0 for p in peak]]
    out = tmp_path / selection
    trainer = start_run(cfg, out, evaluator=_Scripted(script))  # type: ignore[arg-type]
    assert trainer.run() == 0
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["env_steps"] == best_at
    assert best["trainer"]["best_return"] == 40.0 and best["trainer"]["best_returns"] == peak
    assert [e["episode_returns"] for e in _lines(out / "eval.jsonl")] == script
