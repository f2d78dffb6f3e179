"""Data-loading cases."""

from __future__ import annotations

from typing import Any

import torch

from benchmark.perf_cases.harness import PerfCase
from benchmark.registry import PERF_CASES


def write_isic_like(root, count: int, width: int = 1024, height: int = 768) -> None:
    """`count` random-noise JPEGs (hard to compress, like photos) with lesion masks, in ISIC-2017's
    archive layout: all in Training, one image each in Validation and Test_v2."""
    import csv

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, n in (("Training", count), ("Validation", 1), ("Test_v2", 1)):
        data, truth = root / f"ISIC-2017_{part}_Data", root / f"ISIC-2017_{part}_Part1_GroundTruth"
        data.mkdir(parents=True)
        truth.mkdir()
        rows = []
        for k in range(n):
            name = f"ISIC_{part[:2]}{k:05d}"
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(data / f"{name}.jpg",
                                                                                          quality=90)
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 255
            Image.fromarray(mask).save(truth / f"{name}_segmentation.png")
            rows.append({"image_id": name, "melanoma": "0.0", "seborrheic_keratosis": "0.0"})
        with open(root / f"ISIC-2017_{part}_Part3_GroundTruth.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def photo_like_jpegs(root, count: int) -> list:
    """`count` JPEGs of 500x375 (ImageNet's median size) in `root`, named like ImageNet files:
    smooth shapes plus grain, so they have photo-like file sizes (~60-80 KB) and decode times."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        base = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(base).resize((500, 375), Image.Resampling.BICUBIC), dtype=np.int16)
        pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
        paths.append(root / f"n{k % 10:08d}_{k}.JPEG")
        Image.fromarray(pixels).save(paths[-1], quality=90)
    return paths


def imagenet_sized_split(files: int, classes: int = 10):
    """A FileSplit at 224 px over `files` photo-like JPEGs of 500x375 in a temporary folder
    (removed at exit), labelled k mod `classes`: the in9 loading pipeline's input."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    from benchmark.data.images import FileSplit

    root = Path(tempfile.mkdtemp(prefix="benchmark-perf-"))
    atexit.register(shutil.rmtree, root, True)
    return FileSplit(photo_like_jpegs(root, files), [k % classes for k in range(files)], 224)


@PERF_CASES.register("prepared_cache")
def prepared_cache(device: torch.device) -> PerfCase:
    """Loading ISIC-2017's splits from the prepared cache against decoding and resizing the raw files."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    from benchmark.registry import DATASETS

    root = Path(tempfile.mkdtemp(prefix="benchmark-perf-"))
    atexit.register(shutil.rmtree, root, True)
    write_isic_like(root, 62)
    isic: Any = DATASETS.get("isic2017")  # the ISIC-2017 class: its own Params and load_splits
    params = isic.Params(image_size=224)
    isic(params, root).prepare()

    def cached() -> None:
        isic(params, root).split("train")

    def raw() -> None:
        isic(params, root).load_splits()

    return PerfCase(cached, raw, "prepared cache (Arrow)", "raw JPEG + PNG files", "ratio <= 0.33 (3x faster)",
                    "64 images of 1024x768 resized to 224, ISIC-2017 layout")


@PERF_CASES.register("data_pipeline")
def data_pipeline(device: torch.device) -> PerfCase:
    """2,048 ImageNet-sized JPEG reads (decode, resize to 224, seeded flip) by worker processes,
    one per core, against decoding them in the training process."""
    from benchmark.data.augment import flipped
    from benchmark.data.loader import available_cores, load_batches

    split = imagenet_sized_split(512)
    # 8 batches of 256 (each file read 4 times, decoded every time): enough batches for the workers'
    # decoding to overlap the flips of the batches before, as over a training epoch
    order = torch.randperm(2048, generator=torch.Generator().manual_seed(0)) % 512
    workers = available_cores()

    def one_pass(n: int) -> None:
        generator = torch.Generator().manual_seed(0)
        for batch in load_batches(split, order, 256, workers=n):
            flipped(batch, generator)

    return PerfCase(lambda: one_pass(workers), lambda: one_pass(0), f"{workers} loader workers",
                    "decoded in the training process", f"ratio <= {1 / (0.85 * workers):.2f} (85% of linear)",
                    "8 batches of 256 from 512 JPEGs of 500x375: PIL decode + resize 224 + flip (the in9 pipeline)")


@PERF_CASES.register("decode_on_device")
def decode_on_device(device: torch.device) -> PerfCase:
    """2,048 ImageNet-sized JPEGs to flipped 224 px batches on `device` with at most 4 loader
    workers: decoded on the device (the workers read bytes; data/device_decode.py) against PIL
    in the workers. On a CPU the "device" is the training process (torchvision's decoder)."""
    from benchmark.data.augment import flipped
    from benchmark.data.loader import available_cores, load_batches

    split = imagenet_sized_split(512)
    order = torch.randperm(2048, generator=torch.Generator().manual_seed(0)) % 512
    workers = min(4, available_cores())

    def one_pass(decoder: str) -> None:
        generator = torch.Generator().manual_seed(0)
        for batch in load_batches(split, order, 256, workers=workers, device=device, decoder=decoder):
            flipped(batch, generator)

    return PerfCase(lambda: one_pass("device"), lambda: one_pass("pil"), f"decoded on {device.type}, {workers} workers",
                    f"PIL in {workers} workers", "ratio < 1 on a GPU",
                    "8 batches of 256 from 512 JPEGs of 500x375: decode + resize 224 + flip")
