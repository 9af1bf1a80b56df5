"""YAML <-> :class:`TrainConfig`: config files, ``--set`` overrides and the resolved dump.

A config file holds ``TrainConfig``'s top-level fields plus ``model:``, ``algo:``, ``local:``,
``ray:`` and ``a3c:`` sections (``ModelConfig``, ``IMPALAConfig``, ``LocalConfig``,
``RayConfig`` and ``A3CConfig`` fields); an optional ``preset: NAME`` key starts from a
preset of ``experiments.spec.PRESETS`` instead of the defaults, so a file can say only what
differs::

    preset: uav_hybrid
    total_steps: 500000
    env_kwargs: {episode_steps: 200}
    algo: {lr: 1.0e-3}

Layers apply in order (defaults or preset, file, ``--set`` overrides); mappings merge key by
key, everything else replaces. Values are validated by the dataclasses themselves
(``validation.py``), so a bad value fails with the same message whether it came from a file,
an override or Python. Unknown keys fail at load time with a close-match hint instead of being
ignored: a typo such as ``algo.lr_fianl`` would otherwise silently train with the default.

YAML 1.1 (PyYAML) reads ``1e-3`` as a string; numeric fields accept such strings, and an
integral float (``2e6``) for an integer field. ``env_kwargs`` of the UAV env are checked
against ``UAVNetConfig`` here too (other envs' kwargs are checked when the env is made).

:func:`dump_config` writes the fully resolved config (no preset key) with each field's
documentation as a comment; the run directory's ``config.yaml`` is this dump, and loading it
gives back an equal config.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from impala_hybrid import UAVNET_ID
from impala_hybrid.algos.a3c.config import A3CConfig
from impala_hybrid.algos.impala.config import IMPALAConfig
from impala_hybrid.experiments.spec import PRESETS, LocalConfig, RayConfig, TrainConfig
from impala_hybrid.models.actor_critic import ModelConfig
from impala_hybrid.validation import ConfigError, field_docs

SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "algo": IMPALAConfig,
    "local": LocalConfig,
    "ray": RayConfig,
    "a3c": A3CConfig,
}
PRESET_KEY = "preset"
_HEADER = (
    "# impala-hybrid training config (TrainConfig), fully resolved.\n"
    "# Run: impala-hybrid train --config THIS.yaml --out runs/NAME [--set section.field=value]\n"
)


# --- dict <-> config --------------------------------------------------------------------------


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as plain YAML/JSON data (tuples as lists, sections as nested dicts)."""

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [plain(v) for v in x]
        return x

    return {f.name: plain(_as_dict(getattr(cfg, f.name))) for f in dataclasses.fields(cfg)}


def _as_dict(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    return x


def _field_types(cls: type) -> dict[str, str]:
    return {f.name: str(f.type).replace(" ", "") for f in dataclasses.fields(cls)}


def _unknown(kind: str, key: str, known: Iterable[str], prefix: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=3)
    hint = f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""
    return ConfigError(f"unknown {kind} field {prefix + key!r}{hint}")


def _coerce(annotation: str, value: Any) -> Any:
    """Numbers YAML left as strings (``1e-3``) and integral floats for int fields."""
    base = annotation.removesuffix("|None")
    if base.startswith("tuple[") and isinstance(value, list | tuple):
        elem = "int" if base.startswith("tuple[int") else "float"
        return [_coerce(elem, v) for v in value]
    if base not in ("int", "float") or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return value  # the dataclass reports it with the field's name
    if base == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def coerce_fields(cls: type, data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``data`` as fields of dataclass ``cls``: unknown keys fail with a close-match hint
    (named with ``prefix``), numbers YAML left as strings are converted; values are checked
    when ``cls`` is constructed."""
    types = _field_types(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key not in types:
            raise _unknown(cls.__name__, key, types, prefix=prefix)
        out[key] = _coerce(types[key], value)
    return out


def _check_layer(layer: Mapping[str, Any]) -> dict[str, Any]:
    """Reject unknown keys and coerce numeric strings in one layer (file or overrides)."""
    top = _field_types(TrainConfig)
    out: dict[str, Any] = {}
    for key, value in layer.items():
        key = str(key)
        if key not in top:
            raise _unknown("TrainConfig", key, top)
        if key in SECTIONS:
            cls = SECTIONS[key]
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"TrainConfig.{key} = {value!r} is invalid: must be a mapping of "
                    f"{cls.__name__} fields"
                )
            out[key] = coerce_fields(cls, value, prefix=f"{key}.")
        elif key == "env_kwargs":
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"TrainConfig.env_kwargs = {value!r} is invalid: must be a mapping"
                )
            out[key] = {str(k): v for k, v in value.items()}
        else:
            out[key] = _coerce(top[key], value)
    return out


def _build(data: Mapping[str, Any]) -> TrainConfig:
    top = {k: v for k, v in data.items() if k not in SECTIONS}
    sections = {name: cls(**data.get(name, {})) for name, cls in SECTIONS.items()}
    cfg = TrainConfig(**top, **sections)
    check_env_kwargs(cfg)
    return cfg


def check_env_kwargs(cfg: TrainConfig) -> None:
    """For the UAV env, ``env_kwargs`` must be valid ``UAVNetConfig`` fields and values.

    Other envs take arbitrary kwargs that only their constructor knows; those are checked
    when the env is made.
    """
    if cfg.env != UAVNET_ID or not cfg.env_kwargs:
        return
    from impala_hybrid.envs.config import UAVNetConfig

    known = [f.name for f in dataclasses.fields(UAVNetConfig)]
    for key in cfg.env_kwargs:
        if key not in known:
            raise _unknown("UAVNetConfig", key, known, prefix="env_kwargs.")
    UAVNetConfig(**cfg.env_kwargs)


def config_from_dict(
    data: Mapping[str, Any], *, base: TrainConfig | None = None, source: str = "config"
) -> TrainConfig:
    """A validated config from plain data (``preset`` key allowed) over ``base``.

    Errors are :class:`ConfigError` prefixed with ``source`` (a file name or ``--set``).
    """
    try:
        layer = dict(data)
        start = base
        if PRESET_KEY in layer:
            start = preset_config(layer.pop(PRESET_KEY))
        merged = _merge(config_to_dict(start or TrainConfig()), _check_layer(layer))
        return _build(merged)
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"{source}: {e}") from None


def preset_config(name: Any) -> TrainConfig:
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]()


# --- --set overrides --------------------------------------------------------------------------


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """``["algo.lr=1e-3", "total_steps=1000", "model.hidden=[64,64]"]`` -> nested overrides.

    Keys are ``field`` or ``section.field`` (``model``, ``algo`` or ``env_kwargs``); values are
    YAML scalars or flow collections. Unknown fields raise :class:`ConfigError` naming the
    item; values are validated when the overrides are applied.
    """
    top = _field_types(TrainConfig)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects field=value or section.field=value, got {item!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            msg = str(e).splitlines()[0]
            raise ConfigError(f"--set {item}: cannot parse the value of {key!r}: {msg}") from None
        head, dot, sub = key.partition(".")
        try:
            if dot:
                if head not in (*SECTIONS, "env_kwargs"):
                    if head in top:
                        raise ConfigError(
                            f"TrainConfig.{head} has no sub-fields; use --set {head}=VALUE"
                        )
                    raise _unknown("TrainConfig", head, top)
                if not sub or "." in sub:
                    raise ConfigError(f"expected {head}.FIELD, got {key!r}")
                layer: dict[str, Any] = {head: {sub: value}}
            else:
                layer = {key: value}
            checked = _check_layer(layer)
        except ConfigError as e:
            raise ConfigError(f"--set {item}: {e}") from None
        out = _merge(out, checked)
    return out


# --- files ------------------------------------------------------------------------------------


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping, with errors that name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        msg = " ".join(str(e).split())
        raise ConfigError(f"{path}: not valid YAML: {msg}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    return data


def load_config(
    path: str | Path | None = None,
    *,
    preset: str | None = None,
    overrides: Iterable[str] = (),
) -> TrainConfig:
    """Defaults or ``preset``, then the YAML file at ``path``, then ``--set`` ``overrides``."""
    cfg = preset_config(preset) if preset is not None else TrainConfig()
    if path is not None:
        cfg = config_from_dict(read_yaml(path), base=cfg, source=str(path))
    sets = parse_set(overrides)
    if sets:
        cfg = config_from_dict(sets, base=cfg, source="--set")
    return cfg


def _scalar(x: Any) -> str:
    """One YAML flow value that PyYAML reads back as the same Python value."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return ".nan"
        if math.isinf(x):
            return ".inf" if x > 0 else "-.inf"
        text = repr(x)
        if "e" in text and "." not in text.split("e")[0]:  # YAML 1.1 floats need the dot
            mantissa, exp = text.split("e")
            text = f"{mantissa}.0e{exp}"
        return text
    if isinstance(x, str):
        plain = yaml.safe_dump(x, default_flow_style=True).removesuffix("\n...\n").strip()
        return plain if yaml.safe_load(plain) == x else json.dumps(x)
    if isinstance(x, list | tuple):
        return "[" + ", ".join(_scalar(v) for v in x) + "]"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{_scalar(str(k))}: {_scalar(v)}" for k, v in x.items()) + "}"
    raise TypeError(f"cannot write {type(x).__name__} to a config file")


def dump_config(cfg: TrainConfig) -> str:
    """The resolved config as commented YAML (field docs as comments); loads back equal."""
    lines = [_HEADER.rstrip("\n")]
    data = config_to_dict(cfg)
    top_docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        doc = top_docs[f.name]
        value = data[f.name]
        if f.name in SECTIONS:
            lines.append(f"{f.name}:  # {doc}")
            docs = field_docs(SECTIONS[f.name])
            for k, v in value.items():
                lines.append(f"  {k}: {_scalar(v)}  # {docs[k]}")
        elif isinstance(value, dict) and value:
            lines.append(f"{f.name}:  # {doc}")
            for k, v in value.items():
                lines.append(f"  {_scalar(str(k))}: {_scalar(v)}")
        else:
            lines.append(f"{f.name}: {_scalar(value)}  # {doc}")
    return "\n".join(lines) + "\n"


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write :func:`dump_config` to ``path`` (written whole, then renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dump_config(cfg))
    tmp.replace(path)
    return path
