"""Decoding image and mask files into the fixed-size uint8 arrays that splits hold."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from benchmark.data.device_decode import EncodedBatch, is_jpeg
from benchmark.data.split import Batch, StoredBatch, TensorSplit
from benchmark.errors import DataError


def read_rgb(path: Path, size: int, with_size: bool = False):
    """An image file as (3, size, size) uint8, resized (bilinear) without keeping the aspect ratio;
    with `with_size`, also its original (height, width)."""
    try:
        with Image.open(path) as img:
            original = (img.height, img.width)
            rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()
            return (pixels, original) if with_size else pixels
    except FileNotFoundError:
        raise DataError(f"image file {str(path)!r} not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"image file {str(path)!r} is not a readable image ({type(err).__name__})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header (the pixels are not decoded)."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except FileNotFoundError:
        raise DataError(f"image file {str(path)!r} not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"image file {str(path)!r} is not a readable image ({type(err).__name__})") from None


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A binary (H, W) mask as (1, size, size) uint8 in {0, 1}, nearest-neighbour resized."""
    img = Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255)
    return (np.asarray(img.resize((size, size), Image.Resampling.NEAREST)) > 127).astype(np.uint8)[None]


def read_mask(path: Path) -> np.ndarray:
    """A mask image (8-bit, 0 outside / 255 inside, or any single channel) as (H, W) uint8 in {0, 1}."""
    try:
        with Image.open(path) as img:
            return (np.asarray(img.convert("L")) > 127).astype(np.uint8)
    except FileNotFoundError:
        raise DataError(f"mask file {str(path)!r} not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"mask file {str(path)!r} is not a readable image ({type(err).__name__})") from None


def check_mask_size(mask: np.ndarray, image: Path, h: int, w: int, mask_source: str = "") -> None:
    """A mask must cover its image pixel for pixel; the error names where the mask's size came from."""
    if mask.shape != (h, w):
        origin = f" ({mask_source})" if mask_source else ""
        raise DataError(f"the mask of {str(image)!r} is {mask.shape[1]}x{mask.shape[0]}{origin}, the image {w}x{h}")


def decode_split(labels: Sequence[int], size: int, image_of: Callable[[int], Path],
                 mask_of: Callable[[int], np.ndarray], mask_source: str = "") -> TensorSplit:
    """Decode sample k's image file `image_of(k)` and mask `mask_of(k)` (H, W) into an in-memory
    split of `size` x `size` uint8 images and masks; a mask must match its image's size
    (`mask_source` says where mask sizes come from, for the error message)."""
    n = len(labels)
    pixels = np.empty((n, 3, size, size), dtype=np.uint8)
    masks = np.empty((n, 1, size, size), dtype=np.uint8)
    for k in range(n):
        path = image_of(k)
        pixels[k], (h, w) = read_rgb(path, size, with_size=True)
        mask = mask_of(k)
        check_mask_size(mask, path, h, w, mask_source)
        masks[k] = resize_mask(mask, size)
    return TensorSplit(torch.from_numpy(pixels), torch.as_tensor(list(labels), dtype=torch.int64),
                       torch.from_numpy(masks))


class FileSplit:
    """A split read from image files on demand (for sets too large to hold decoded in memory).

    `mask_of(k)` gives sample k's (H, W) object mask, or None where no mask exists (then the mask
    is all zeros: no pixel is known to be the object)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], size: int,
                 mask_of: Callable[[int], np.ndarray | None] | None = None):
        if len(paths) != len(labels):
            raise DataError("a FileSplit needs one label per image file")
        self.paths, self.size, self.mask_of = list(paths), size, mask_of
        self.labels = torch.as_tensor(list(labels), dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, index: torch.Tensor) -> Batch:
        return self.stored(index).decoded()

    def stored(self, index: torch.Tensor) -> StoredBatch:
        x = np.empty((len(index), 3, self.size, self.size), dtype=np.uint8)
        masks = np.zeros((len(index), 1, self.size, self.size), dtype=np.uint8)
        for row, k in enumerate(index.tolist()):
            x[row], (h, w) = read_rgb(self.paths[k], self.size, with_size=True)
            mask = self.mask_of(k) if self.mask_of else None
            if mask is not None:
                check_mask_size(mask, self.paths[k], h, w)
                masks[row] = resize_mask(mask, self.size)
        return StoredBatch(torch.from_numpy(x), self.labels[index], torch.from_numpy(masks), index)

    def encoded(self, index: torch.Tensor) -> EncodedBatch:
        """The batch for decoding on the device (data/device_decode.py): each JPEG's bytes as read,
        any other file decoded and resized here; masks as `stored` gives them."""
        images: list[torch.Tensor] = []
        masks = np.zeros((len(index), 1, self.size, self.size), dtype=np.uint8)
        for row, k in enumerate(index.tolist()):
            path = self.paths[k]
            data = read_bytes(path)
            if is_jpeg(data):
                images.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
            else:
                images.append(torch.from_numpy(read_rgb(path, self.size)))
            mask = self.mask_of(k) if self.mask_of else None
            if mask is not None:
                check_mask_size(mask, path, *image_size(path))
                masks[row] = resize_mask(mask, self.size)
        return EncodedBatch(images, self.size, self.labels[index], torch.from_numpy(masks), index)


def read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"image file {str(path)!r} not found") from None
