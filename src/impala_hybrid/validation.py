"""Self-validating config dataclasses: one error message format for every field of every config.

Every config in the project (simulator, model, learner, runtime) is a frozen dataclass whose
fields carry their allowed range in ``field(metadata=...)``. ``validate(self)`` in
``__post_init__`` checks type and range and raises :class:`ConfigError` naming the config, the
field, the value and what is allowed, so a bad YAML value or ``--set`` override fails at load
time with a readable message instead of as a stack trace deep inside a kernel.

Written by hand because pydantic would add a heavyweight dependency and a second object model
for what is a dozen lines over ``dataclasses.fields``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any


class ConfigError(ValueError):
    """A config field has a wrong type or a value outside its allowed range."""


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed interval for a numeric field (or each element of a tuple field).

    ``lo``/``hi`` of ``None`` mean unbounded; ``lo_open``/``hi_open`` exclude the endpoint.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))

    def describe(self) -> str:
        left = "(" if self.lo_open or self.lo is None else "["
        right = ")" if self.hi_open or self.hi is None else "]"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"{left}{lo}, {hi}{right}"


def spec(
    default: Any,
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    length: int | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """A dataclass field with its documentation and allowed values attached as metadata."""
    meta: dict[str, Any] = {"doc": doc}
    if lo is not None or hi is not None:
        meta["range"] = Range(lo, hi, lo_open, hi_open)
    if length is not None:
        meta["length"] = length
    if choices is not None:
        meta["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=meta)


def _fail(obj: object, name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{type(obj).__name__}.{name} = {value!r} is invalid: {allowed}")


def _check_scalar(obj: object, name: str, value: Any, kind: type, meta: dict[str, Any]) -> None:
    if kind is bool:
        if not isinstance(value, bool):
            raise _fail(obj, name, value, "must be true or false")
        return
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise _fail(obj, name, value, "must be an integer")
    if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _fail(obj, name, value, "must be a number")
    rng: Range | None = meta.get("range")
    if rng is not None and not rng.contains(float(value)):
        raise _fail(obj, name, value, f"allowed range is {rng.describe()}")


def validate(obj: object) -> None:
    """Check every field of dataclass ``obj`` against its type annotation and metadata.

    Supported annotations: ``int``, ``float``, ``bool``, ``str`` (with ``choices``),
    ``tuple[float, ...]``/``tuple[int, ...]`` (with optional ``length``; each element checked
    against ``range``; a list is accepted and stored as a tuple), and ``X | None`` of those.
    """
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        ann = ann.replace(" ", "")
        optional = ann.endswith("|None")
        if optional:
            if value is None:
                continue
            ann = ann[: -len("|None")]
        meta = dict(f.metadata)
        if "choices" in meta and value not in meta["choices"]:
            raise _fail(obj, f.name, value, f"must be one of {list(meta['choices'])}")
        if ann in ("int", "float", "bool"):
            _check_scalar(obj, f.name, value, {"int": int, "float": float, "bool": bool}[ann], meta)
        elif ann.startswith("tuple["):
            if not isinstance(value, tuple | list):
                raise _fail(obj, f.name, value, "must be a list of numbers")
            length = meta.get("length")
            if length is not None and len(value) != length:
                raise _fail(obj, f.name, value, f"must have exactly {length} elements")
            elem = int if ann.startswith("tuple[int") else float
            for i, v in enumerate(value):
                _check_scalar(obj, f"{f.name}[{i}]", v, elem, meta)
            if isinstance(value, list):  # YAML gives lists; keep frozen configs hashable
                object.__setattr__(obj, f.name, tuple(value))
        elif ann == "str" and not isinstance(value, str):
            raise _fail(obj, f.name, value, "must be a string")


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> documentation, for ``--help`` output and generated docs."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def finite_matrix(value: Any, name: str, *, rows: str, cols: str, min_rows: int = 1) -> Any:
    """``value`` as a finite float64 ``[rows, cols]`` array (``min_rows`` rows at least, one
    column at least), or a :class:`ConfigError` naming the argument and the allowed shape."""
    import numpy as np

    x = np.asarray(value, np.float64)
    if x.ndim != 2 or x.shape[0] < min_rows or x.shape[1] < 1:
        raise ConfigError(
            f"{name} of shape {x.shape} is invalid: must be [{rows}, {cols}] with {rows} in "
            f"[{min_rows}, inf) and {cols} in [1, inf)"
        )
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"{name} is invalid: every value must be finite (got NaN or inf)")
    return x
