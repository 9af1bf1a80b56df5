"""The Ray runtime on a local Ray instance (2 CPUs): same first update as serial, a killed
actor re-created, the CLI path with checkpoints, metrics and resume, clear errors.

One Ray instance serves the module (starting one takes ~5 s); runs that find Ray initialised
join it and leave it running.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from impala_hybrid import cli
from impala_hybrid.algos.impala.learner import Learner
from impala_hybrid.experiments.spec import RayConfig, TrainConfig
from impala_hybrid.runtime import ray as ray_runtime
from impala_hybrid.runtime.checkpoint import load_checkpoint
from impala_hybrid.runtime.ray import (
    RayRun,
    RemoteLearner,
    RolloutWorker,
    learner_layout,
    train_ray,
)
from impala_hybrid.runtime.serial import train_serial
from impala_hybrid.validation import ConfigError
from tests.runtime import (
    assert_column_halves,
    assert_weights_close,
    take_two_batches,
    train_with_a_kill,
)
from tests.runtime import uav as uav_local


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def uav(total_steps: int, **layout: object) -> TrainConfig:
    """The local runtime tests' config with ``RayConfig(**layout)``."""
    return dataclasses.replace(uav_local(total_steps), ray=RayConfig(**layout))  # type: ignore[arg-type]


def test_first_update_matches_serial_runtime() -> None:
    """One Ray actor with the serial runtime's envs and seed sends the same first unroll, so
    the learner's first update (every metric) is identical: the runtime only moves data."""
    cfg = uav(total_steps=64, num_actors=1, envs_per_actor=8)
    serial = train_serial(cfg).history[0]
    result = train_ray(cfg)
    assert result.learner.version == 1
    got = result.history[0]
    for key, value in serial.items():
        if key != "episode_return":
            assert got[key] == value, key


def test_unroll_wider_than_batch_is_split_into_consecutive_batches() -> None:
    """16 envs with B = 8: the first unroll is two batches, its two column halves, in order."""
    cfg = uav(total_steps=8 * 8 * 4, num_actors=1, envs_per_actor=16)
    assert_column_halves(cfg, *take_two_batches(RayRun(cfg)))


def test_killed_actor_is_recreated_and_the_budget_is_consumed() -> None:
    cfg = uav(total_steps=8 * 8 * 30, num_actors=2, envs_per_actor=4)
    reports: list[str] = []
    run = RayRun(cfg, report=reports.append)
    records = train_with_a_kill(run, lambda: ray.kill(run.workers[0]))
    assert run.learner.samples == cfg.total_steps
    assert run.learner.version == 30  # every one of the 30 updates ran and applied
    assert run.restarts == [1, 0] and records[-1]["actor_restarts"] == 1.0
    assert any(r.startswith("actor 0 died (ActorDiedError") for r in reports), reports
    assert reports[-1].startswith("ray: ") and "% of its time" in reports[-1]
    # weights go out once per version at most: 30 updates, 31 versions
    assert 1 <= records[-1]["ray_weight_puts"] <= 31
    assert 0.0 < records[-1]["ray_overhead_frac"] < 1.0
    assert all(r["policy_lag_mean"] >= 0.0 for r in records)


def test_an_env_exception_recreates_the_actor_and_says_why() -> None:
    """Every actor's env raises after 10 unrolls: the call fails with the env's exception
    (not a dead process), the actor is re-created, and the run reaches its budget."""
    cfg = dataclasses.replace(
        uav(total_steps=8 * 8 * 25, num_actors=1, envs_per_actor=8),
        env="tests.runtime.crashing_env:make", env_kwargs={"crash_after": 80},
    )  # fmt: skip
    reports: list[str] = []
    run = RayRun(cfg, report=reports.append)
    try:
        while not run.done:
            run.step()
    finally:
        run.close()
    assert run.learner.version == 25 and run.restarts == [2]
    assert reports[0].startswith("actor 0 died (RuntimeError: boom: the env crashed)")


def test_max_policy_lag_drops_stale_unrolls() -> None:
    """With lag 0 allowed, every batch trained on was made by the current weights. One actor
    with a batch per unroll and 2 unrolls in flight: the call queued behind the one trained
    on carries the weights before the update, and the actor runs its calls in order, so
    that unroll reaches the learner first and is dropped (one actor: with two, one could
    start so late under load that the other alone fed the whole run, dropping nothing)."""
    cfg = uav(total_steps=8 * 8 * 12, num_actors=1, envs_per_actor=8, max_policy_lag=0)
    result = train_ray(cfg)
    assert result.learner.version == 12
    assert max(r["policy_lag_max"] for r in result.history) == 0.0
    assert result.history[-1]["dropped_unrolls"] > 0


def test_max_restarts_ends_the_run() -> None:
    cfg = uav(total_steps=8 * 8 * 30, num_actors=1, envs_per_actor=8, max_restarts=0)
    run = RayRun(cfg, report=lambda _: None)
    try:
        run.step()
        ray.kill(run.workers[0])
        with pytest.raises(RuntimeError, match="actor 0 died 1 times"):
            while not run.done:
                run.step()
    finally:
        run.close()


def test_two_learners_make_the_update_of_one_on_the_whole_batch() -> None:
    """``ray.learners = 2``: the driver and a learner actor each step on half of every batch.
    The first update is the serial runtime's (one learner on the whole, same, batch) to float
    tolerance, and after loading another learner's state both ranks still hold the very same
    weights (the peer loaded it too)."""
    cfg = uav(total_steps=64, num_actors=1, envs_per_actor=8, learners=2)
    serial = train_serial(cfg)
    run = RayRun(cfg)
    try:
        run.step()
        assert run.learner.version == 1 and run.learner.samples == serial.learner.samples == 64
        assert_weights_close(run.learner.model, serial.learner.model)
        other = train_serial(dataclasses.replace(cfg, seed=1, total_steps=128)).learner
        state = run.state_dict()
        state["learner"] = other.state_dict()
        run.load_state_dict(state)
        assert run.learner.version == 2
        run.step()
        peer = ray.get(run.peers[0].weights.remote())
        for a, b in zip(peer, run.learner.model.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    finally:
        run.close()
    assert not torch.distributed.is_initialized()  # the group was left at close


@pytest.mark.parametrize("learners", [1, 2])
def test_learners_in_ray_actors_make_the_serial_update(learners: int) -> None:
    """``learner_placement = actor``: every rank in a Ray actor, the driver only moving data.
    The first update is the serial runtime's; the driver's copy of the model (what evaluation
    reads) follows rank 0; a state loaded reaches every rank; a closed run hands back a
    learner of its own with the final weights."""
    cfg = uav(
        total_steps=64 * 3, num_actors=1, envs_per_actor=8, learners=learners,
        learner_placement="actor", actor_cpus=0.5, learner_cpus=0.5,
    )  # fmt: skip
    serial = train_serial(dataclasses.replace(cfg, total_steps=64))
    reports: list[str] = []
    run = RayRun(cfg, report=reports.append)
    try:
        assert isinstance(run.learner, RemoteLearner) and run.peers == []
        assert len(run.learner_actors) == learners
        assert reports[0].startswith(f"ray: {learners} learner actor(s) (actor placement, 0 GPU")
        assert "cpu on " in reports[0]
        run.step()
        assert run.learner.version == 1 and run.learner.samples == 64
        assert_weights_close(run.learner.model, serial.learner.model)
        other = train_serial(dataclasses.replace(cfg, seed=1, total_steps=128)).learner
        state = run.state_dict()
        state["learner"] = other.state_dict()
        run.load_state_dict(state)
        assert (run.learner.version, run.learner.samples) == (2, 128)
        for a, b in zip(
            run.learner.model.state_dict().values(), other.model.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b)
        run.step()
        weights = [ray.get(actor.weights.remote()) for actor in run.learner_actors]
        for other_rank in weights[1:]:  # the ranks agree
            for a, b in zip(weights[0], other_rank, strict=True):
                assert torch.equal(a, b)
    finally:
        run.close()
    assert isinstance(run.learner, Learner) and run.learner.samples == 192
    for a, b in zip(run.learner.model.state_dict().values(), weights[0], strict=True):
        assert torch.equal(a, b)
    assert not torch.distributed.is_initialized()  # the group lived in the actors


def test_learner_layout_takes_a_gpu_when_the_cluster_has_one() -> None:
    """``auto``: every learner in an actor with a GPU of its own when there is one for each,
    else rank 0 in the driver and no GPU; explicit values are kept."""
    assert learner_layout(RayConfig(), {"CPU": 8.0}) == ("driver", 0, 0.0)
    assert learner_layout(RayConfig(), {"CPU": 8.0, "GPU": 1.0}) == ("actor", 1, 1.0)
    assert learner_layout(RayConfig(learners=2), {"GPU": 2.0}) == ("actor", 2, 1.0)
    assert learner_layout(RayConfig(learners=2), {"GPU": 1.0}) == ("driver", 1, 0.0)
    assert learner_layout(RayConfig(learner_placement="actor"), {}) == ("actor", 1, 0.0)
    assert learner_layout(RayConfig(learner_placement="driver"), {"GPU": 4.0}) == ("driver", 0, 0.0)
    got = learner_layout(RayConfig(learners=3, learner_gpus=0.5), {"GPU": 1.0})
    assert got == ("driver", 2, 0.5)


def test_a_cluster_gpu_is_taken_by_the_learner_actor() -> None:
    """On a Ray instance that declares one GPU (none exists here: Ray takes the count as
    given), ``auto`` puts the learner in an actor holding that GPU; with torch unable to use
    it the run says so and trains on the CPU. Its own Ray instance, in a subprocess."""
    code = """if True:
        import dataclasses, ray
        from impala_hybrid.experiments.spec import RayConfig
        from impala_hybrid.runtime.ray import RayRun
        from tests.runtime import uav
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False)
        layout = RayConfig(num_actors=1, envs_per_actor=8)
        cfg = dataclasses.replace(uav(64), ray=layout)
        reports = []
        run = RayRun(cfg, report=reports.append)
        try:
            run.step()
            print(run.placement, run.learner_gpus, run.learner.samples)
        finally:
            run.close()
        print(*reports, sep=chr(10))
        try:
            RayRun(dataclasses.replace(cfg, ray=dataclasses.replace(layout, learner_gpus=2.0)))
        except Exception as e:
            print(type(e).__name__, e)
    """
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # not this module's Ray
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout.splitlines()
    assert out[0] == "actor 1.0 64"
    assert "(actor placement, 1 GPU each): cpu on " in out[1]
    assert "hold GPU ['0'] but train on the CPU: torch there sees no CUDA" in out[2]
    assert out[-1].startswith(
        "ConfigError RayConfig.learner_gpus = 2 is invalid for 1 learner actors: the Ray "
        "cluster has 1 GPUs; allowed range [0, 1]"
    )


def test_a_dead_learner_actor_ends_the_run_saying_so() -> None:
    cfg = uav(total_steps=64 * 10, num_actors=1, envs_per_actor=8, learners=2)
    run = RayRun(cfg)
    try:
        run.step()
        ray.kill(run.peers[0])
        with pytest.raises(RuntimeError, match=r"a learner actor failed .*--resume"):
            run.step()
    finally:
        run.close()


def test_cli_runtime_ray_writes_the_run_directory_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "r"
    tiny = [
        "--preset", "uav_hybrid", "--runtime", "ray", "--out", str(out),
        "--set", "num_envs=4", "algo.unroll_length=8", "algo.batch_size=4", "model.hidden=[16]",
        "total_steps=320", "log_interval=2", "env_kwargs.episode_steps=30", "eval_interval=160",
        "eval_episodes=2", "checkpoint_interval=96", "ray.num_actors=2", "ray.envs_per_actor=4",
    ]  # fmt: skip
    assert cli.main(["train", *tiny]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["env_steps"] for m in metrics] == [64, 128, 192, 256, 320]
    keys = {"fps", "loss", "policy_lag_mean", "policy_lag_max", "ray_overhead_frac"}
    assert keys <= set(metrics[0])
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["env_steps"] for e in evals] == [160, 320]
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["runtime"] == "ray" and last["env_steps"] == 320
    assert (out / "checkpoints" / "best.pt").is_file()
    # --resume takes the checkpoint's runtime and goes on to the new budget
    assert cli.main(["train", "--resume", str(out), "--set", "total_steps=448"]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["env_steps"] for m in metrics][-2:] == [384, 448]
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["env_steps"] == 448 and last["state"]["learner"]["version"] == 448 // 32


@pytest.mark.parametrize("placement", ["driver", "actor"])
def test_cli_two_learners_train_and_resume(tmp_path: Path, placement: str) -> None:
    """``--set ray.learners=2`` from the command line: every batch is one update (of both
    ranks), and a resumed run goes on with both learners from the checkpoint, whether rank 0
    is the driver or a Ray actor too."""
    out = tmp_path / "r"
    tiny = [
        "--preset", "uav_hybrid", "--runtime", "ray", "--out", str(out),
        "--set", "num_envs=4", "algo.unroll_length=8", "algo.batch_size=4", "model.hidden=[16]",
        "total_steps=96", "env_kwargs.episode_steps=30", "eval_interval=0", "eval_episodes=1",
        "ray.num_actors=1", "ray.envs_per_actor=4", "ray.learners=2", "ray.learner_cpus=0.5",
        f"ray.learner_placement={placement}",
    ]  # fmt: skip
    assert cli.main(["train", *tiny]) == 0
    assert cli.main(["train", "--resume", str(out), "--set", "total_steps=160"]) == 0
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["env_steps"] == 160 and last["state"]["learner"]["version"] == 160 // 32
    assert last["config"]["ray"]["learners"] == 2
    assert last["config"]["ray"]["learner_placement"] == placement


def test_cli_address_needs_the_ray_runtime(capsys: pytest.CaptureFixture) -> None:
    args = ["train", "--preset", "cartpole", "--out", "unused", "--address", "auto"]
    assert cli.main(args) == 2
    assert "--address is for --runtime ray" in capsys.readouterr().err
    assert cli.main([*args, "--runtime", "local"]) == 2
    assert "--address is for --runtime ray, not --runtime local" in capsys.readouterr().err
    # on --resume too: a run recorded with another runtime would ignore the address silently
    assert cli.main(["train", "--resume", "unused", "--address", "auto"]) == 2
    assert "--address is for --runtime ray: add --runtime ray" in capsys.readouterr().err


def test_layout_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"RayConfig\.num_actors = 0 is invalid: allowed range"):
        RayConfig(num_actors=0)
    with pytest.raises(ConfigError, match=r"RayConfig\.actor_cpus = 0 is invalid: .* \(0, inf\)"):
        RayConfig(actor_cpus=0)
    with pytest.raises(ConfigError, match=r"RayConfig\.envs_per_actor = 12 is invalid"):
        RayRun(uav(64, envs_per_actor=12))
    with pytest.raises(ConfigError, match=r"RayConfig\.unrolls_in_flight = 1 is invalid"):
        RayRun(uav(64, num_actors=1, envs_per_actor=4, unrolls_in_flight=1))
    with pytest.raises(ConfigError, match=r"num_actors \* actor_cpus = 3 \* 1 = 3 CPUs"):
        RayRun(uav(64, num_actors=3))  # would wait forever for a third CPU
    with pytest.raises(ConfigError, match=r"RayConfig\.learners = 0 is invalid: allowed range"):
        RayConfig(learners=0)
    with pytest.raises(ConfigError, match=r"RayConfig\.learners = 9 is invalid: .* \[1, "):
        RayRun(uav(64, learners=9))  # B = 8 unrolls
    with pytest.raises(ConfigError, match=r"plus \(learners - 1\) \* learner_cpus = 1 \* 1"):
        RayRun(uav(64, num_actors=2, learners=2))
    with pytest.raises(ConfigError, match=r"plus learners \* learner_cpus = 1 \* 1 \(learner_pl"):
        RayRun(uav(64, num_actors=2, learner_placement="actor"))
    with pytest.raises(ConfigError, match=r"RayConfig\.learner_placement = 'gpu' is invalid: must"):
        RayConfig(learner_placement="gpu")
    with pytest.raises(ConfigError, match=r"RayConfig\.learner_gpus = 1 is invalid for 1 learner"):
        RayRun(uav(64, num_actors=1, learner_placement="actor", learner_gpus=1.0))


def test_missing_ray_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'impala-hybrid\[ray\]'"):
        ray_runtime.import_ray()


def test_core_modules_do_not_import_ray() -> None:
    code = (
        "import sys, impala_hybrid.cli, impala_hybrid.experiments.trainer; "
        "sys.exit('ray' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_worker_loads_weights_only_when_the_version_moves() -> None:
    """The worker as a plain object: a call with the weights it already holds skips the
    fetch; a new version is loaded and stamped on the unroll."""
    cfg = uav(64, num_actors=1, envs_per_actor=4)
    worker = RolloutWorker(cfg, seed=0)
    state = {k: np.zeros_like(v.numpy()) for k, v in worker.model.state_dict().items()}
    unroll, _, timing = worker.rollout([state], 3, submitted_at=0.0)
    assert int(unroll.policy_version[0]) == 3
    assert all(torch.count_nonzero(v) == 0 for v in worker.model.state_dict().values())
    assert timing["work_s"] > 0.0 and timing["delay_s"] >= 0.0
    unroll, _, _ = worker.rollout([None], 3, submitted_at=0.0)  # not read: version held
    assert int(unroll.policy_version[0]) == 3
