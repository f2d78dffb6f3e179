"""Data-loading cases."""

from __future__ import annotations

import torch

from ..perf import PerfCase
from ..registry import PERF_CASES


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


@PERF_CASES.register("prepared_cache")
def prepared_cache(device: torch.device) -> PerfCase:
    """Loading ISIC-2017's splits from the prepared cache against decoding and resizing the raw files."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    from ..registry import DATASETS

    root = Path(tempfile.mkdtemp(prefix="benchmark-perf-"))
    atexit.register(shutil.rmtree, root, True)
    write_isic_like(root, 62)
    isic = DATASETS.get("isic2017")
    params = isic.Params(image_size=224)
    isic(params, root).prepare()

    def cached() -> None:
        isic(params, root).split("train")

    def raw() -> None:
        isic(params, root).load_splits()

    return PerfCase(cached, raw, "prepared cache (Arrow)", "raw JPEG + PNG files", "ratio <= 0.33 (3x faster)",
                    "64 images of 1024x768 resized to 224, ISIC-2017 layout")
