"""Models trained elsewhere, evaluated as given: the `external` encoder.

Most people who ask "does my model rely on the background?" hold a torchvision or timm model, a
checkpoint of their own training code, or a TorchScript file. The `external` encoder wraps such a
model whole: `features` is the model (image to logits) and `classifier` the identity, so the
project's Classifier, attacks and explainers use it unchanged. Its normalisation is declared
(`mean`, `std`) and applied inside the Classifier, so attacks stay in [0, 1] pixel space; a model
that takes [0, 1] images declares none. Nothing is downloaded: weights come from files.

Specs: `torchvision:NAME` (ImageNet normalisation by default), `timm:NAME` (timm installed; its
own normalisation by default), `module.path:factory` or `path/to/file.py:factory` (a function
returning an nn.Module), `torchscript:FILE`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.data.split import DataInfo
from benchmark.errors import ConfigError, DataError
from benchmark.models import Encoder
from benchmark.registry import ENCODERS

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ExternalEncoder(Encoder):
    """A whole classifier as `features` (z = its logits), the identity as `classifier`."""

    def __init__(self, model: nn.Module, outputs: int, mean: tuple[float, ...], std: tuple[float, ...],
                 cam_layer: str | None = None):
        super().__init__()
        self.features = model
        self.classifier = nn.Identity()
        self.embed_dim = outputs
        self.mean, self.std = mean, std
        self.cam_layer = f"features.{cam_layer}" if cam_layer else None


@ENCODERS.register("external")
def external(info: DataInfo, spec: str = "", weights: str | None = None, mean: tuple[float, ...] | None = None,
             std: tuple[float, ...] | None = None, cam_layer: str | None = None,
             sha256: str | None = None) -> ExternalEncoder:
    """A model trained elsewhere (`benchmark evaluate --model SPEC`), evaluated as given."""
    model = load_model(spec, weights, sha256)
    default_mean, default_std = default_normalisation(spec, model, info)
    return wrap(model, info, mean or default_mean, std or default_std, cam_layer)


def wrap(model: nn.Module, info: DataInfo, mean: tuple[float, ...], std: tuple[float, ...],
         cam_layer: str | None = None) -> ExternalEncoder:
    """The encoder for `model`, after checking that it maps this dataset's images to one logit per class."""
    channels = info.input_shape[0]
    if len(mean) != channels or len(std) != channels or not all(s > 0 for s in std):
        raise ConfigError(f"model normalisation: expected {channels} means and {channels} positive standard "
                          f"deviations for {channels}-channel images, got mean {tuple(mean)} and std {tuple(std)}")
    if cam_layer and cam_layer not in dict(model.named_modules()):
        raise ConfigError(f"model cam_layer: the model has no submodule {cam_layer!r}")
    outputs = output_size(model, info)
    if outputs != info.num_classes:
        raise DataError(f"the model gives {outputs} outputs per image; this dataset scores {info.num_classes} "
                        f"classes ({', '.join(info.class_names[:3])}, ...)")
    return ExternalEncoder(model, outputs, tuple(mean), tuple(std), cam_layer)


def output_size(model: nn.Module, info: DataInfo) -> int:
    """The number of logits `model` gives for one image of the dataset's shape (a one-line
    DataError when it fails on such an image or does not return (batch, classes))."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.full((2, *info.input_shape), 0.5))
    except Exception as err:
        raise DataError(f"the model fails on a batch of {tuple(info.input_shape)} images: {type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(f"the model must return logits of shape (batch, classes); it returned {shape}")
    return int(out.shape[1])


def default_normalisation(spec: str, model: nn.Module, info: DataInfo) -> tuple[tuple[float, ...], ...]:
    """torchvision and timm models expect their training normalisation; others take [0, 1] images."""
    channels = info.input_shape[0]
    kind = spec.partition(":")[0]
    if kind == "timm":
        config = getattr(model, "pretrained_cfg", None) or {}
        return tuple(config.get("mean", IMAGENET_MEAN)), tuple(config.get("std", IMAGENET_STD))
    if kind == "torchvision" and channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.0,) * channels, (1.0,) * channels


def load_model(spec: str, weights: str | None = None, sha256: str | None = None) -> nn.Module:
    """The model a spec names, with its weights file loaded (a one-line error for anything missing)."""
    kind, sep, name = spec.partition(":")
    if not sep or not kind or not name:
        raise ConfigError(f"model spec {spec!r}: expected torchvision:NAME, timm:NAME, module.path:factory, "
                          "path/to/file.py:factory or torchscript:FILE")
    if kind == "torchscript":
        return torchscript(Path(name), sha256)
    if kind == "python":
        raise ConfigError(f"model spec {spec!r} names a model object given to evaluate_model(); it cannot be "
                          "rebuilt from the config (use a module.path:factory spec)")
    if kind == "torchvision":
        model = torchvision_model(name)
    elif kind == "timm":
        model = timm_model(name)
    else:
        model = factory_model(kind, name)
    if weights:
        load_weights(model, Path(weights), spec, sha256)
    return model


def torchvision_model(name: str) -> nn.Module:
    from torchvision import models

    try:
        return models.get_model(name, weights=None)
    except ValueError:
        raise ConfigError(f"torchvision has no model {name!r}; e.g. resnet18, resnet50, vit_b_16") from None


def timm_model(name: str) -> nn.Module:
    try:
        import timm  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError("timm:NAME needs timm: pip install timm (or the project's [timm] extra)") from None
    try:
        return timm.create_model(name, pretrained=False)
    except Exception as err:
        raise ConfigError(f"timm cannot build {name!r}: {err}") from None


def factory_model(where: str, function: str) -> nn.Module:
    """`module.path:factory` or `file.py:factory`: call the factory, which returns the model."""
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise ConfigError(f"model file {str(path)!r} not found")
        module_spec = importlib.util.spec_from_file_location(f"benchmark_model_{path.stem}", path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:
            raise ConfigError(f"model file {str(path)!r} failed to import: {type(err).__name__}: {err}") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise ConfigError(f"model module {where!r} cannot be imported ({err})") from None
    factory = getattr(module, function, None)
    if not callable(factory):
        raise ConfigError(f"model spec {where}:{function}: {where} has no function {function!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where}:{function}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def torchscript(path: Path, sha256: str | None) -> nn.Module:
    check_file(path, sha256, "TorchScript file")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as err:
        raise DataError(f"{str(path)!r} is not a TorchScript file ({type(err).__name__})") from None


def load_weights(model: nn.Module, path: Path, spec: str, sha256: str | None) -> None:
    """A state dict file (bare, or under `state_dict` / `model`) into `model`, every tensor matching."""
    check_file(path, sha256, "weights file", hint=weights_source(spec))
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"weights file {str(path)!r} is not a state dict torch.load can read safely "
                        f"({type(err).__name__}); for a TorchScript file use --model torchscript:FILE") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DataError(f"weights file {str(path)!r} holds {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise DataError(f"weights file {str(path)!r} does not fit {spec}: {first}") from None


def check_file(path: Path, sha256: str | None, what: str, hint: str = "") -> None:
    if not path.is_file():
        raise DataError(f"{what} {str(path)!r} not found{'; ' + hint if hint else ''}")
    if sha256 and file_sha256(path) != sha256:
        raise DataError(f"{what} {str(path)!r} changed since the run was configured (sha256 differs)")


def weights_source(spec: str) -> str:
    """Where the published weights of a spec can be fetched by hand (nothing is downloaded here)."""
    kind, _, name = spec.partition(":")
    if kind == "torchvision":
        try:
            from torchvision import models

            url = models.get_model_weights(name).DEFAULT.url
            return f"torchvision's weights for {name} are at {url} (a state dict)"
        except Exception:
            return ""
    if kind == "timm":
        return f"timm's weights for {name} are on the Hugging Face hub (timm/{name})"
    return ""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def module_sha256(model: nn.Module) -> str:
    """A digest of a model's tensors (names, shapes and values): its identity without a file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
