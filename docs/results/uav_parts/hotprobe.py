"""Which way does the policy gradient push a hot queue's server? (docs/results.md)

Run from the repository root on run directories (``best`` or ``last`` checkpoints)::

    python docs/results/uav_parts/hotprobe.py 256 best runs/parts > hotprobe.md

``gradprobe.py``'s estimate of the score-function gradient of the intensities' pre-squash
means, split by threshold's rule (``hot.py``): for each of the five servers, over the steps
where its backlog calls for full speed ("hot") and over the others,

    g_d = sum_{t, env: hot} A_t (u_{t,d} - mu_{t,d}) / sigma_{t,d}^2 / (steps)

with the three advantages of ``gradprobe.py`` (discounted Monte Carlo minus the critic; the
critic's 32-step bootstrap, the learner's; Monte Carlo at gamma 0.999 less its step mean), on
``N`` training-split episodes with the policy as trained (everything drawn), first 500 steps.
``z``: over its standard error across episodes. A positive ``g`` on hot steps says "run a hot
server faster". Why by hand: the learner's own estimator, written out so it can be split by
state; nothing in the library does that outside a learner step.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from gradprobe import HORIZON, advantages, rollout  # the sibling script (not a package)
from hot import SERVERS

from impala_hybrid.envs.config import UAVNetConfig
from impala_hybrid.envs.heuristics import make_heuristic
from impala_hybrid.experiments.config_io import load_config


def hot_steps(run_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Threshold's rule on observations: ``[N, 5]``, True where a server should run flat out."""
    cfg = load_config(run_dir / "config.yaml")
    rule = make_heuristic("threshold", UAVNetConfig(**cfg.env_kwargs))
    return lambda obs: np.asarray(rule(obs)["intensity"])[:, :SERVERS] >= 1.0


def main(n: int, which: str, runs: list[Path]) -> None:
    print("| run | advantage | steps | g per server, L1-L4, H | z per server | z, all five |")
    print("|---|---|---|---|---|---:|")
    for run_dir in [r for root in runs for r in sorted(root.glob("seed*"))]:
        rewards, values, scores, hots = rollout(run_dir, n, which, hot_steps(run_dir))
        score, hot = scores[:HORIZON, :, :SERVERS], hots[:HORIZON]
        for name, adv in advantages(rewards, values).items():
            for label, mask in (("hot", hot), ("others", ~hot)):
                terms = adv[..., None] * score * mask  # [T, N, 5]
                per_episode = terms.sum(0) / max(int(mask.sum()), 1) * n  # [N, 5]
                mean = per_episode.mean(0)
                z = mean / (per_episode.std(0) / np.sqrt(n))
                total = per_episode.sum(1)
                z_all = total.mean() / (total.std() / np.sqrt(n))
                print(
                    f"| {run_dir.parent.name}/{run_dir.name} | {name} | {label} | "
                    f"{', '.join(f'{v:+.3f}' for v in mean)} | "
                    f"{', '.join(f'{v:+.1f}' for v in z)} | {z_all:+.1f} |"
                )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], [Path(p) for p in sys.argv[3:]])
