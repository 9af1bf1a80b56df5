"""The beam diagnostics tell MaxWeight (beam to the largest emergency backlog) from a policy
that ignores the queues."""

from __future__ import annotations

import numpy as np

from impala_hybrid.envs.heuristics import make_heuristic
from impala_hybrid.experiments.diagnose import main, transfer_diagnostics


def test_maxweight_beams_to_the_hottest_zone() -> None:
    d = transfer_diagnostics(make_heuristic("maxweight"), num_envs=8, steps=400, hot=0.3)
    assert d["hot_fraction"] > 0.0
    assert d["beam_to_hottest_when_hot"] > 0.9
    assert np.isclose(sum(d["transfer_distribution"]), 1.0)

    def fixed(obs: np.ndarray) -> dict[str, np.ndarray]:  # always beam from zone 1, slowly
        n = obs.shape[0]
        return {"transfer": np.ones(n, np.int64), "intensity": np.full((n, 6), 0.3, np.float32)}

    f = transfer_diagnostics(fixed, num_envs=8, steps=400, hot=0.3)
    assert f["hot_fraction"] > d["hot_fraction"]  # slow service builds queues
    assert f["beam_to_hottest_when_hot"] < 0.6
    np.testing.assert_allclose(f["intensity_mean_when_hot"], 0.3, rtol=1e-5)


def test_cli(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--policy", "local_only", "--num-envs", "2"]) == 0
    assert "local_only: hot" in capsys.readouterr().out
