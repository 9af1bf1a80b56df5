"""Optional dependencies: a missing one names the extra that installs it."""

from __future__ import annotations

import pytest

from impala_hybrid.extras import require


def test_require_imports_and_names_the_extra() -> None:
    assert require("json").dumps([1]) == "[1]"
    with pytest.raises(ImportError, match=r"pip install 'impala-hybrid\[report\]'"):
        require("impala_hybrid_no_such_module")
