"""Run configuration: typed sections, defaults per profile, validated `section.key=value` overrides.

A run's configuration is resolved in layers, later ones winning:
engine defaults < dataset defaults for the profile < method defaults for (dataset, profile)
< the user's overrides. Every layer is a nested mapping {section: {key: value}}; values from the
command line arrive as strings and are parsed by the field's declared type.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

from .errors import ConfigError

PROFILES = ("quick", "paper")


@dataclass
class TrainConfig:
    """How a model is trained; the method adds its own loss terms and optimiser settings."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    grad_clip: float | None = 1000.0  # gradient-norm clip of the reference code; None = off
    samples: int | None = None  # train on the first N of a seeded shuffle; None = the whole split
    augment: bool = False
    class_balanced: bool = False  # weight cross-entropy by N / (K * N_k)

    def __post_init__(self) -> None:
        _check(self.epochs >= 0, "train.epochs", "an integer >= 0", self.epochs)
        _check(self.batch_size >= 1, "train.batch_size", "an integer >= 1", self.batch_size)
        _check(0 < self.lr <= 10, "train.lr", "a float in (0, 10]", self.lr)
        _check(all(0 <= b < 1 for b in self.adam_betas), "train.adam_betas", "two floats in [0, 1)", self.adam_betas)
        _check(0 < self.adam_eps <= 1, "train.adam_eps", "a float in (0, 1]", self.adam_eps)
        _check(self.grad_clip is None or self.grad_clip > 0, "train.grad_clip", "a float > 0 or none", self.grad_clip)
        _check(self.samples is None or self.samples >= 1, "train.samples", "an integer >= 1 or none", self.samples)


@dataclass
class EvalConfig:
    """Which evaluation suites run, and on which splits clean accuracy is reported."""

    suites: tuple[str, ...] = ("accuracy", "robustness")
    splits: tuple[str, ...] = ("val", "test")
    batch_size: int = 256
    samples: int | None = None  # score a fixed seeded subset of each set; None = all of it

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "eval.batch_size", "an integer >= 1", self.batch_size)
        _check(len(set(self.suites)) == len(self.suites), "eval.suites", "names without repeats", self.suites)
        _check(len(set(self.splits)) == len(self.splits), "eval.splits", "names without repeats", self.splits)
        _check(self.samples is None or self.samples >= 1, "eval.samples", "an integer >= 1 or none", self.samples)


@dataclass
class RunConfig:
    """Everything that determines a run's numbers (paths and device are not part of it)."""

    method: str
    dataset: str
    profile: str
    seed: int
    train: TrainConfig
    eval: EvalConfig
    method_params: Any
    dataset_params: Any
    suite_params: dict[str, Any] = field(default_factory=dict)

    def suite(self, name: str) -> Any:
        return self.suite_params.get(name)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain data, keyed by the same section names that overrides use."""
        out: dict[str, Any] = {
            "run": {"method": self.method, "dataset": self.dataset, "profile": self.profile, "seed": self.seed},
            "train": _plain(self.train),
            "eval": _plain(self.eval),
            "method": _plain(self.method_params) or {},
            "dataset": _plain(self.dataset_params) or {},
        }
        out.update({name: _plain(params) for name, params in self.suite_params.items()})
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def key(self, *, with_seed: bool = True) -> str:
        """A deterministic hash of the resolved configuration (16 hex digits)."""
        data = self.to_dict()
        if not with_seed:
            data["run"] = {k: v for k, v in data["run"].items() if k != "seed"}
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve(
    method: str,
    dataset: str,
    *,
    profile: str = "quick",
    seed: int = 0,
    overrides: Mapping[str, Mapping[str, Any]] | Sequence[str] = (),
) -> RunConfig:
    """Resolve a run's configuration from the registries' defaults and the user's overrides."""
    from .registry import DATASETS, METHODS, SUITES

    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    method_cls = METHODS.get(method)
    dataset_cls = DATASETS.get(dataset)
    user = parse_overrides(overrides) if _is_assignment_list(overrides) else {k: dict(v) for k, v in overrides.items()}
    # Methods key their presets by the dataset's setting family (e.g. in9 trains like imagenet).
    preset = getattr(dataset_cls, "preset", "") or dataset
    merged = merge_layers(dataset_cls.defaults(profile), method_cls.defaults(preset, profile), user)

    eval_cfg = build_section(EvalConfig, merged.get("eval", {}), "eval")
    suite_types: dict[str, type | None] = {}
    for name in eval_cfg.suites:
        suite_types[name] = getattr(SUITES.get(name), "Params", None)
    sections: dict[str, type | None] = {
        "train": TrainConfig,
        "eval": EvalConfig,
        "method": method_cls.Params,
        "dataset": dataset_cls.Params,
        **suite_types,
    }
    for section in list(merged):
        if section in sections:
            continue
        if section in SUITES and section not in user:
            del merged[section]  # defaults for a suite this run does not evaluate
            continue
        hint = " (add it to eval.suites)" if section in SUITES else ""
        raise ConfigError(f"unknown config section {section!r}{hint}; expected one of {', '.join(sorted(sections))}")
    train = build_section(TrainConfig, merged.get("train", {}), "train")
    if train.epochs == 0 and not eval_cfg.suites:
        raise ConfigError("nothing to do: train.epochs=0 and no eval.suites; train for at least one epoch or name a "
                          "suite to evaluate")
    return RunConfig(
        method=method,
        dataset=dataset,
        profile=profile,
        seed=seed,
        train=train,
        eval=eval_cfg,
        method_params=build_section(method_cls.Params, merged.get("method", {}), "method"),
        dataset_params=build_section(dataset_cls.Params, merged.get("dataset", {}), "dataset"),
        suite_params={
            name: build_section(cls, merged.get(name, {}), name) for name, cls in suite_types.items() if cls
        },
    )


def from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Rebuild a configuration saved by `RunConfig.to_dict` (e.g. from a checkpoint)."""
    run = data["run"]
    overrides = {k: v for k, v in data.items() if k != "run"}
    return resolve(run["method"], run["dataset"], profile=run["profile"], seed=run["seed"], overrides=overrides)


# -- layers and overrides -----------------------------------------------------------------
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
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
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
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        items = _as_sequence(value, key)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise ConfigError(f"{key} expects {len(args)} values, got {len(items)}")
            return tuple(coerce(v, t, key) for v, t in zip(items, args))
        item_type = args[0] if args else Any
        parsed = [coerce(v, item_type, key) for v in items]
        return tuple(parsed) if origin is tuple else parsed
    if origin is dict:
        mapping = _as_json(value, key, dict, "a JSON object")
        kt, vt = args or (Any, Any)
        return {coerce(k, kt, key): coerce(v, vt, key) for k, v in mapping.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.strip().lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{key} expects true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key} expects an integer, got {value!r}")
    if tp is float:
        parsed = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parsed = float(value)
        elif isinstance(value, str):
            parsed = _parse_float(value)
        if parsed is None or not math.isfinite(parsed):
            raise ConfigError(f"{key} expects a finite number (such as 0.1, 1e-4 or 2/255), got {value!r}")
        return parsed
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} expects text, got {value!r}")
    return value


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


def _is_assignment_list(overrides: Any) -> bool:
    return not isinstance(overrides, Mapping)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return obj


def check_buildable(section: str, names: Sequence[str], build: Callable[[str], Any]) -> None:
    """Build each named plugin once with its settings, so that an unknown name or a bad option of
    a suite's grid fails while the configuration is resolved, as one ConfigError."""
    from .errors import BenchmarkError

    for name in names:
        try:
            build(name)
        except BenchmarkError as err:
            raise ConfigError(f"{section}: {err}") from None
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{section}: {name!r} cannot run with these settings: {err}") from None


def _check(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {expected}, got {value!r}")
