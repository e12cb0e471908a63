"""Typed experiment configuration, loaded from YAML with ``key=value`` overrides.

Every YAML key maps onto a dataclass field. Unknown keys and values of the wrong
type are rejected with a :class:`ConfigError` that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from .checks import check_config
from .schema import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    InitConfig,
    MethodConfig,
    ModelConfig,
    TasksConfig,
    TrainConfig,
    WeightingConfig,
)

__all__ = [
    "PACKAGED_CONFIGS", "PROTOCOLS", "ConfigError", "DataConfig", "ExperimentConfig", "InitConfig", "MethodConfig",
    "ModelConfig", "TasksConfig", "TrainConfig", "WeightingConfig", "apply_overrides", "config_from_dict",
    "expand_overrides", "load_config", "parse_override", "protocol_overrides", "read_config_file", "replace",
    "resolve_config_path",
]

PACKAGED_CONFIGS = Path(__file__).parents[1] / "configs"
#: named sets of overrides (``protocols/<name>.yaml``), given as ``@<name>`` among the overrides
PROTOCOLS = Path(__file__).parents[1] / "protocols"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping to {_type_name(typing.get_args(tp)[1])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false", type(None): "null"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (ints accepted as floats)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, where)
            except ConfigError:
                continue
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is list:
        if isinstance(value, list):
            (item,) = typing.get_args(tp)
            return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            key_tp, val_tp = typing.get_args(tp)
            return {_convert(k, key_tp, where): _convert(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]!s}; valid keys{' of ' + where if where else ''}: {', '.join(names)}"
        )
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)



def config_from_dict(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a nested dict into an :class:`ExperimentConfig`; errors name ``source`` and the key."""
    try:
        cfg = _build(ExperimentConfig, data, "")
        check_config(cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def replace(cfg: ExperimentConfig, **changes: Any) -> ExperimentConfig:
    """A copy of ``cfg`` with ``changes``, checked again as a loaded config is (``ConfigError`` naming the key).
    Configs are frozen: this is how one changes. A section's changes are a mapping of its fields
    (``replace(cfg, train={"epochs": 1})``) or a whole section; a top-level field takes its value
    (``out_dir="runs/x"``)."""
    sections = {
        key: dataclasses.replace(getattr(cfg, key), **value)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(getattr(cfg, key, None)) else value
        for key, value in changes.items()
    }
    updated = dataclasses.replace(cfg, **sections)
    check_config(updated)
    return updated


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-3"`` -> (["train", "lr"], 0.001); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    # YAML reads 1e-3 as a string; numbers written that way are meant as floats
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return key.split("."), value


def _override_value(value: Any) -> str:
    """``value`` as the text of an override that reads back as ``value``."""
    if isinstance(value, str) and parse_override(f"x={value}")[1] == value:
        return value
    return json.dumps(value)


def protocol_overrides(name: str) -> list[str]:
    """The ``section.key=value`` overrides of protocol ``name`` (``PROTOCOLS/<name>.yaml``), in its file's order."""
    path = PROTOCOLS / f"{name}.yaml"
    if not name or "/" in name or not path.is_file():
        known = ", ".join(sorted("@" + p.stem for p in PROTOCOLS.glob("*.yaml")))
        raise ConfigError(f"@{name}: no such protocol (packaged: {known})")
    data = read_config_file(path)
    return [f"{section}.{key}={_override_value(value)}"
            for section, keys in data.items() for key, value in keys.items()]


def expand_overrides(overrides: Sequence[str]) -> list[str]:
    """``overrides`` with every ``@<protocol>`` replaced, in place, by its ``key=value`` overrides (later ones still
    override it): what a run records, so that its overrides say what it ran."""
    out: list[str] = []
    for text in overrides:
        out += protocol_overrides(text[1:]) if text.startswith("@") else [text]
    return out


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.sub=value`` override set (``@<protocol>``: its overrides, there)."""
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for text in expand_overrides(overrides):
        keys, value = parse_override(text)
        node = out
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {k} is not a section")
            node = child
        node[keys[-1]] = value
    return out


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path, or the name of a packaged config such as ``quickstart``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix in ("", ".yaml", ".yml") and not path.is_absolute() and ".." not in path.parts:
        packaged = PACKAGED_CONFIGS / path.with_suffix(".yaml")
        if packaged.is_file():
            return packaged
    available = ", ".join(sorted(str(p.relative_to(PACKAGED_CONFIGS).with_suffix(""))
                                 for p in PACKAGED_CONFIGS.rglob("*.yaml")))
    raise ConfigError(f"{name_or_path}: no such file, and not a packaged config (packaged: {available})")


def read_config_file(path: Path) -> Any:
    """The YAML content of ``path``; a file that is not UTF-8 YAML text is a one-line ``ConfigError`` naming it."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8: byte 0x{raw[err.start]:02x} at position "
                          f"{err.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return data


def load_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment file (or packaged config name), apply overrides, validate."""
    path = resolve_config_path(name_or_path)
    data = read_config_file(path)
    if data is None:
        raise ConfigError(f"{path}: empty config file (no key set); write the keys to change, e.g. out_dir: runs/x, "
                          "or start from a packaged config such as quickstart")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return config_from_dict(apply_overrides(data, overrides), source=str(path))
