"""Population-based training: the config and its errors, hyperparameters applied to a config,
an exploit through our checkpoints without Ray (a trial continues the donor's learner with
its own new learning rate), and a tiny PBT on a local Ray instance (2 CPUs) with an exploit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from impala_hybrid import cli
from impala_hybrid.experiments.config_io import load_config, save_config
from impala_hybrid.experiments.pbt import (
    HYPERPARAMETERS,
    PBTConfig,
    PBTTrial,
    apply_hyperparameters,
    initial_population,
    read_history,
    save_experiment,
    search_space,
    summarize,
)
from impala_hybrid.experiments.spec import TrainConfig, cartpole, pendulum, uav_hybrid
from impala_hybrid.experiments.trainer import LAST, Trainer
from impala_hybrid.runtime.checkpoint import load_checkpoint
from impala_hybrid.validation import ConfigError
from tests.runtime import uav


def tiny(total_steps: int = 256) -> TrainConfig:
    """The runtime tests' UAV config (64 env steps per learner step), evaluated on 2
    episodes of 50 steps, no periodic evaluations or checkpoints between rounds."""
    return dataclasses.replace(
        uav(total_steps), eval_episodes=2, eval_interval=0, checkpoint_interval=10**9
    )


# --- the config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"population": 1}, "PBTConfig.population = 1 is invalid: allowed range is [2, inf)"),
        ({"quantile_fraction": 0.6}, "PBTConfig.quantile_fraction = 0.6 is invalid: allowed "
         "range is (0, 0.5]"),
        ({"lr": (2.0, 1.0)}, "PBTConfig.lr = [2.0, 1.0] is invalid: must be [lo, hi] with "
         "lo <= hi"),
        ({"lr": (0.0, 1.0)}, "PBTConfig.lr[0] = 0.0 is invalid: allowed range is (0, inf)"),
        ({"weights": (1.0,)}, "PBTConfig.weights = (1.0,) is invalid: must have exactly 2"),
        ({"runtime": "ray"}, "PBTConfig.runtime = 'ray' is invalid: must be one of ['serial', "
         "'local']"),
        ({"interval": 0}, "PBTConfig.interval = 0 is invalid: allowed range is [1, inf)"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field_and_what_is_allowed(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        PBTConfig(**changes)
    assert str(e.value).startswith(message), str(e.value)


def test_search_space_fits_the_base_config() -> None:
    base = uav_hybrid()
    space = search_space(PBTConfig(), base)
    weights = [f"weight_{n}" for n in ("goodput", "latency", "emergency", "energy", "fairness",
                                       "stability")]  # fmt: skip
    assert list(space) == ["lr", "entropy_coef", "rho_bar", *weights]
    assert space["lr"].lo == pytest.approx(3e-5) and space["lr"].hi == pytest.approx(3e-3)
    assert space["rho_bar"].lo == 1.0 and space["rho_bar"].hi == 4.0
    assert space["weight_energy"].base == pytest.approx(0.1)
    # CartPole has no objective weights: they are not searched there
    assert list(search_space(PBTConfig(), cartpole())) == ["lr", "entropy_coef", "rho_bar"]


@pytest.mark.parametrize(
    ("pbt", "base", "message"),
    [
        (PBTConfig(hinges=(0.5, 2.0)), uav_hybrid(), "PBTConfig.hinges is invalid for this "
         "config: the constraint hinges are off"),
        (PBTConfig(), pendulum(), "PBTConfig.entropy_coef is invalid for this config: "
         "algo.entropy_coef = 0"),
        (PBTConfig(rho_bar=(0.5, 2.0)), uav_hybrid(), "PBTConfig.rho_bar = [0.5, 2.0] is invalid "
         "for this config: 0.5 x algo.rho_bar = 0.5 is below algo.c_bar = 1"),
        (PBTConfig(lr=None, entropy_coef=None, rho_bar=None, weights=None), uav_hybrid(),
         "PBTConfig searches no hyperparameter"),
    ],
)  # fmt: skip
def test_search_space_errors(pbt: PBTConfig, base: TrainConfig, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        search_space(pbt, base)
    assert str(e.value).startswith(message), str(e.value)


def test_hyperparameters_rebuild_the_config() -> None:
    base = uav_hybrid()  # lr 3e-4 -> 0; entropy 0.01 (0.05 on the discrete part) -> 0.002
    hinged = dataclasses.replace(base, env_kwargs={"constraint_hinges": True})
    cfg = apply_hyperparameters(
        hinged, {"lr": 6e-4, "entropy_coef": 0.02, "rho_bar": 2.0, "weight_latency": 0.5,
                 "hinge_gini": 0.25},
    )  # fmt: skip
    assert cfg.algo.lr == 6e-4 and cfg.algo.lr_final == 0.0
    assert cfg.algo.entropy_coef == 0.02
    assert cfg.algo.entropy_coef_discrete == pytest.approx(0.1)  # in proportion
    assert cfg.algo.entropy_coef_final == pytest.approx(0.004)
    assert cfg.algo.rho_bar == 2.0 and cfg.algo.c_bar == 1.0
    assert cfg.env_kwargs["weights"] == [0.25, 0.5, 0.25, 0.10, 0.075, 0.075]
    assert cfg.env_kwargs["hinge_gini_coef"] == 0.25 and cfg.env_kwargs["constraint_hinges"]
    with_final = dataclasses.replace(base, algo=dataclasses.replace(base.algo, lr_final=1e-4))
    assert apply_hyperparameters(with_final, {"lr": 6e-4}).algo.lr_final == pytest.approx(2e-4)
    assert apply_hyperparameters(base, {}) == base
    with pytest.raises(ConfigError, match="unknown hyperparameter 'gamma'"):
        apply_hyperparameters(base, {"gamma": 0.9})
    with pytest.raises(ConfigError, match=r"UAVNetConfig.weights\[1\] = -1.0 is invalid"):
        apply_hyperparameters(base, {"weight_latency": -1.0})
    assert set(HYPERPARAMETERS) >= {"lr", "entropy_coef", "rho_bar", "hinge_power"}


def test_initial_population_starts_from_the_base_config() -> None:
    space = search_space(PBTConfig(weights=None), uav_hybrid())
    points = initial_population(space, 4, seed=3)
    assert points[0] == {"lr": 3e-4, "entropy_coef": 0.01, "rho_bar": 1.0}
    assert points == initial_population(space, 4, seed=3)  # seeded
    assert len({p["lr"] for p in points}) == 4
    for p in points[1:]:
        for name, r in space.items():
            assert r.lo <= p[name] <= r.hi


# --- an exploit without Ray ------------------------------------------------------------------


def _learner(path: Path) -> dict:
    return load_checkpoint(path)["state"]["learner"]


def test_an_exploit_continues_the_donor_with_the_new_learning_rate(tmp_path: Path) -> None:
    """Trial 1 (lr 6e-4) takes trial 0's checkpoint after a round and trains a round with
    lr 5e-3: its learner continues the donor's (samples, version) and its optimizer steps with
    the new lr; the weights are those of the donor's checkpoint trained on under the new
    config (an independent Trainer on the donor's checkpoint gives the very same). The
    history records the exploit, and the summary says who copied whom."""
    base = tiny()
    pbt = PBTConfig(population=2, interval=128, steps=256, weights=None)
    donor = PBTTrial(base, pbt, tmp_path, "t_00000", {"lr": 6e-4, "entropy_coef": 0.01})
    donor.start(None)
    _, donor_ckpt = donor.train_round()
    donor_state = _learner(donor_ckpt / "last.pt")
    assert donor_state["samples"] == 128 and donor_state["version"] == 2

    trial = PBTTrial(base, pbt, tmp_path, "t_00001", {"lr": 5e-3, "entropy_coef": 0.01})
    trial.start(None)
    trial.train_round()  # its own first round, then the exploit
    trial = PBTTrial(base, pbt, tmp_path, "t_00001", {"lr": 5e-3, "entropy_coef": 0.02})
    trial.start(donor_ckpt)
    metrics, ckpt = trial.train_round()
    assert trial.done and metrics["round"] == 2 and metrics["env_steps"] == 256
    state = _learner(ckpt / "last.pt")
    assert state["samples"] == 256 and state["version"] == 4
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [5e-3]
    assert state["scales"] == {"lr": 1.0, "entropy_coef": 1.0}

    # the same continuation, from the donor's checkpoint under the trial's config
    run_dir = tmp_path / "replay"
    (run_dir / "checkpoints").mkdir(parents=True)
    cfg = trial.cfg
    assert cfg.algo.lr == 5e-3 and cfg.algo.entropy_coef == 0.02
    replay = Trainer(cfg, run_dir, checkpoint=load_checkpoint(donor_ckpt / "last.pt"))
    assert replay.run() == 0
    want = _learner(run_dir / LAST)["model"]
    for key, value in state["model"].items():
        assert torch.equal(value, want[key]), key

    history = read_history(tmp_path)
    exploit = [r for r in history if r["event"] == "exploit"]
    assert len(exploit) == 1
    assert exploit[0]["trial"] == "trial_1" and exploit[0]["donor"] == "trial_0"
    assert exploit[0]["env_steps"] == 128 and exploit[0]["old"]["lr"] == 5e-3
    assert exploit[0]["donor_hyperparameters"]["lr"] == 6e-4 and exploit[0]["new"]["lr"] == 5e-3
    rounds = [(r["trial"], r["round"]) for r in history if r["event"] == "round"]
    assert rounds == [("trial_0", 1), ("trial_1", 1), ("trial_1", 2)]
    (summary,) = [s for s in summarize(history) if s.label == "trial_1"]
    assert summary.lineage == [
        f"at 128 copied trial_0 ({exploit[0]['donor_score']:.2f}); lr 0.0006 -> 0.005, "
        "entropy_coef 0.01 -> 0.02"
    ]
    assert math.isfinite(summary.final) and summary.env_steps == 256

    # a resumed experiment restarts the trial from the same donor checkpoint: the exploit is
    # not recorded twice, and the round after it is cut (it will be trained again)
    again = PBTTrial(base, pbt, tmp_path, "t_00001", {"lr": 5e-3, "entropy_coef": 0.02})
    again.start(donor_ckpt)
    assert not again.done
    events = [(r["trial"], r["event"], r["round"]) for r in read_history(tmp_path)]
    assert events == [("trial_0", "round", 1), ("trial_1", "round", 1),
                      ("trial_1", "exploit", 1)]  # fmt: skip


def test_a_restart_from_its_own_checkpoint_cuts_the_history(tmp_path: Path) -> None:
    """A trial restarted from its round-1 checkpoint (a killed experiment resumed) drops the
    round it wrote after it, records no exploit, and its next round is round 2 again."""
    base, pbt = tiny(), PBTConfig(population=2, interval=128, steps=384, weights=None)
    trial = PBTTrial(base, pbt, tmp_path, "t_00000", {"lr": 6e-4})
    trial.start(None)
    _, ckpt = trial.train_round()
    saved = tmp_path / "saved"
    ckpt.rename(saved)
    trial.train_round()  # round 2, then "killed" before Tune kept its checkpoint
    trial = PBTTrial(base, pbt, tmp_path, "t_00000", {"lr": 6e-4})
    trial.start(saved)
    metrics, _ = trial.train_round()
    assert metrics["round"] == 2 and metrics["env_steps"] == 256
    history = read_history(tmp_path)
    assert [(r["event"], r["round"]) for r in history] == [("round", 1), ("round", 2)]
    metrics_lines = (tmp_path / "trials" / "trial_0" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["env_steps"] for line in metrics_lines]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == 4


# --- the CLI without Ray -----------------------------------------------------------------------


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["pbt", "--preset", "cartpole", "--population", "1"]) == 2
    assert "argument --population: expected an integer >= 2" in capsys.readouterr().err
    args = ["pbt", "--preset", "cartpole", "--out", str(tmp_path / "o"), "--set",
            "pbt.lr=[3,1]"]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("impala-hybrid pbt: error: PBTConfig.lr = [3, 1] is invalid")
    assert cli.main(["pbt", "--preset", "cartpole", "--set", "pbt.lrr=[1,3]"]) == 2
    assert "unknown PBTConfig field 'pbt.lrr' (did you mean pbt.lr?)" in capsys.readouterr().err
    assert cli.main(["pbt", "--summary", str(tmp_path)]) == 2
    assert "no trial history" in capsys.readouterr().err
    assert cli.main(["pbt", "--population", "2"]) == 2
    assert "give --config FILE.yaml or --preset NAME" in capsys.readouterr().err


def test_without_ray_pbt_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    args = ["pbt", "--preset", "cartpole", "--out", str(tmp_path / "o")]
    assert cli.main(args) == 2
    assert capsys.readouterr().err == (
        "impala-hybrid pbt: error: pbt needs Ray Tune: pip install 'impala-hybrid[ray]'\n"
    )
    assert not (tmp_path / "o").exists()


def test_resume_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("ray.tune")
    save_experiment(tiny(), PBTConfig(population=2, interval=128, weights=None), tmp_path)
    assert cli.main(["pbt", "--resume", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"impala-hybrid pbt: --resume {tmp_path}: no Tune experiment in ")
    assert cli.main(["pbt", "--resume", str(tmp_path / "nothing")]) == 2
    assert "not a pbt output directory" in capsys.readouterr().err
    synch = tmp_path / "synch"
    synch.mkdir()
    save_experiment(tiny(), PBTConfig(population=2, interval=128, weights=None, synch=True), synch)
    assert cli.main(["pbt", "--resume", str(synch)]) == 1
    assert "ran with pbt.synch = true, which cannot be resumed" in capsys.readouterr().err


# --- a tiny PBT on Ray -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One Ray instance (2 CPUs) for the module's Ray tests (starting one takes ~5 s)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _tiny_pbt(tmp_path: Path, steps: int) -> list[str]:
    """``pbt`` arguments: population 2 of :func:`tiny`, rounds of 128 env steps,
    synchronous, quantile 0.5 (so the worse trial copies the better at every round)."""
    config = tmp_path / "tiny.yaml"
    save_config(tiny(), config)
    return [
        "pbt", "--config", str(config), "--population", "2", "--steps", str(steps),
        "--interval", "128", "--out", str(tmp_path / "pbt"), "--synch",
        "--set", "pbt.quantile_fraction=0.5", "pbt.weights=null",
    ]  # fmt: skip


def test_tiny_pbt_on_ray_exploits_and_summarises(
    local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At the end of round 1 the worse trial copies the better one (one always does); it
    continues the donor's round-1 learner under its new hyperparameters, and the summary
    names the exploit and the best trial's run directory."""
    out = tmp_path / "pbt"
    status = cli.main(_tiny_pbt(tmp_path, steps=256))
    printed = capsys.readouterr().out
    assert status == 0, printed
    history = read_history(out)
    exploits = [r for r in history if r["event"] == "exploit"]
    assert [e["round"] for e in exploits] == [1], history
    (e,) = exploits
    assert e["donor"] != e["trial"] and e["env_steps"] == 128
    # the donor's round-1 checkpoint, trained on for one round under the trial's new config,
    # gives exactly the trial's final weights
    trial_dir = out / "trials" / e["trial"]
    cfg = load_config(trial_dir / "config.yaml")
    assert cfg.algo.lr == pytest.approx(e["new"]["lr"])
    replay_dir = tmp_path / "replay"
    (replay_dir / "checkpoints").mkdir(parents=True)
    donor = load_checkpoint(Path(e["donor_checkpoint"]) / "last.pt")
    assert donor["state"]["learner"]["samples"] == 128
    assert Trainer(cfg, replay_dir, checkpoint=donor).run() == 0
    got, want = _learner(trial_dir / LAST), _learner(replay_dir / LAST)
    assert got["samples"] == 256 and got["version"] == 4
    for key, value in got["model"].items():
        assert torch.equal(value, want["model"][key]), key
    assert [g["lr"] for g in got["optimizer"]["param_groups"]] == [pytest.approx(e["new"]["lr"])]
    # the summary: printed at the end, and again from the output directory
    assert "PBT population" in printed and f"copied {e['donor']}" in printed
    assert "best trial: trial_" in printed and "impala-hybrid eval --run" in printed
    assert cli.main(["pbt", "--summary", str(out)]) == 0
    again = capsys.readouterr().out
    assert f"copied {e['donor']}" in again


def _interrupt_in_round_2(out: Path, sent: list[float]) -> threading.Thread:
    """A thread that sends this process SIGINT (as Ctrl-C does) once a trial has finished
    round 2, and appends the time to ``sent``. A thread, not a Tune callback: Tune pickles
    its callbacks into the experiment, and the resumed one would interrupt again."""

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            lines = [line for p in (out / "history").glob("*.jsonl")
                     for line in p.read_text().splitlines()]  # fmt: skip
            if any('"round": 2, "env_steps"' in line for line in lines):
                sent.append(time.time())
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_stopped_pbt_resumes_to_the_end(
    local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in round 2 (Tune saves the experiment and returns): pbt exits 130 saying how to
    continue; --resume restores the experiment and every trial reaches its env steps; a trial
    that had reported continues from its checkpoint (its run directory was started once, its
    history before the Ctrl-C kept), and no exploit is recorded twice. Asynchronous PBT (a
    synchronous one is refused, see test_resume_errors)."""
    from impala_hybrid.experiments.pbt import unfinished

    out = tmp_path / "pbt"
    args = [a for a in _tiny_pbt(tmp_path, steps=384) if a != "--synch"]
    sent: list[float] = []
    watcher = _interrupt_in_round_2(out, sent)
    assert cli.main(args) == 130
    watcher.join()
    printed = capsys.readouterr().out
    assert f"continue with: impala-hybrid pbt --resume {out}" in printed
    assert unfinished(out) > 0
    assert cli.main(["pbt", "--resume", str(out)]) == 0, capsys.readouterr().out
    assert unfinished(out) == 0
    history = read_history(out)
    continued = [
        trial for trial in ("trial_0", "trial_1")
        if (out / "logs" / f"{trial}.log").read_text().count("training impala_hybrid") == 1
        and any(r["trial"] == trial and r["t"] < sent[0] for r in history)
    ]  # fmt: skip
    assert continued, history
    for trial in ("trial_0", "trial_1"):
        donors = [r["donor_checkpoint"] for r in history
                  if r["trial"] == trial and r["event"] == "exploit"]  # fmt: skip
        assert len(donors) == len(set(donors)), history
