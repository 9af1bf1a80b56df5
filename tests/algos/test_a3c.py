"""A3C (``algos/a3c``, ``runtime/a3c.py``): the update against the paper's equations, the
shared optimizer, the workers, the trainer's run directory, and failures."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from impala_hybrid import cli
from impala_hybrid.algos.a3c.config import A3CConfig
from impala_hybrid.algos.a3c.optim import share_state
from impala_hybrid.algos.impala.actor import Actor
from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.algos.impala.learner import make_optimizer
from impala_hybrid.experiments.config_io import config_from_dict, load_config
from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.experiments.trainer import Trainer, load_run_model, start_run
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.runtime.a3c import A3CRun, build_a3c_learner, worker_seed
from impala_hybrid.runtime.checkpoint import load_checkpoint
from impala_hybrid.runtime.serial import make_env
from impala_hybrid.types import Batch
from impala_hybrid.validation import ConfigError


def tiny(total_steps: int = 640, **a3c: object) -> TrainConfig:
    """A3C on CartPole: workers of 4 envs, T = 8 (32 env steps per update), a 16-unit net."""
    layout = {"workers": 2, "envs_per_worker": 4, "updates_per_step": 4, **a3c}
    return TrainConfig(
        env="CartPole-v1",
        num_envs=4,
        total_steps=total_steps,
        algorithm="a3c",
        log_interval=1,
        eval_interval=320,
        eval_episodes=2,
        checkpoint_interval=320,
        model=ModelConfig(hidden=(16,), layer_norm=False),
        algo=IMPALAConfig(unroll_length=8, batch_size=4, lr=1e-3),
        a3c=A3CConfig(**layout),  # type: ignore[arg-type]
    )


# --- config -----------------------------------------------------------------------------------


def _with(**algo: object) -> TrainConfig:
    return dataclasses.replace(tiny(), algo=IMPALAConfig(**algo))  # type: ignore[arg-type]


BAD_CONFIGS = {
    r"A3CConfig\.workers = 0 is invalid: allowed range is \[1, inf\)": lambda: A3CConfig(workers=0),
    r"A3CConfig\.envs_per_worker = 0 is invalid": lambda: A3CConfig(envs_per_worker=0),
    r"A3CConfig\.optimizer_state = 'mine' .*'shared'": lambda: A3CConfig(optimizer_state="mine"),
    r"TrainConfig\.algorithm = 'a2c' .*'impala', 'a3c'": lambda: TrainConfig(algorithm="a2c"),
    r"IMPALAConfig\.popart = true is invalid with TrainConfig\.algorithm = 'a3c'": lambda: _with(
        popart=True
    ),
    r"IMPALAConfig\.replay_proportion = 0\.5 .*allowed range is \[0, 0\]": lambda: _with(
        replay_proportion=0.5
    ),
    r"IMPALAConfig\.rho_bar = 0\.5 .*allowed range is \[1, inf\)": lambda: _with(
        rho_bar=0.5, c_bar=0.5
    ),
    r"IMPALAConfig\.target_entropy_discrete = 0\.1 .*must be null": lambda: _with(
        target_entropy_discrete=0.1
    ),
    r"ModelConfig\.obs_norm = true is invalid": lambda: dataclasses.replace(
        tiny(), model=ModelConfig(obs_norm=True)
    ),
    r"A3CConfig\.updates_per_step = 0 is invalid": lambda: config_from_dict(
        {"a3c": {"updates_per_step": 0}}
    ),
    r"did you mean a3c\.workers": lambda: config_from_dict({"a3c": {"worker": 2}}),
}


@pytest.mark.parametrize("message", BAD_CONFIGS)
def test_config_errors_name_the_field(message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BAD_CONFIGS[message]()


def test_a3c_runs_on_serial_or_local_only(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"TrainConfig\.algorithm = 'a3c' is invalid with runtime 'ray'"
    ):
        Trainer(tiny(), tmp_path, runtime="ray")


# --- the update -------------------------------------------------------------------------------


def _hand_made_unroll() -> Batch:
    """T = 4 steps of B = 2 CartPole envs; env 0 terminates at t = 1 (a new episode starts
    at t = 2); the behaviour log-probs are wrong on purpose (A3C must not read them)."""
    gen = torch.Generator().manual_seed(3)
    t_len, b = 4, 2
    terminated = torch.zeros(t_len, b, dtype=torch.bool)
    terminated[1, 0] = True
    first = torch.zeros(t_len + 1, b, dtype=torch.bool)
    first[0] = True
    first[2, 0] = True
    return Batch(
        obs=torch.randn(t_len + 1, b, 4, generator=gen),
        first=first,
        actions=torch.randint(0, 2, (t_len, b), generator=gen),
        behaviour_logp=torch.zeros(t_len, b, 1),  # as if certain: ratios pi/mu < 1
        rewards=torch.rand(t_len, b, 1, generator=gen),
        terminated=terminated,
        truncated=torch.zeros(t_len, b, dtype=torch.bool),
        final_obs=torch.zeros(t_len, b, 4),
        core_state=(),
        policy_version=torch.zeros(b, dtype=torch.int64),
    )


def _paper_loss(model: torch.nn.Module, b: Batch, algo: IMPALAConfig) -> torch.Tensor:
    """Algorithm S3 written out: per env, ``R = V(s_T)`` (0 after a terminal state), then
    backwards ``R = r_i + gamma R``; the actor's term ``-log pi(a_i|s_i) (R - V(s_i))``, the
    critic's ``(R - V(s_i))^2`` (halved, weighted by baseline_coef), the entropy bonus; means
    over the T x B steps where the paper sums (docs/algorithms.md)."""
    out = model(b.obs, b.first)
    logp_all = torch.log_softmax(out.params["logits"], dim=-1)  # [T + 1, B, 2]
    values = out.values[..., 0]  # [T + 1, B]
    t_len, n = b.actions.shape  # type: ignore[union-attr]
    pg, critic, entropy = [], [], []
    for j in range(n):
        ret = values[t_len, j].detach()
        for i in reversed(range(t_len)):
            r = b.rewards[i, j, 0]
            ret = r if b.terminated[i, j] else r + algo.gamma * ret
            logp = logp_all[i, j]
            advantage = ret - values[i, j]
            pg.append(-logp[b.actions[i, j]] * advantage.detach())  # type: ignore[index]
            critic.append(0.5 * advantage.square())
            entropy.append(-(logp.exp() * logp).sum())
    mean = lambda xs: torch.stack(xs).mean()  # noqa: E731
    return mean(pg) + algo.baseline_coef * mean(critic) - algo.entropy_coef * mean(entropy)


def test_one_worker_update_equals_the_papers_n_step_actor_critic() -> None:
    """A worker's update: its loss is Algorithm S3's on the unroll (whatever the behaviour
    log-probs say), and the shared model moves by one clipped Adam step on that loss's
    gradient, while the worker's local copy stays where it was until the next sync."""
    algo = IMPALAConfig(gamma=0.9, lr=0.01, entropy_coef=0.05, max_grad_norm=0.1)
    cfg = dataclasses.replace(tiny(), algo=algo)
    env = make_env(cfg, 1)
    shared = build_a3c_learner(cfg, env)
    worker = build_a3c_learner(cfg, env, shared)
    env.close()
    worker.sync()
    before = copy.deepcopy(worker.model)
    reference = copy.deepcopy(worker.model)
    batch = _hand_made_unroll()

    metrics = worker.step(batch)

    loss = _paper_loss(reference, batch, algo)
    assert metrics["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert metrics["rho_mean"] == 1.0 and metrics["log_rho_abs"] == 0.0
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), algo.max_grad_norm)
    assert norm > algo.max_grad_norm  # the clip is part of what is compared
    torch.optim.Adam(reference.parameters(), lr=algo.lr, eps=algo.adam_eps).step()
    for (name, got), want in zip(
        shared.model.named_parameters(), reference.parameters(), strict=True
    ):
        torch.testing.assert_close(got, want, msg=name)
    for got, want in zip(worker.model.parameters(), before.parameters(), strict=True):
        assert torch.equal(got, want)
    worker.sync()
    for got, want in zip(worker.model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_shared_statistics_start_as_a_fresh_optimizers(optimizer: str) -> None:
    """share_state creates the statistics up front, in shared memory, without moving a
    parameter, and the first step equals a fresh optimizer's."""
    algo = IMPALAConfig(optimizer=optimizer, lr=0.1)
    net = torch.nn.Linear(3, 2)
    fresh = copy.deepcopy(net)
    opt = share_state(make_optimizer(net.parameters(), algo))
    for a, b in zip(net.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b) and a.grad is None
        state = opt.state[a]
        assert state and all(v.is_shared() and not v.any() for v in state.values())
    grads = [torch.randn_like(p) for p in net.parameters()]
    for model in (net, fresh):
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g.clone()
    opt.step()
    make_optimizer(fresh.parameters(), algo).step()
    for a, b in zip(net.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


# --- the workers ------------------------------------------------------------------------------


@pytest.mark.parametrize("lstm_size", [0, 8])
def test_one_worker_reproduces_the_same_update_in_process(lstm_size: int) -> None:
    """With one worker, A3CRun's first update is an in-process worker's on the envs seeded
    with the run's seed (worker 0's): the same metrics, the same shared weights. With an
    LSTM core the worker carries each env's state across unrolls, as IMPALA's actor does."""
    cfg = tiny(workers=1, updates_per_step=1)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, lstm_size=lstm_size))
    run = A3CRun(cfg)
    try:
        record = run.step()
        assert record is not None
        first = [p.clone() for p in run.learner.model.parameters()]
        second = run.step()
    finally:
        run.close()

    torch.manual_seed(cfg.seed)
    env = make_env(cfg, cfg.a3c.envs_per_worker, seed=cfg.seed)
    shared = build_a3c_learner(cfg, env)
    worker = build_a3c_learner(cfg, env, shared)
    actor = Actor(env, worker.model, cfg.algo.unroll_length, seed=cfg.seed)
    worker.sync()
    metrics = worker.step(actor.unroll())
    for key, value in metrics.items():
        assert record[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    for a, b in zip(first, shared.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    worker.sync()
    worker.samples, worker.version = 32, 1
    assert second is not None and second["loss"] == pytest.approx(
        worker.step(actor.unroll())["loss"]
    )
    env.close()


def test_worker_seeds_come_from_the_run_seed_the_worker_and_the_resume_point() -> None:
    cfg = tiny()
    fresh = [worker_seed(cfg, w) for w in range(3)]
    assert fresh[0] == cfg.seed and len(set(fresh)) == 3
    resumed = [worker_seed(cfg, w, 640) for w in range(3)]
    assert resumed == [worker_seed(cfg, w, 640) for w in range(3)]
    assert len(set(fresh + resumed)) == 6
    assert worker_seed(dataclasses.replace(cfg, seed=1), 0, 640) != resumed[0]


def test_two_workers_share_one_model_and_count_env_steps_exactly() -> None:
    """Both workers apply updates to the one shared model; env_steps is the sum of their
    counts and stops at the first multiple of one update's 32 env steps past the budget."""
    run = A3CRun(tiny(total_steps=600))
    initial = [p.clone() for p in run.learner.model.parameters()]
    try:
        run.step()
        assert run.env_steps == 2 * 4 * 32  # updates_per_step per worker, 32 env steps each
        while not run.done:
            run.step()
        updates = run.worker_updates
    finally:
        run.close()
    assert min(updates) > 0, updates
    assert run.env_steps == 608 == 32 * sum(updates)  # 19 updates: 576 < 600 <= 608
    assert run.learner.version == sum(updates)  # no update was skipped
    assert all(not p.is_alive() for p in run.procs)
    assert any(
        not torch.equal(a, b) for a, b in zip(initial, run.learner.model.parameters(), strict=True)
    )
    # One step count for both: the statistics are shared (Hogwild: an increment made at the
    # very same moment as the other worker's may be lost, hence <=).
    steps = [int(s["step"]) for s in run.learner.optimizer.state.values()]
    assert all(max(updates) < n <= sum(updates) for n in steps), (steps, updates)


def test_per_worker_statistics_leave_the_shared_ones_untouched() -> None:
    run = A3CRun(tiny(total_steps=256, optimizer_state="per_worker"))
    initial = [p.clone() for p in run.learner.model.parameters()]
    try:
        run.step()
    finally:
        run.close()
    assert run.env_steps == 256
    assert all(bool(s["step"] == 0) for s in run.learner.optimizer.state.values())
    assert any(
        not torch.equal(a, b) for a, b in zip(initial, run.learner.model.parameters(), strict=True)
    )


def test_a_killed_worker_ends_the_run_with_an_error_naming_it() -> None:
    run = A3CRun(tiny())
    try:
        run.step()
        os.kill(run.procs[1].pid, signal.SIGKILL)
        run.procs[1].join(5.0)
        with pytest.raises(RuntimeError, match=r"A3C worker 1 died \(exit code -9, SIGKILL\)"):
            run.step()
    finally:
        run.close()
    assert all(not p.is_alive() for p in run.procs)


def test_a_failing_worker_reports_its_traceback() -> None:
    cfg = dataclasses.replace(
        tiny(), env="tests.runtime.crashing_env:make", env_kwargs={"crash_after": 40}
    )
    run = A3CRun(cfg)
    try:
        with pytest.raises(RuntimeError, match=r"(?s)A3C worker \d died \(exit code 1\).*boom"):
            while not run.done:
                run.step()
    finally:
        run.close()


# --- the trainer ------------------------------------------------------------------------------


def test_trainer_writes_stops_resumes_and_loads_an_a3c_run(tmp_path: Path) -> None:
    """The trainer drives A3C like any runtime: Ctrl-C writes last.pt, --resume continues,
    eval.jsonl has wall_s, best.pt and last.pt hold the shared model, and load_run_model
    (eval --run, export) loads it."""
    out = tmp_path / "run"
    overrides = ["total_steps=640", "log_interval=1", "eval_interval=320", "eval_episodes=2",
                 "checkpoint_interval=320", "model.hidden=[16]", "a3c.envs_per_worker=4",
                 "algo.unroll_length=8", "a3c.updates_per_step=2"]  # fmt: skip
    cfg = load_config(preset="cartpole_a3c", overrides=overrides)
    trainer = start_run(cfg, out, on_step=lambda t: t.request_stop())  # stop after one step
    assert trainer.run() == 130
    stopped = load_checkpoint(out / "checkpoints" / "last.pt")
    assert stopped["env_steps"] == 2 * 2 * 32 and stopped["runtime"] == "serial"

    assert cli.main(["train", "--resume", str(out)]) == 0
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["env_steps"] for e in evals] == [384, 640]
    assert 0 < evals[0]["wall_s"] < evals[1]["wall_s"]
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["env_steps"] == 640 and last["state"]["learner"]["version"] == 20
    _, model = load_run_model(out, "last")
    for key, value in model.state_dict().items():
        assert torch.equal(value, last["state"]["learner"]["model"][key]), key
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["trainer"]["best_return"] == max(e["return_mean"] for e in evals)
    _, model = load_run_model(out)
    for key, value in model.state_dict().items():
        assert torch.equal(value, best["state"]["learner"]["model"][key]), key
