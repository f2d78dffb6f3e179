"""Setting values: `section.key=value` overrides, layered merging, and parsing and checking each
value against the type a dataclass field declares (strings from the command line are parsed;
numbers must be finite). Every failure is one ConfigError naming the key and what was expected."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from typing import Any, Callable, Literal, Mapping, Sequence

from benchmark.errors import ConfigError


def as_layers(overrides: Mapping[str, Mapping[str, Any]] | Sequence[str]) -> dict[str, dict[str, Any]]:
    """The user's overrides as config layers: "section.key=value" strings parsed, a mapping of
    sections copied (never changed in place)."""
    if isinstance(overrides, Mapping):
        return {section: dict(values) for section, values in overrides.items()}
    return parse_overrides(overrides)


def parse_overrides(assignments: Sequence[str]) -> dict[str, dict[str, str]]:
    """Turn ["train.lr=1e-4", ...] into {"train": {"lr": "1e-4"}} (values stay strings)."""
    out: dict[str, dict[str, str]] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            raise ConfigError(f"bad override {item!r}: expected section.key=value, e.g. train.lr=1e-4")
        out.setdefault(section, {})[name] = value.strip()
    return out


def merge_layers(*layers: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in (layer or {}).items():
            merged.setdefault(section, {}).update(values)
    return merged


def build_section(cls: type | None, values: Mapping[str, Any], section: str) -> Any:
    """Instantiate a section's dataclass from values, parsing and validating each field."""
    if cls is None:
        if values:
            raise ConfigError(f"section {section!r} takes no settings, got {', '.join(values)}")
        return None
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f"did you mean {section}.{close[0]}? " if close else ""
            raise ConfigError(
                f"unknown key {section}.{name}; {hint}known: {', '.join(f'{section}.{k}' for k in fields) or '(none)'}"
            )
        kwargs[name] = coerce(value, hints[name], f"{section}.{name}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"bad value in section {section!r}: {err}") from err


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Parse or check `value` against type `tp`; strings from the command line are parsed."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _union(value, typing.get_args(tp), key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key} must be one of {', '.join(map(str, typing.get_args(tp)))}, got {value!r}")
        return value
    if origin in (tuple, list):
        return _sequence(value, origin, typing.get_args(tp), key)
    if origin is dict:
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {coerce(k, kt, key): coerce(v, vt, key) for k, v in _as_json(value, key, dict, "a JSON object").items()}
    scalar = _SCALARS.get(tp)
    return scalar(value, key) if scalar is not None else value


def _union(value: Any, args: tuple, key: str) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        if type(None) in args:
            return None
    errors = []
    for option in (a for a in args if a is not type(None)):
        try:
            return coerce(value, option, key)
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(errors[0] if errors else f"{key}: unexpected value {value!r}")


def _sequence(value: Any, origin: Any, args: tuple, key: str) -> tuple | list:
    items = _as_sequence(value, key)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(items) != len(args):
            raise ConfigError(f"{key} expects {len(args)} values, got {len(items)}")
        return tuple(coerce(v, t, key) for v, t in zip(items, args))
    item_type = args[0] if args else Any
    parsed = [coerce(v, item_type, key) for v in items]
    return tuple(parsed) if origin is tuple else parsed


def _to_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
        return value.strip().lower() in ("true", "yes", "1", "on")
    raise ConfigError(f"{key} expects true or false, got {value!r}")


def _to_int(value: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key} expects an integer, got {value!r}")


def _to_float(value: Any, key: str) -> float:
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        number = _parse_float(value)
    if number is None or not math.isfinite(number):
        raise ConfigError(f"{key} expects a finite number (such as 0.1, 1e-4 or 2/255), got {value!r}")
    return number


def _to_str(value: Any, key: str) -> str:
    if isinstance(value, str):
        return value
    raise ConfigError(f"{key} expects text, got {value!r}")


_SCALARS: dict[Any, Callable[[Any, str], Any]] = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def parse_float(text: str) -> float | None:
    """A number such as 0.1, 1e-4 or 2/255; None when the text is not one."""
    return _parse_float(text)


def _parse_float(text: str) -> float | None:
    text = text.strip()
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        return None


def _as_sequence(value: Any, key: str) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return _as_json(text, key, list, "a JSON list")
        return [part.strip() for part in text.split(",") if part.strip()]
    raise ConfigError(f"{key} expects a list (comma-separated or JSON), got {value!r}")


def _as_json(value: Any, key: str, kind: type, what: str) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{key} expects {what}: {err.msg} at character {err.pos}") from err
    if not isinstance(value, kind):
        raise ConfigError(f"{key} expects {what}, got {value!r}")
    return value


def plain(obj: Any) -> Any:
    """Dataclasses, tuples and mappings as nested plain data (JSON-ready)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    return obj


def check(ok: bool, key: str, expected: str, value: Any) -> None:
    """A one-line ConfigError unless `ok`."""
    if not ok:
        raise ConfigError(f"{key} must be {expected}, got {value!r}")
