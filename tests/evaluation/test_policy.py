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
