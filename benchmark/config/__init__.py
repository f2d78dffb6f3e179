"""Run configuration: typed sections, defaults per profile, validated `section.key=value` overrides.

A run's configuration is resolved in layers, later ones winning:
engine defaults < the dataset's default model < dataset defaults for the profile < method presets
for (dataset, profile) < the user's overrides. Every layer is a nested mapping
{section: {key: value}}; values from the command line arrive as strings and are parsed by the
field's declared type (benchmark/config/values.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

from benchmark.config.values import as_layers, build_section, check, merge_layers, plain
from benchmark.errors import ConfigError
from benchmark.models import ModelConfig

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
    init_from: str | None = None  # start from a finished run: "run:<method>" or a checkpoint file (start.py)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast of the training steps (fp16 with a grad scaler)
    workers: int | None = None  # decoding processes for file-backed splits; None: one per core (not in the key)
    decoder: Literal["auto", "pil", "device"] = "auto"  # JPEGs of file-backed splits: data/device_decode.py

    def __post_init__(self) -> None:
        check(self.epochs >= 0, "train.epochs", "an integer >= 0", self.epochs)
        check(self.batch_size >= 1, "train.batch_size", "an integer >= 1", self.batch_size)
        check(0 < self.lr <= 10, "train.lr", "a float in (0, 10]", self.lr)
        check(all(0 <= b < 1 for b in self.adam_betas), "train.adam_betas", "two floats in [0, 1)", self.adam_betas)
        check(0 < self.adam_eps <= 1, "train.adam_eps", "a float in (0, 1]", self.adam_eps)
        check(self.grad_clip is None or self.grad_clip > 0, "train.grad_clip", "a float > 0 or none", self.grad_clip)
        check(self.samples is None or self.samples >= 1, "train.samples", "an integer >= 1 or none", self.samples)
        check(self.workers is None or self.workers >= 0, "train.workers", "an integer >= 0 or none", self.workers)
        check(self.init_from is None or bool(self.init_from.strip()), "train.init_from",
              "run:<method>, a checkpoint file or none", self.init_from)


@dataclass
class EvalConfig:
    """Which evaluation suites run, and on which splits clean accuracy is reported."""

    suites: tuple[str, ...] = ("accuracy", "robustness")
    splits: tuple[str, ...] = ("val", "test")
    batch_size: int = 256
    samples: int | None = None  # score a fixed seeded subset of each set; None = all of it
    workers: int | None = None  # decoding processes for file-backed splits; None: one per core (not in the key)
    decoder: Literal["auto", "pil", "device"] = "auto"  # JPEGs of file-backed splits: data/device_decode.py

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "eval.batch_size", "an integer >= 1", self.batch_size)
        check(self.samples is None or self.samples >= 1, "eval.samples", "an integer >= 1 or none", self.samples)
        check(self.workers is None or self.workers >= 0, "eval.workers", "an integer >= 0 or none", self.workers)
        check(len(set(self.suites)) == len(self.suites), "eval.suites", "names without repeats", self.suites)
        check(len(set(self.splits)) == len(self.splits), "eval.splits", "names without repeats", self.splits)


@dataclass
class RunConfig:
    """Everything that determines a run's numbers (paths and device are not part of it).

    `versions` holds the version attributes of the method, dataset and encoder: they join the key,
    so a change that alters training makes old checkpoints stale while other changes do not.
    `start` is the training key of the weights a run starts from (`train.init_from`), so runs
    from different starting weights never share a key."""

    method: str
    dataset: str
    profile: str
    seed: int
    train: TrainConfig
    eval: EvalConfig
    model: ModelConfig
    method_params: Any
    dataset_params: Any
    suite_params: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    start: str | None = None

    def suite(self, name: str) -> Any:
        return self.suite_params.get(name)

    @property
    def method_name(self) -> str:
        """What rows and file names call the method: its registered name, or, for a model
        evaluated by `benchmark evaluate`, the model's own name."""
        return str(getattr(self.method_params, "name", self.method)) if self.method == "external" else self.method

    def to_dict(self) -> dict[str, Any]:
        """Nested plain data, keyed by the same section names that overrides use."""
        out: dict[str, Any] = {
            "run": {"method": self.method, "dataset": self.dataset, "profile": self.profile, "seed": self.seed,
                    "versions": dict(self.versions)},
            "train": plain(self.train),
            "eval": plain(self.eval),
            "model": plain(self.model),
            "method": plain(self.method_params) or {},
            "dataset": plain(self.dataset_params) or {},
        }
        out.update({name: plain(params) for name, params in self.suite_params.items()})
        if self.start is None:  # runs from scratch keep the keys they had before init_from existed
            del out["train"]["init_from"]
        else:
            out["run"]["start"] = self.start
        if self.train.precision == "fp32":  # the same: only lower precisions change the numbers
            del out["train"]["precision"]
        for section in ("train", "eval"):  # how many processes decode never changes a number
            del out[section]["workers"]
            if out[section]["decoder"] == "auto":  # like the device: follows the machine (keys as before)
                del out[section]["decoder"]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def key(self, *, with_seed: bool = True) -> str:
        """A deterministic hash of the resolved configuration (16 hex digits)."""
        data = self.to_dict()
        if not with_seed:
            data["run"] = {k: v for k, v in data["run"].items() if k != "seed"}
        return digest(data)

    def training_key(self) -> str:
        """The key of what determines the trained weights (the evaluation settings left out)."""
        return training_key(self.to_dict())


def digest(data: Mapping[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


TRAINING_SECTIONS = ("run", "train", "model", "method", "dataset")


def training_key(config: Mapping[str, Any]) -> str:
    """`RunConfig.training_key` of a saved config (`RunConfig.to_dict`, e.g. from a checkpoint)."""
    return digest({k: v for k, v in config.items() if k in TRAINING_SECTIONS})


def resolve(
    method: str,
    dataset: str,
    *,
    profile: str = "quick",
    seed: int = 0,
    overrides: Mapping[str, Mapping[str, Any]] | Sequence[str] = (),
    start: str | None = None,
) -> RunConfig:
    """Resolve a run's configuration from the registries' defaults and the user's overrides.

    With `train.init_from`, the starting weights' training key joins the config: computed from the
    starting run's config for `run:<method>`, read from the file for a checkpoint, or `start`
    when the caller knows it (a saved config)."""
    from benchmark.registry import DATASETS, ENCODERS, METHODS, SUITES

    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    method_cls = METHODS.get(method)
    dataset_cls = DATASETS.get(dataset)
    check_presets(method, method_cls.presets)
    user = as_layers(overrides)
    merged = merge_layers({"model": dict(dataset_cls.default_model)}, dataset_cls.defaults(profile),
                          method_cls.defaults(dataset, profile), user)

    eval_cfg = build_section(EvalConfig, merged.get("eval", {}), "eval")
    suite_types = {name: getattr(SUITES.get(name), "Params", None) for name in eval_cfg.suites}
    merged = known_sections(merged, user, suite_types)
    train = build_section(TrainConfig, merged.get("train", {}), "train")
    if train.epochs == 0 and not eval_cfg.suites:
        raise ConfigError("nothing to do: train.epochs=0 and no eval.suites; train for at least one epoch or name a "
                          "suite to evaluate")
    model = build_section(ModelConfig, merged.get("model", {}), "model")
    method_params = build_section(method_cls.Params, merged.get("method", {}), "method")
    method_cls.check(method_params, train)
    dataset_params = build_section(dataset_cls.Params, merged.get("dataset", {}), "dataset")
    if train.init_from is None:
        start = None
    elif start is None:
        shared = {"train": plain(train), "model": plain(model), "dataset": plain(dataset_params) or {}}
        start = start_key(train.init_from, dataset, profile, seed, shared)
    return RunConfig(
        method=method,
        dataset=dataset,
        profile=profile,
        seed=seed,
        train=train,
        eval=eval_cfg,
        model=model,
        method_params=method_params,
        dataset_params=dataset_params,
        suite_params={
            name: build_section(cls, merged.get(name, {}), name) for name, cls in suite_types.items() if cls
        },
        versions={"method": method_cls.version, "dataset": dataset_cls.version,
                  "encoder": getattr(ENCODERS.get(model.encoder), "version", 1)},
        start=start,
    )


def known_sections(merged: dict[str, dict[str, Any]], user: Mapping[str, Any],
                   suite_types: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The merged layers without the defaults of suites this run does not evaluate; a section
    nobody knows, or a suite's section the user set without evaluating it, is a ConfigError."""
    from benchmark.registry import SUITES

    sections = {"train", "eval", "model", "method", "dataset", *suite_types}
    out = {}
    for section, values in merged.items():
        if section in sections:
            out[section] = values
        elif not (section in SUITES and section not in user):
            hint = " (add it to eval.suites)" if section in SUITES else ""
            raise ConfigError(f"unknown config section {section!r}{hint}; expected one of "
                              f"{', '.join(sorted(sections))}")
    return out


RUN_PREFIX = "run:"
CARRIED_SECTIONS = ("train", "model", "dataset")  # the user's settings a starting run shares


def start_layers(init_from: str, dataset: str, profile: str,
                 shared: Mapping[str, Mapping[str, Any]]) -> tuple[str, dict[str, dict[str, Any]]]:
    """The method and the overrides of the run that `train.init_from=run:<method>` starts from:
    that method on the same dataset, profile and seed, with the train, model and dataset settings
    of the run that starts from it (`shared`; never its method.* settings), then the dataset's
    starting protocol (e.g. COCO's 100 vanilla epochs), trained from scratch and evaluated on
    nothing (its checkpoint is what is used)."""
    from benchmark.registry import DATASETS, METHODS

    method = init_from[len(RUN_PREFIX):].strip()
    METHODS.get(method)
    carried = {k: dict(v) for k, v in shared.items() if k in CARRIED_SECTIONS}
    carried.get("train", {}).pop("init_from", None)
    return method, merge_layers(carried, DATASETS.get(dataset).start(profile),
                                {"train": {"init_from": None}, "eval": {"suites": []}})


def start_config(init_from: str, dataset: str, profile: str, seed: int,
                 shared: Mapping[str, Mapping[str, Any]]) -> RunConfig:
    """The run that `train.init_from=run:<method>` starts from (`start_layers`)."""
    method, layers = start_layers(init_from, dataset, profile, shared)
    return resolve(method, dataset, profile=profile, seed=seed, overrides=layers)


def start_key(init_from: str, dataset: str, profile: str, seed: int,
              shared: Mapping[str, Mapping[str, Any]]) -> str:
    if init_from.startswith(RUN_PREFIX):
        return start_config(init_from, dataset, profile, seed, shared).training_key()
    from benchmark.checkpoint import finished_checkpoint

    return training_key(finished_checkpoint(init_from, dataset)["config"])


def check_presets(method: str, presets: Mapping[str, Any]) -> None:
    """A method's presets are keyed by registered dataset names; any other key is refused."""
    from benchmark.registry import DATASETS

    unknown = [name for name in presets if name not in DATASETS]
    if unknown:
        raise ConfigError(f"method {method!r} has a preset for unknown dataset {unknown[0]!r}; presets are keyed by "
                          f"registered dataset names ({', '.join(DATASETS.names())})")


def from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Rebuild a configuration saved by `RunConfig.to_dict` (e.g. from a checkpoint). The versions
    are today's: compare `key()` with the saved run key to tell whether it still matches."""
    run = data["run"]
    overrides = {k: v for k, v in data.items() if k != "run"}
    return resolve(run["method"], run["dataset"], profile=run["profile"], seed=run["seed"], overrides=overrides,
                   start=run.get("start"))
