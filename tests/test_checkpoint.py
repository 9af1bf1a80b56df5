"""Checkpoints: plain-data round trip, atomic writes, clear errors for corrupt or foreign files,
and the state snapshots (UAV env, actor) that make a resumed run exact."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.envs.vector import UAVNetVectorEnv
from impala_hybrid.experiments.spec import TrainConfig
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.runtime import checkpoint
from impala_hybrid.runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from impala_hybrid.runtime.serial import SerialRun


def _payload() -> dict:
    return {
        "weights": torch.randn(3, 4),
        "rng": np.array([1, 2**63 + 5, 2**64 - 1], np.uint64),
        "mask": np.array([True, False]),
        "q": np.arange(6, dtype=np.int32).reshape(2, 3),
        "nested": {"xs": [1, 2.5, None, "a", (3, 4)], "flag": np.bool_(True), "n": np.int64(7)},
    }


def test_round_trip_restores_numpy_and_plain_data(tmp_path: Path) -> None:
    p = _payload()
    out = load_checkpoint(save_checkpoint(tmp_path / "c.pt", p))
    assert torch.equal(out["weights"], p["weights"])
    for key in ("rng", "mask", "q"):
        assert out[key].dtype == p[key].dtype
        np.testing.assert_array_equal(out[key], p[key])
    assert out["nested"] == {"xs": [1, 2.5, None, "a", [3, 4]], "flag": True, "n": 7}


def test_objects_are_refused_at_save(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="plain data only"):
        save_checkpoint(tmp_path / "c.pt", {"obj": object()})
    assert not any(tmp_path.iterdir())


def test_failed_write_leaves_previous_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})
    before = path.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, {"step": 2})
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "new.pt", {"step": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no partial files
    monkeypatch.undo()
    assert load_checkpoint(path) == {"step": 1}


def _expect(path: Path, *needles: str) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg


def test_truncated_file_is_corrupt(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", _payload())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _expect(path, "corrupt or truncated")
    with pytest.raises(CheckpointError) as info:  # torch's long reason, cut at a sentence end
        load_checkpoint(path)
    assert str(info.value).endswith((".)", " ...)")), info.value
    path.write_bytes(b"")
    _expect(path, "corrupt or truncated")


def test_flipped_tensor_byte_fails_the_digest(tmp_path: Path) -> None:
    weights = torch.arange(4096, dtype=torch.float32)
    path = save_checkpoint(tmp_path / "c.pt", {"w": weights})
    data = bytearray(path.read_bytes())
    i = bytes(data).find(weights.numpy().tobytes()[4000:4016])
    assert i > 0
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    _expect(path, "digest")


def test_foreign_files(tmp_path: Path) -> None:
    torch_file = tmp_path / "other.pt"
    torch.save({"x": 1}, torch_file)
    _expect(torch_file, "not an impala-hybrid checkpoint", "format tag")
    text = tmp_path / "notes.pt"
    text.write_text("hello\n")
    _expect(text, "cannot be read")
    pickled = tmp_path / "pickle.pt"  # plain pickle of an object: never unpickled
    torch.save({"a": np.zeros(3)}, pickled, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    _expect(pickled, "never unpickled")
    _expect(tmp_path / "missing.pt", "does not exist")


def test_unknown_version(tmp_path: Path) -> None:
    path = tmp_path / "future.pt"
    torch.save({"format": checkpoint.FORMAT, "version": 99, "payload": {}}, path)
    _expect(path, "version 99")


def test_uav_env_state_restores_the_future() -> None:
    rng = np.random.default_rng(0)
    actions = [
        {"transfer": rng.integers(0, 6, 3), "intensity": rng.random((3, 6))} for _ in range(60)
    ]
    env = UAVNetVectorEnv(3, episode_steps=25, autoreset_mode="SameStep")
    env.reset(seed=4)
    for a in actions[:20]:
        env.step(a)
    saved = env.get_state()
    future = [env.step(a) for a in actions[20:]]
    other = UAVNetVectorEnv(3, episode_steps=25, autoreset_mode="SameStep")
    other.reset(seed=123)
    other.set_state(saved)
    for a, (obs, rew, term, trunc, _) in zip(actions[20:], future, strict=True):
        obs2, rew2, term2, trunc2, _ = other.step(a)
        np.testing.assert_array_equal(obs, obs2)
        np.testing.assert_array_equal(rew, rew2)
        np.testing.assert_array_equal(term, term2)
        np.testing.assert_array_equal(trunc, trunc2)
    with pytest.raises(ValueError, match="shape"):
        UAVNetVectorEnv(2, episode_steps=25).set_state(saved)


def _tiny(env: str) -> TrainConfig:
    return TrainConfig(
        env=env,
        env_kwargs={"episode_steps": 20} if env.startswith("impala_hybrid/UAV") else {},
        num_envs=2,
        total_steps=400,
        log_interval=3,
        model=ModelConfig(hidden=(8,)),
        algo=IMPALAConfig(unroll_length=5, batch_size=4),
    )


def test_serial_run_snapshot_through_a_file_continues_exactly(tmp_path: Path) -> None:
    cfg = _tiny("impala_hybrid/UAVNet-v0")
    a = SerialRun(cfg)
    for _ in range(7):
        a.step()
    path = save_checkpoint(tmp_path / "s.pt", a.state_dict())
    expected = [a.step() for _ in range(6)]
    b = SerialRun(cfg)
    b.load_state_dict(load_checkpoint(path))
    assert b.exact_resume
    assert [b.step() for _ in range(6)] == expected  # records (incl. partial sums) identical
    for pa, pb in zip(a.learner.model.parameters(), b.learner.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_non_native_env_restarts_on_resume() -> None:
    cfg = _tiny("CartPole-v1")
    a = SerialRun(cfg)
    for _ in range(3):
        a.step()
    state = a.state_dict()
    assert state["actor"]["env"] is None  # SyncVectorEnv state is not saved
    b = SerialRun(cfg)
    assert not b.exact_resume
    b.load_state_dict(state)
    assert bool(b.actor.first.all()) and b.actor.env_steps == a.actor.env_steps
    assert b.learner.samples == a.learner.samples
    while not b.done:
        b.step()
