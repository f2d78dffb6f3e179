"""CounterAnimal (Wang et al., NeurIPS 2024): 45 ImageNet animal classes photographed on their
common backgrounds and on uncommon (counter) ones; the drop between the two measures reliance on
the background. An evaluation source (EVAL_SETS `counteranimal`), scored 1-vs-1000 among the
model's ImageNet classes. Layout under the data root:
    counteranimal/LAION-final/<ImageNet index> <class name>/{common,counter}-<background>/<image>
A class folder names its ImageNet-1k index, mapped to the model's class through the synset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.data.images import FileSplit
from benchmark.data.split import EvalSet, Groups
from benchmark.dataset import EvalSource
from benchmark.errors import DataError
from benchmark.registry import EVAL_SETS
from benchmark_datasets.imagenet import IMAGENET_WNIDS, images_in

CA_CLASS = re.compile(r"^(\d+) (.+)$")


def counteranimal(root: Path, wnids: list[str]) -> dict[str, tuple[list[Path], list[int]]]:
    """CounterAnimal's common and counter images with their class index in the ImageNet folder (the
    1-vs-1000 protocol); a class folder names its ImageNet-1k index, mapped through its synset."""
    local = {w: i for i, w in enumerate(wnids)}
    out: dict[str, tuple[list[Path], list[int]]] = {"common": ([], []), "counter": ([], [])}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        match = CA_CLASS.match(folder.name)
        if not match or int(match.group(1)) >= len(IMAGENET_WNIDS):
            raise DataError(f"CounterAnimal folder {str(folder)!r}: expected '<ImageNet index> <class name>' with an "
                            f"ImageNet-1k index 0-999")
        wnid = IMAGENET_WNIDS[int(match.group(1))]
        if wnid not in local:
            raise DataError(f"CounterAnimal folder {str(folder)!r} is ImageNet class {match.group(1)} ({wnid}), which "
                            f"the ImageNet folder's {len(local)} classes do not include; add that class or move "
                            "CounterAnimal out of the data root (dataset.counteranimal names its folder)")
        for background in sorted(p for p in folder.iterdir() if p.is_dir()):
            kind = background.name.split("-", 1)[0]
            if kind not in out:
                raise DataError(f"CounterAnimal folder {str(background)!r}: expected common-<background> or "
                                "counter-<background>")
            for path in images_in(background):
                out[kind][0].append(path)
                out[kind][1].append(local[wnid])
    return out


@dataclass
class CounterAnimalParams:
    counteranimal: str = "counteranimal"  # folder under the data root holding LAION-final/


@EVAL_SETS.register("counteranimal")
class CounterAnimal(EvalSource):
    """CounterAnimal: common and counter backgrounds of 45 animal classes (counter drop = common - counter)."""

    Params = CounterAnimalParams

    @property
    def folder(self) -> Path:
        return self.root / self.params.counteranimal / "LAION-final"

    def present(self) -> bool:
        return self.folder.is_dir()

    def eval_sets(self) -> list[EvalSet]:
        return [EvalSet(f"counteranimal_{kind}", FileSplit(paths, labels, self.image_size))
                for kind, (paths, labels) in counteranimal(self.folder, self.wnids).items()]

    def groups(self) -> Groups:
        """(class, common or counter background) groups over both sets together: the worst group
        is the class whose counter backgrounds fool the model most."""
        sets = counteranimal(self.folder, self.wnids)
        paths = [p for kind in ("common", "counter") for p in sets[kind][0]]
        labels = [c for kind in ("common", "counter") for c in sets[kind][1]]
        classes = sorted(set(labels))
        names = tuple(f"{self.wnids[c]} {kind}" for kind in ("common", "counter") for c in classes)
        ids = [k * len(classes) + classes.index(c) for k, kind in enumerate(("common", "counter"))
               for c in sets[kind][1]]
        return Groups(torch.tensor(ids, dtype=torch.int64), names, "(class, common or counter background)",
                      FileSplit(paths, labels, self.image_size))

    def derived(self, accuracy: dict[str, float]) -> dict[str, float]:
        """Counter drop = acc(common) - acc(counter)."""
        if {"counteranimal_common", "counteranimal_counter"} <= set(accuracy):
            return {"counter_drop": accuracy["counteranimal_common"] - accuracy["counteranimal_counter"]}
        return {}
