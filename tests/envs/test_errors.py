"""Bad input gets a clear error naming the field, the value and the allowed range."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import impala_hybrid
from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.envs.sim import ActionError
from impala_hybrid.validation import ConfigError, Range


def _bad_values(f: dataclasses.Field) -> list[object]:
    """Values outside a field's declared type or range."""
    rng: Range | None = f.metadata.get("range")
    ann = str(f.type)
    bad: list[object] = ["not-a-number"]
    if ann.startswith("tuple"):
        bad = [(1.0,), "x"]
        if rng is not None and rng.lo is not None:
            n = f.metadata["length"]
            bad.append(tuple([rng.lo - 1.0] * n))
        return bad
    if ann == "bool":
        return ["yes", 1]
    if "int" in ann and "float" not in ann:
        bad.append(2.5)
    if rng is not None:
        if rng.lo is not None:
            bad.append(rng.lo - 1.0 if "int" not in ann or "float" in ann else int(rng.lo) - 1)
        if rng.hi is not None:
            bad.append(rng.hi + 1.0 if "int" not in ann or "float" in ann else int(rng.hi) + 1)
    bad.append(float("nan"))
    return bad


CASES = [(f.name, v) for f in dataclasses.fields(UAVNetConfig) for v in _bad_values(f)]


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={v!r}" for n, v in CASES])
def test_every_config_field_rejects_bad_values(name: str, value: object) -> None:
    with pytest.raises(ConfigError) as exc:
        UAVNetConfig(**{name: value})
    msg = str(exc.value)
    assert f"UAVNetConfig.{name}" in msg
    assert "invalid" in msg


def test_cross_field_checks() -> None:
    with pytest.raises(ConfigError, match="expiry_routine"):
        UAVNetConfig(expiry_routine=0.01)  # shorter than one step of 0.1 s
    with pytest.raises(ConfigError, match="expiry_emergency"):
        UAVNetConfig(expiry_emergency=2000.0)  # more age bins than the memory bound
    with pytest.raises(ConfigError, match="n_ref"):
        UAVNetConfig(routine_base_rates=(0.0, 0.0, 0.0, 0.0), emergency_rate_calm=0.0,
                     emergency_rate_incident=0.0)  # fmt: skip
    with pytest.raises(ConfigError, match="weights"):
        UAVNetConfig(weights=(0.0,) * 6)


@pytest.fixture()
def env() -> gym.vector.VectorEnv:
    e = gym.make_vec(impala_hybrid.UAVNET_ID, num_envs=3)
    e.reset(seed=0)
    return e


GOOD_T = np.zeros(3, np.int64)
GOOD_I = np.full((3, 6), 0.5)


@pytest.mark.parametrize(
    ("transfer", "intensity", "fragment"),
    [
        (np.array([0, 6, 0]), GOOD_I, "action['transfer'][1] = 6 is out of range"),
        (np.array([-1, 0, 0]), GOOD_I, "action['transfer'][0] = -1"),
        (np.array([0, 0, 2.5]), GOOD_I, "action['transfer'][2] = 2.5 is invalid"),
        (np.array([0, 0]), GOOD_I, "action['transfer'] has shape (2,), expected (3,)"),
        (GOOD_T, np.full((3, 6), 1.2), "action['intensity'][0, 0] = 1.2 is out of range"),
        (GOOD_T, np.full((3, 6), -0.1), "must be a finite number in [0, 1]"),
        (GOOD_T, np.full((3, 6), np.nan), "action['intensity'][0, 0] = nan"),
        (GOOD_T, np.full((3, 5), 0.5), "action['intensity'] has shape (3, 5)"),
        (GOOD_T, np.full((3, 6), "a"), "dtype"),
    ],
)
def test_malformed_actions(
    env: gym.vector.VectorEnv, transfer: np.ndarray, intensity: np.ndarray, fragment: str
) -> None:
    with pytest.raises(ActionError) as exc:
        env.step({"transfer": transfer, "intensity": intensity})
    assert fragment in str(exc.value)


def test_action_missing_key_or_wrong_type(env: gym.vector.VectorEnv) -> None:
    with pytest.raises(ActionError, match="missing \\['intensity'\\]"):
        env.step({"transfer": GOOD_T})
    with pytest.raises(ActionError, match="must be a dict"):
        env.step(np.zeros(3))
    with pytest.raises(ActionError, match="unknown keys \\{'extra'\\}"):
        env.step({"transfer": GOOD_T, "intensity": GOOD_I, "extra": 1})


def test_bad_action_leaves_state_untouched(env: gym.vector.VectorEnv) -> None:
    before = env.unwrapped.sim.state.copy()  # type: ignore[attr-defined]
    with pytest.raises(ActionError):
        env.step({"transfer": np.array([0, 0, 9]), "intensity": GOOD_I})
    after = env.unwrapped.sim.state  # type: ignore[attr-defined]
    np.testing.assert_array_equal(before.q, after.q)
    np.testing.assert_array_equal(before.rng, after.rng)


def test_single_env_bad_action() -> None:
    e = gym.make(impala_hybrid.UAVNET_ID).unwrapped
    e.reset(seed=0)
    with pytest.raises(ActionError, match="transfer"):
        e.step({"transfer": 7, "intensity": np.zeros(6)})
    with pytest.raises(ValueError, match="must be a dict"):
        e.step([0, np.zeros(6)])
    with pytest.raises(ActionError, match="extra"):
        e.step({"transfer": 0, "intensity": np.zeros(6), "extra": 1})
    # a batch of one is the vector env's layout, not silently reshaped
    with pytest.raises(ActionError, match=r"'intensity'\] has shape \(1, 6\), expected \(6,\)"):
        e.step({"transfer": 0, "intensity": np.zeros((1, 6))})
    with pytest.raises(ActionError, match=r"'transfer'\] has shape \(1,\), expected \(\)"):
        e.step({"transfer": np.array([0]), "intensity": np.zeros(6)})
    e.step({"transfer": np.int64(1), "intensity": np.zeros(6, np.float32)})  # still fine


def test_bad_num_envs() -> None:
    with pytest.raises(ValueError, match="num_envs"):
        gym.make_vec(impala_hybrid.UAVNET_ID, num_envs=0)
