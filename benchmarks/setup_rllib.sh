#!/usr/bin/env bash
# Builds .venv-rllib, the separate venv for the optional RLlib IMPALA comparison
# (benchmarks/rllib_impala.py). Separate from .venv because RLlib pins its own gymnasium.
#
# Idempotent like `make setup`: re-runs only when this script or pyproject.toml is newer than
# the stamp file. torch goes in first and pinned, so pip never resolves a CUDA build.
#
#   bash benchmarks/setup_rllib.sh          # then:
#   .venv-rllib/bin/python -m benchmarks.rllib_impala --seconds 60 --json rllib.json
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${PY:-python3.11}"
VENV=.venv-rllib
BIN="$VENV/bin"
STAMP="$VENV/.installed"
TORCH_VERSION=2.13.0
RAY_VERSION=2.60.0
# Where Numba keeps compiled kernels, as in the Makefile (ignored by git).
export NUMBA_CACHE_DIR="$PWD/.numba_cache"

fail() {
    echo "setup_rllib.sh: FAILED: $*" >&2
    exit 1
}
trap 'fail "command on line $LINENO exited with status $? (see the output above)"' ERR

if [[ -f "$STAMP" && "$STAMP" -nt pyproject.toml && "$STAMP" -nt "${BASH_SOURCE[0]}" ]]; then
    echo "setup_rllib.sh: $VENV is up to date"
    exit 0
fi

command -v "$PY" >/dev/null || fail "$PY not found (set PY=/path/to/python3.11)"
test -x "$BIN/python" || "$PY" -m venv "$VENV"
"$BIN/python" -m pip install -q --upgrade pip
"$BIN/python" -m pip install -q "torch==$TORCH_VERSION"
# ray[rllib] brings numpy, pyyaml and the gymnasium version RLlib pins.
"$BIN/python" -m pip install -q "ray[rllib]==$RAY_VERSION"
# ray[rllib] pins gymnasium==1.2.2, which meets our gymnasium>=1.1. Add the rest of our
# runtime deps (pyproject.toml), then our package without deps so pip cannot move that pin.
"$BIN/python" -m pip install -q "numba>=0.59" "rich>=13.0" "tensorboard>=2.15"
"$BIN/python" -m pip install -q --no-deps -e .
"$BIN/python" -m pip check || fail "pip check found conflicting requirements in $VENV"
# Our env under RLlib's gymnasium: the native vector env that the benchmark has RLlib step.
"$BIN/python" - <<'EOF' || fail "ray.rllib, impala_hybrid or the UAV env does not work in $VENV"
import gymnasium
import ray.rllib  # noqa: F401

import impala_hybrid

env = gymnasium.make_vec(impala_hybrid.UAVNET_ID, 4, vectorization_mode="vector_entry_point")
env.reset(seed=0)
env.step(env.action_space.sample())
EOF
touch "$STAMP"
echo "setup_rllib.sh: $VENV ready (ray $RAY_VERSION, torch $TORCH_VERSION)"
