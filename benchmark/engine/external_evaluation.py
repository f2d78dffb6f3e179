"""Evaluate any trained classifier: `evaluate_model()` and `benchmark evaluate`.

A model trained elsewhere runs through the same path as a trained method (`run.execute`): the
dataset's suites, the same rows in the same Parquet layout, with `method` = the model's name,
`train_commit` = `external`, and its provenance (spec, weights file and its sha256, or the Python
class and a digest of its tensors) in the config and in every row's `extra.external`. It is never
trained, and it is scored on the test split by default (`eval.splits=test`: the validation split
serves the model selection of methods trained here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import nn

from benchmark.config import RunConfig, resolve
from benchmark.config.values import as_layers, merge_layers
from benchmark.engine.run import RunOutcome, execute
from benchmark.engine.weights import AsGiven, Workspace
from benchmark.errors import ConfigError
from benchmark.models import Classifier
from benchmark.models.third_party import file_sha256, module_sha256, wrap
from benchmark.registry import DATASETS


def evaluate_model(model: nn.Module, dataset: str, *, name: str,  # noqa: PLR0913 (public: one option per flag)
                   suites: Sequence[str] | None = None, profile: str = "quick", seed: int = 0,
                   overrides: Sequence[str] | Mapping[str, Any] = (),
                   preprocessing: tuple[Sequence[float], Sequence[float]] | None = None,
                   cam_layer: str | None = None, workspace: Workspace = Workspace()) -> RunOutcome:
    """Score `model` (images in [0, 1] to logits; or declare its normalisation as `preprocessing`
    = (mean, std), applied inside the wrapper so attacks stay in pixel space) on `dataset`'s
    suites and write the rows a run writes, under `name`. `cam_layer` names the submodule
    Grad-CAM explains (default: the last convolution)."""
    source = f"python:{type(model).__module__}.{type(model).__qualname__}"
    mean, std = preprocessing if preprocessing is not None else (None, None)
    options = {"spec": source, "sha256": module_sha256(model), "mean": mean, "std": std, "cam_layer": cam_layer}
    config = external_config({"name": name, "source": source}, dataset, options, None, suites=suites,
                             profile=profile, seed=seed, overrides=overrides)
    info = DATASETS.get(dataset)(config.dataset_params, workspace.data_root).info
    channels = info.input_shape[0]
    encoder = wrap(model, info, tuple(mean or (0.0,) * channels), tuple(std or (1.0,) * channels), cam_layer)
    classifier = Classifier(encoder, encoder.mean, encoder.std)
    return execute(config, AsGiven(classifier), workspace, tags={"external": source})


def evaluate_spec(spec: str, dataset: str, *, weights: Path | None = None,  # noqa: PLR0913 (public: one per flag)
                  name: str | None = None,
                  suites: Sequence[str] | None = None, profile: str = "quick", seed: int = 0,
                  overrides: Sequence[str] | Mapping[str, Any] = (),
                  preprocessing: tuple[Sequence[float], Sequence[float]] | None = None,
                  cam_layer: str | None = None, workspace: Workspace = Workspace()) -> RunOutcome:
    """`benchmark evaluate --model SPEC [--weights FILE]`: the model a spec names (models/external.py),
    built from the config, so the results file says exactly how to rebuild it."""
    sha = file_sha256(weights) if weights is not None and weights.is_file() else None
    if spec.startswith("torchscript:") and Path(spec.partition(":")[2]).is_file():
        sha = file_sha256(Path(spec.partition(":")[2]))
    mean, std = preprocessing if preprocessing is not None else (None, None)
    options = {"spec": spec, "sha256": sha, "mean": mean, "std": std, "cam_layer": cam_layer}
    source = spec + (f" + {weights}" if weights is not None else "")
    config = external_config({"name": name or default_name(spec), "source": source}, dataset, options, weights,
                             suites=suites, profile=profile, seed=seed, overrides=overrides)
    return execute(config, AsGiven(), workspace, tags={"external": source})


def external_config(method: Mapping[str, str], dataset: str, options: Mapping[str, Any], weights: Path | None, *,
                    suites: Sequence[str] | None, profile: str, seed: int,
                    overrides: Sequence[str] | Mapping[str, Any]) -> RunConfig:
    """The config of an external model's evaluation: method `external` (named `name`), the
    `external` encoder, no training, the test split, the dataset's suites unless `suites`;
    `method` gives the row name (`name`) and where the model came from (`source`)."""
    user = as_layers(overrides)
    for section in ("train", "model", "method"):
        if user.get(section):
            raise ConfigError(f"{section}.{next(iter(user[section]))}: an external model is evaluated as given; "
                              f"its {section} settings come from --model, --weights and --name")
    layers: dict[str, dict[str, Any]] = {
        "eval": {"splits": ["test"]},
        "train": {"epochs": 0, "init_from": None},
        "model": {"encoder": "external", "weights": str(weights) if weights is not None else None,
                  "options": {k: v for k, v in options.items() if v is not None}},
        "method": {"name": method["name"], "source": method["source"]},
    }
    if suites is not None:
        layers["eval"]["suites"] = list(suites)
    return resolve("external", dataset, profile=profile, seed=seed, overrides=merge_layers(layers, user))


def default_name(spec: str) -> str:
    """A row name from a spec: torchvision:resnet18 -> resnet18, pkg.models:build -> build."""
    kind, _, name = spec.partition(":")
    tail = Path(name).stem if kind == "torchscript" else name
    return "".join(c if c.isalnum() or c in "_.+-" else "-" for c in tail) or "external"
