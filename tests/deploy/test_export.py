"""Exported artifacts (TorchScript, ONNX, npz) reproduce the torch model's deterministic
action, load without the training code, and refuse corrupt or foreign files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from impala_hybrid.deploy import (
    FORMATS,
    ONNX_OPSET,
    ArtifactError,
    UnsupportedModelError,
    export_model,
    load_exported,
    read_sidecar,
    sidecar_path,
)
from tests.deploy import (
    KINDS,
    OBS_DIM,
    assert_actions_match,
    make_model,
    observations,
    reference_actions,
    run_policy,
)

CASES = (
    *KINDS,
    "beta_gated_lstm",
    "hybrid_parameterized",
    "beta_parameterized_dict_lstm",
    "obs_norm_lstm",
    "hybrid_action_values_lstm",
    "hybrid_action_critic_lstm",
    "hybrid_value_trunk",
)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``artifact(case, fmt)``: exported once per module (ONNX export takes ~1-2 s)."""
    root = tmp_path_factory.mktemp("artifacts")
    cache: dict[tuple[str, str], Path] = {}

    def get(case: str, fmt: str) -> Path:
        if (case, fmt) not in cache:
            cache[case, fmt] = export_model(make_model(case), root / f"{case}.{fmt}", fmt)  # type: ignore[arg-type]
        return cache[case, fmt]

    return get


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", CASES)
def test_exported_policy_matches_torch(artifact: Any, case: str, fmt: str) -> None:
    model = make_model(case)
    policy = load_exported(artifact(case, fmt))
    for batch in (1, 7):  # one artifact serves every batch size
        obs = observations(batch, 4, seed=batch)
        got = run_policy(policy, obs)
        for g, w in zip(got, reference_actions(model, obs), strict=True):
            assert_actions_match(g, w)


def test_torchscript_runs_on_its_own_threads_without_the_profiling_executor(
    artifact: Any,
) -> None:
    """What made a TorchScript decision take milliseconds on a busy machine: the process's
    intra-op threads (one per core, waiting on each other) and the profiling executor
    (ms-long first calls, re-specialisation on every new batch size). Each call must run on
    the policy's ``threads`` with optimisation off, and leave the process's setting alone."""
    import torch

    policy: Any = load_exported(artifact("categorical", "torchscript"))
    module, seen = policy.module, []

    def spy(*args: Any) -> Any:
        seen.append((torch.get_num_threads(), torch._C._get_graph_executor_optimize()))
        return module(*args)

    policy.module = spy
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        policy(observations(3, 1)[0])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [(1, False)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_observation_at_a_time_keeps_the_recurrent_state(artifact: Any, fmt: str) -> None:
    """Calls with single observations [obs_dim] act exactly as a batch of one would, the
    LSTM state carried between them (and reset by a scalar done flag)."""
    single = load_exported(artifact("beta_gated_lstm", fmt))
    batched = load_exported(artifact("beta_gated_lstm", fmt))
    for t, obs in enumerate(observations(1, 5, seed=3)):
        one, ref = single(obs[0]), batched(obs)
        assert one["k"] == ref["k"][0] and one["x"].shape == (2,)
        np.testing.assert_array_equal(one["x"], ref["x"][0])
        single.observe_done(t == 2)
        batched.observe_done(np.array([t == 2]))


def test_onnx_graph_has_fixed_opset_and_dynamic_batch(artifact: Any) -> None:
    import onnx

    graph = onnx.load(str(artifact("beta_gated_lstm", "onnx")))
    assert {o.domain: o.version for o in graph.opset_import}[""] == ONNX_OPSET
    names = [i.name for i in graph.graph.input]
    assert names == ["obs", "h", "c"]
    assert [o.name for o in graph.graph.output] == ["discrete", "continuous", "h_out", "c_out"]
    obs = graph.graph.input[0].type.tensor_type.shape.dim
    assert obs[0].dim_param and not obs[0].dim_value  # symbolic batch axis
    assert obs[1].dim_value == OBS_DIM


def test_sidecar_describes_the_action(artifact: Any) -> None:
    path = artifact("hybrid_gated", "torchscript")
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["artifact"]["format"] == "torchscript" and meta["artifact"]["file"] == path.name
    assert meta["artifact"]["outputs"] == ["discrete", "continuous"]
    spec = meta["policy"]
    assert spec["kind"] == "hybrid_gated" and spec["container"] == "tuple"
    assert spec["keys"] == [1, 0] and spec["obs_dim"] == OBS_DIM
    assert spec["low"] == [-1.0] * 3 and spec["model_config"]["hybrid_mode"] == "gated"


def test_loads_without_torch_or_model_classes(artifact: Any) -> None:
    """A deployment host needs only the artifact, its sidecar, NumPy (and onnxruntime)."""
    paths = {fmt: str(artifact("hybrid_factorized", fmt)) for fmt in ("onnx", "npz")}
    obs = observations(3, 1)[0]
    code = f"""
import json, sys
import numpy as np
for blocked in ("torch", "impala_hybrid.models", "impala_hybrid.evaluation"):
    sys.modules[blocked] = None  # any import of these now fails
from impala_hybrid.deploy import load_policy
obs = np.array({obs.tolist()}, np.float32)
out = {{}}
for fmt, path in {paths!r}.items():
    a = load_policy(path)(obs)
    out[fmt] = {{k: v.tolist() for k, v in a.items()}}
print(json.dumps(out))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    want = reference_actions(make_model("hybrid_factorized"), [obs])[0]
    for got in json.loads(proc.stdout.strip().splitlines()[-1]).values():
        np.testing.assert_array_equal(got["transfer"], want["transfer"])
        np.testing.assert_allclose(got["intensity"], want["intensity"], atol=1e-5)


def test_unknown_format_and_unsupported_models(tmp_path: Path) -> None:
    model = make_model("categorical")
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_model(model, tmp_path / "p.tflite", "tflite")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedModelError, match="float32"):
        export_model(make_model("categorical").double(), tmp_path / "p.pt")
    odd = make_model("hybrid_factorized")
    odd.action = dataclasses.replace(odd.action, keys=(("a", 1), "x"))
    with pytest.raises(UnsupportedModelError, match="keys"):
        export_model(odd, tmp_path / "p.onnx", "onnx")
    assert not list(tmp_path.iterdir())  # nothing half-written


def _copy(path: Path, dest: Path) -> Path:
    """An artifact and its sidecar under a new directory (same file name)."""
    dest.mkdir()
    new = dest / path.name
    new.write_bytes(path.read_bytes())
    sidecar_path(new).write_text(sidecar_path(path).read_text())
    return new


def _edit_sidecar(path: Path, **changes: Any) -> None:
    meta = json.loads(sidecar_path(path).read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            meta[section][field] = value
        else:
            meta[section] = value
    sidecar_path(path).write_text(json.dumps(meta))


@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupt_or_foreign_artifacts_are_refused(artifact: Any, tmp_path: Path, fmt: str) -> None:
    src = artifact("hybrid_factorized", fmt)

    p = _copy(src, tmp_path / "truncated")
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="SHA-256"):
        load_exported(p)

    p = _copy(src, tmp_path / "no_sidecar")
    sidecar_path(p).unlink()
    with pytest.raises(ArtifactError, match="no sidecar"):
        load_exported(p)

    p = _copy(src, tmp_path / "foreign_sidecar")
    _edit_sidecar(p, format="someone_elses_model")
    with pytest.raises(ArtifactError, match="not an impala_hybrid policy sidecar"):
        load_exported(p)

    p = _copy(src, tmp_path / "future_version")
    _edit_sidecar(p, version=99)
    with pytest.raises(ArtifactError, match="version 99"):
        load_exported(p)

    p = _copy(src, tmp_path / "not_json")
    sidecar_path(p).write_text("{ not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_exported(p)

    p = _copy(src, tmp_path / "bad_spec")
    _edit_sidecar(p, policy__kind="gaussian_mixture")
    with pytest.raises(ArtifactError, match="kind"):
        load_exported(p)

    # Garbage with a matching hash: the runtime's own loader fails, reported the same way.
    p = _copy(src, tmp_path / "garbage")
    p.write_bytes(b"\x00not a model\xff" * 64)
    _edit_sidecar(p, artifact__sha256=hashlib.sha256(p.read_bytes()).hexdigest())
    with pytest.raises(ArtifactError, match="cannot"):
        load_exported(p)


def test_sidecar_that_does_not_fit_its_artifact_is_refused(artifact: Any, tmp_path: Path) -> None:
    # A sidecar (hash intact) describing a recurrent policy for a feed-forward graph.
    p = _copy(artifact("categorical", "onnx"), tmp_path / "mismatch")
    _edit_sidecar(p, policy={**read_sidecar(p)["policy"].to_json(), "lstm_size": 8})
    with pytest.raises(ArtifactError, match="graph inputs"):
        load_exported(p)
    # A renamed artifact whose sidecar still names the old file.
    p = _copy(artifact("categorical", "npz"), tmp_path / "renamed")
    renamed = p.with_name("renamed.npz")
    p.rename(renamed)
    sidecar_path(p).rename(sidecar_path(renamed))
    with pytest.raises(ArtifactError, match=r"describes 'categorical\.npz'"):
        load_exported(renamed)
    with pytest.raises(ArtifactError, match="no such artifact"):
        load_exported(tmp_path / "missing.onnx")


# A sampled discrete choice (TrainConfig.discrete_choice = "sample")

SAMPLED = ("categorical", "hybrid_factorized", "hybrid_gated", "beta_gated_lstm")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", SAMPLED)
def test_sampled_choice_artifact_draws_what_torch_draws(
    tmp_path: Path, case: str, fmt: str
) -> None:
    """The artifact takes Gumbel noise as input ``gumbel`` and every loaded policy feeds it
    from its own seeded generator: the same seed gives TorchPolicy's actions exactly, in
    every format, and the draws differ from the mode (they are draws, not the argmax)."""
    model = make_model(case)
    path = export_model(model, tmp_path / f"{case}.{fmt}", fmt, discrete_choice="sample")  # type: ignore[arg-type]
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["policy"]["discrete_choice"] == "sample"
    assert meta["artifact"]["inputs"][:2] == ["obs", "gumbel"]
    obs = observations(64, 4, seed=5)
    got = run_policy(load_exported(path, seed=7), obs)
    for g, w in zip(got, reference_actions(model, obs, "sample", seed=7), strict=True):
        assert_actions_match(g, w)
    modes = reference_actions(model, obs)
    differs = [
        not np.array_equal(_discrete(g, case), _discrete(m, case))
        for g, m in zip(got, modes, strict=True)
    ]
    assert all(differs)
    again = run_policy(load_exported(path, seed=7), obs)  # same seed, same draws
    for a, b in zip(again, got, strict=True):
        assert_actions_match(a, b)
    other = run_policy(load_exported(path, seed=8), obs)
    assert any(
        not np.array_equal(_discrete(a, case), _discrete(b, case))
        for a, b in zip(other, got, strict=True)
    )


def _discrete(action: Any, case: str) -> np.ndarray:
    """The discrete index array of a batched env action of a ``tests.deploy`` case."""
    if isinstance(action, dict):
        return next(v for v in action.values() if np.asarray(v).dtype.kind == "i")
    if isinstance(action, tuple):
        return next(v for v in action if isinstance(v, np.ndarray) and v.dtype.kind == "i")
    return np.asarray(action)


def test_mode_artifacts_are_unchanged_by_the_sampled_choice(artifact: Any) -> None:
    """A mode policy's sidecar has no ``discrete_choice`` entry and no noise input (sidecars
    and graphs written before the option are what is written now)."""
    meta = json.loads(sidecar_path(artifact("hybrid_factorized", "onnx")).read_text())
    assert "discrete_choice" not in meta["policy"]
    assert meta["artifact"]["inputs"] == ["obs"]


def test_sampled_choice_needs_a_discrete_part(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="discrete_choice 'sample' needs a discrete part"):
        export_model(make_model("beta"), tmp_path / "p.npz", "npz", discrete_choice="sample")
    with pytest.raises(ArtifactError, match="discrete_choice 'argmax' is not one of"):
        export_model(make_model("categorical"), tmp_path / "p.npz", "npz", discrete_choice="argmax")
