"""The one JSON cleaner for everything written as JSON (``eval.jsonl``, ``metrics.jsonl``,
``eval --out``): strict JSON has no NaN or +-inf, so every non-finite float becomes ``null``.

Why one function: the run directory's logs and the evaluation results used to be cleaned by
two copies that disagreed on +-inf (one wrote ``null``, the other kept the float, so a diverged
evaluation crashed ``json.dumps(..., allow_nan=False)``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_safe(x: Any) -> Any:
    """``x`` with NumPy scalars as Python numbers, tuples as lists and NaN/+-inf as None."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x
