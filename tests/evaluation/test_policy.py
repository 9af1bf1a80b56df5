"""``TorchPolicy``: the inference settings that keep evaluation fast on a busy machine."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from impala_hybrid.evaluation.policy import TorchPolicy
from tests.deploy import OBS_DIM, make_model


def test_each_call_runs_on_one_thread_and_restores_the_process_setting() -> None:
    """With torch's one thread per core, ``eval --run`` took 39 s instead of 6 s while another
    process held a core (threads waiting on each other); a call must run on ``threads``."""
    model = make_model("hybrid_factorized")
    forward, seen = model.forward, []

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(torch.get_num_threads())
        return forward(*args, **kwargs)

    model.forward = spy  # type: ignore[method-assign]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        TorchPolicy(model)(np.zeros((4, OBS_DIM), np.float32))
        TorchPolicy(model, threads=2)(np.zeros((4, OBS_DIM), np.float32))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2]


def test_a_bfloat16_trunk_is_evaluated_in_float32_as_it_is_exported() -> None:
    """Evaluation scores the policy that export deploys: a network training its trunk in
    bfloat16 acts, through ``TorchPolicy``, exactly as its float32 twin does (and as the
    artifact, which computes in float32), and keeps training in bfloat16 afterwards."""
    model = make_model("hybrid_factorized")
    obs = np.random.default_rng(0).normal(size=(16, OBS_DIM)).astype(np.float32) * 2.0
    want = TorchPolicy(model)(obs)
    model.trunk_dtype = "bfloat16"
    with torch.no_grad():  # the bf16 trunk really computes something else
        bf16 = model(torch.from_numpy(obs)[None], torch.ones(1, 16, dtype=torch.bool))
        with model.full_precision():
            full = model(torch.from_numpy(obs)[None], torch.ones(1, 16, dtype=torch.bool))
    assert not torch.equal(bf16.params["mean"], full.params["mean"])
    got = TorchPolicy(model)(obs)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert model.trunk_dtype == "bfloat16"
