"""Shared test setup.

``make test`` runs the suite on 2 pytest-xdist workers (``--dist loadgroup``). The tests that
start a Ray cluster share one worker (group ``ray``): two local clusters started at once on
one machine compete for ports and for its cores, and a Ray test waits on its own actors.
"""

from __future__ import annotations

import pytest

#: Test modules that start Ray (``ray.init``): run them on one xdist worker.
RAY_MODULES = ("test_ray.py", "test_pbt.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in RAY_MODULES:
            item.add_marker(pytest.mark.xdist_group("ray"))
