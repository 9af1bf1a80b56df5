"""Cliff warnings: a collapsing greedy return or entropy is reported once per fall."""

from __future__ import annotations

from impala_hybrid.runtime.health import CliffWatch


def test_return_cliff_warns_once_and_rearms() -> None:
    w = CliffWatch()
    seq = [-700.0, -200.0, 300.0, 407.0, 380.0, 390.0]  # learning, then noise: no warning
    assert all(w.on_eval(i, r) is None for i, r in enumerate(seq))
    msg = w.on_eval(7, 41.0)  # the issue-8 run: 407 -> 41
    assert msg is not None and "41.00" in msg and "best 407.00" in msg
    assert w.on_eval(8, -660.0) is None  # the same fall: once
    assert w.on_eval(9, 350.0) is None  # recovered: re-armed
    assert w.on_eval(10, -100.0) is not None


def test_entropy_cliff() -> None:
    w = CliffWatch(window=10)
    slow = [1.0 - 0.05 * i for i in range(40)]  # -1 nat over 40 records: a policy learning
    assert all(w.on_record(i, e) is None for i, e in enumerate(slow))
    w2 = CliffWatch(window=10)
    for i, e in enumerate([1.0, 0.9, -1.5, -6.0]):  # the issue-8 collapse
        msg = w2.on_record(i, e)
    assert msg is not None and "-6.00" in msg
    assert w2.on_record(5, -12.0) is None  # once per fall


def test_state_round_trip() -> None:
    w = CliffWatch()
    for i, r in enumerate([0.0, 100.0, 10.0]):
        w.on_eval(i, r)
    w.on_record(0, 1.0)
    v = CliffWatch()
    v.load_state_dict(w.state_dict())
    assert v.state_dict() == w.state_dict()
    assert v.on_eval(4, -50.0) is None  # already warned for this fall before the resume


def test_trainer_prints_and_logs_the_warning(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from rich.console import Console

    from impala_hybrid.algos.impala.config import IMPALAConfig
    from impala_hybrid.experiments.spec import TrainConfig
    from impala_hybrid.experiments.trainer import start_run
    from impala_hybrid.models.actor_critic import ModelConfig

    cfg = TrainConfig(env="CartPole-v1", num_envs=4, total_steps=160, eval_interval=32,
                      model=ModelConfig(hidden=(8,)),
                      algo=IMPALAConfig(unroll_length=8, batch_size=4))  # fmt: skip
    console = Console(record=True, width=200)
    trainer = start_run(cfg, tmp_path / "run", console=console)
    scripted = iter([0.0, 100.0, 200.0, 20.0, 30.0, 25.0])

    class Scripted:  # the evaluator, with returns that fall off a cliff
        uav = False

        def __call__(self, learner: object) -> dict[str, float]:
            return {"return_mean": next(scripted), "return_std": 0.0}

    trainer.evaluator = Scripted()  # type: ignore[assignment]
    assert trainer.run() == 0
    assert "warning: greedy return fell to 20.00" in console.export_text()
    lines = [json.loads(x) for x in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert ["warning" in x for x in lines] == [False, False, False, True, False]


def test_a_fall_within_the_evaluation_noise_does_not_warn() -> None:
    """A warm start's plateau (the make-run-like warm_start=threshold run: 403.99, best 407.22,
    then 405.99, with a standard error of 18 over 32 episodes) is noise, not a cliff; the same
    fall with a tiny standard error, and a real collapse with the noise, still warn."""
    w = CliffWatch()
    for i, r in enumerate([403.99, 407.22]):
        assert w.on_eval(i, r, stderr=18.0) is None
    assert w.on_eval(2, 405.99, stderr=18.0) is None
    assert w.on_eval(3, 41.0, stderr=18.0) is not None
    v = CliffWatch()
    v.on_eval(0, 403.99, stderr=0.1)
    v.on_eval(1, 407.22, stderr=0.1)
    assert v.on_eval(2, 405.99, stderr=0.1) is not None
