"""Optional dependencies imported on first use, with an error that says which extra to install.

The report tools (rliable, moocore, matplotlib) live in the ``report`` extra: training and
evaluation do not need them, so modules import them inside the functions that use them, through
:func:`require`, instead of at import time.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str = "report") -> ModuleType:
    """``import module`` or an ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module} is needed here: pip install 'impala-hybrid[{extra}]' "
            f"(make setup installs it): {err}"
        ) from err
