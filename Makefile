# Two commands from a fresh clone: `make run` and `make test`. Everything else builds on `setup`.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Where Numba keeps compiled kernels between runs (ignored by git).
export NUMBA_CACHE_DIR := $(CURDIR)/.numba_cache

.PHONY: setup run test test-slow check lint format bench configs clean

setup: $(STAMP)

# Idempotent: re-runs only when pyproject.toml changes. torch first and pinned, so pip never
# resolves a CUDA build.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

# The main job: train IMPALA-Hybrid on the UAV simulator (local runtime, a few minutes on
# 2 cores), then evaluate it next to the classical policies on the same seeds.
RUN_STEPS ?= 16000000
RUN_DIR   := runs/uav-$(shell date +%Y%m%d-%H%M%S)

run: setup
	$(BIN)/impala-hybrid train --preset uav_hybrid --runtime local --out $(RUN_DIR) \
		--set total_steps=$(RUN_STEPS)
	$(BIN)/impala-hybrid eval --policy all --run $(RUN_DIR) --episodes 4 --num-envs 64 --seed 0

# TEST_JOBS pytest-xdist workers; the Ray tests share one of them (tests/conftest.py).
TEST_JOBS ?= 2

test: setup
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_JOBS) --dist loadgroup

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# configs/NAME.yaml: each preset fully resolved (tests/test_config_io.py keeps them in sync).
configs: setup
	$(BIN)/python -c "from impala_hybrid.experiments.config_io import save_config; \
	from impala_hybrid.experiments.spec import PRESETS; \
	[save_config(f(), f'configs/{n}.yaml') for n, f in PRESETS.items()]"

check: lint test

bench: setup
	$(BIN)/python -m benchmarks.run --out docs/benchmarks.md

clean:
	rm -rf $(VENV) .numba_cache .pytest_cache .mypy_cache .ruff_cache
