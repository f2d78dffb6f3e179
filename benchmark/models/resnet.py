"""ResNet-18 and ResNet-50 encoders (torchvision's architectures) with the embed / head split.

z is the globally pooled feature vector (512-d for ResNet-18, 2048-d for ResNet-50); the head is
the final linear layer, so H-SPLID's mask sits between the pooling and `fc` as in the reference.
ResNet-18 can drop BatchNorm (the COCO reference trains it from scratch without). Pretrained
weights come from a local file or torchvision's cache; they are downloaded only when the network
allows, and a failure says where to put the file.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.data.split import DataInfo
from benchmark.errors import DataError
from benchmark.models import Encoder
from benchmark.registry import ENCODERS


class ResNetEncoder(Encoder):
    """A torchvision ResNet split into `features` (stem, four stages, global pooling) and `classifier` (fc)."""

    hidden_layers = ("features.stem", "features.layer1", "features.layer2", "features.layer3",
                     "features.layer4", "features.pool")
    cam_layer = "features.layer4"

    def __init__(self, net: Any):  # a torchvision ResNet (its parts are typed loosely by torch)
        super().__init__()
        self.embed_dim = net.fc.in_features
        stem = nn.Sequential(OrderedDict(conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool))
        self.features = nn.Sequential(OrderedDict(
            stem=stem, layer1=net.layer1, layer2=net.layer2, layer3=net.layer3, layer4=net.layer4,
            pool=nn.Sequential(net.avgpool, nn.Flatten()),
        ))
        self.classifier = nn.Sequential(OrderedDict(fc=net.fc))


def no_norm(channels: int) -> nn.Module:
    """Stands where BatchNorm would (keeps the architecture's module names)."""
    return nn.Identity()


def pretrained_state(arch: str, weights: str) -> dict[str, torch.Tensor]:
    """A torchvision state dict: `weights` is a file path or a weight name such as IMAGENET1K_V2."""
    path = Path(weights).expanduser()
    if path.suffix in (".pt", ".pth") or path.exists():
        if not path.is_file():
            raise DataError(f"encoder weights file {str(path)!r} not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise DataError(f"encoder weights {str(path)!r} are not a readable state dict "
                            f"({type(err).__name__})") from err
        return state.get("state_dict", state) if isinstance(state, dict) else state
    from torchvision import models  # imported on use: torchvision.models is slow to import

    enum = {"resnet18": models.ResNet18_Weights, "resnet50": models.ResNet50_Weights}[arch]
    try:
        entry = enum[weights]
    except KeyError:
        raise DataError(f"unknown {arch} weights {weights!r}; expected a .pt/.pth file or one of "
                        f"{', '.join(w.name for w in enum)}") from None
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name
    try:
        return entry.get_state_dict(progress=False)  # reads the cache; downloads only if absent
    except Exception as err:
        raise DataError(f"{arch} weights {weights} are not in torchvision's cache ({cache}) and could not be "
                        f"downloaded ({type(err).__name__}); copy {Path(entry.url).name} there or pass a file") from err


def build_resnet(arch: str, info: DataInfo, *, batch_norm: bool = True, weights: str | None = None) -> ResNetEncoder:
    if weights and not batch_norm:
        raise DataError(f"{arch}: pretrained weights need BatchNorm (batch_norm=true)")
    from torchvision import models

    norm = {} if batch_norm else {"norm_layer": no_norm}
    net = getattr(models, arch)(weights=None, num_classes=info.num_classes, **norm)
    if weights:
        state = pretrained_state(arch, weights)
        if state.get("fc.weight", torch.empty(0)).shape[:1] != (info.num_classes,):
            # A head for another number of classes starts fresh; the backbone must fit exactly.
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("fc.")]:
            raise DataError(f"{arch} weights {weights!r} do not fit the architecture "
                            f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)")
    return ResNetEncoder(net)


@ENCODERS.register("resnet18")
def resnet18(info: DataInfo, batch_norm: bool = True, weights: str | None = None) -> ResNetEncoder:
    """ResNet-18 (512-d z), optionally without BatchNorm (the COCO reference) or from pretrained weights."""
    return build_resnet("resnet18", info, batch_norm=batch_norm, weights=weights)


@ENCODERS.register("resnet50")
def resnet50(info: DataInfo, batch_norm: bool = True, weights: str | None = None) -> ResNetEncoder:
    """ResNet-50 (2048-d z), from scratch or from torchvision weights (ISIC, ImageNet)."""
    return build_resnet("resnet50", info, batch_norm=batch_norm, weights=weights)
