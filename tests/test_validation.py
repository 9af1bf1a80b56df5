"""The shared config validator: every bad field gets an error naming it, its value and range."""

from __future__ import annotations

import dataclasses

import pytest

from impala_hybrid.validation import ConfigError, Range, spec, validate


@dataclasses.dataclass(frozen=True)
class _Cfg:
    rate: float = spec(1.0, "a positive rate", lo=0.0, lo_open=True)
    count: int = spec(3, "a count", lo=1, hi=10)
    flag: bool = spec(True, "a switch")
    mode: str = spec("a", "a mode", choices=("a", "b"))
    weights: tuple[float, ...] = spec((0.5, 0.5), "two weights", lo=0.0, hi=1.0, length=2)
    limit: float | None = spec(None, "optional limit", lo=0.0)

    def __post_init__(self) -> None:
        validate(self)


def test_defaults_pass() -> None:
    _Cfg()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"rate": 0.0}, "_Cfg.rate = 0.0 is invalid: allowed range is (0, inf)"),
        ({"rate": float("nan")}, "_Cfg.rate"),
        ({"rate": "fast"}, "must be a number"),
        ({"count": 2.5}, "_Cfg.count = 2.5 is invalid: must be an integer"),
        ({"count": True}, "must be an integer"),
        ({"count": 11}, "allowed range is [1, 10]"),
        ({"flag": 1}, "must be true or false"),
        ({"mode": "c"}, "must be one of ['a', 'b']"),
        ({"weights": (0.5,)}, "must have exactly 2 elements"),
        ({"weights": (0.5, 1.5)}, "_Cfg.weights[1] = 1.5"),
        ({"limit": -1.0}, "_Cfg.limit = -1.0"),
    ],
)
def test_bad_field_names_field_value_and_range(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _Cfg(**kwargs)
    assert fragment in str(exc.value)


def test_list_becomes_tuple() -> None:
    cfg = _Cfg(weights=[0.25, 0.75])  # type: ignore[arg-type]
    assert cfg.weights == (0.25, 0.75)


def test_range_describe() -> None:
    assert Range(0.0, 1.0, lo_open=True).describe() == "(0, 1]"
    assert Range(None, 2.0).describe() == "(-inf, 2]"
