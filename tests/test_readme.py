"""What the README tells a new user holds: its imports import, its make variables exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def test_every_import_the_readme_shows_works() -> None:
    imports = re.findall(r"from (impala_hybrid[\w.]*) import (\w+)", README)
    assert ("impala_hybrid.experiments.spec", "TrainConfig") in imports
    for module, name in imports:
        namespace: dict = {}
        exec(f"from {module} import {name}", namespace)
        assert name in namespace, (module, name)


def test_make_run_length_and_venv_are_as_documented() -> None:
    makefile = (ROOT / "Makefile").read_text()
    steps = re.search(r"make run RUN_STEPS=(\d+)", README)
    assert steps is not None and "RUN_STEPS ?=" in makefile
    assert "--set total_steps=$(RUN_STEPS)" in makefile
    assert "VENV    := .venv" in makefile and "BIN     := $(VENV)/bin" in makefile
    assert "source .venv/bin/activate" in README
