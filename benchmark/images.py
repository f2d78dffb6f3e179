"""Decoding image and mask files into the fixed-size uint8 arrays that splits hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError


def read_rgb(path: Path, size: int) -> np.ndarray:
    """An image file as (3, size, size) uint8, resized (bilinear) without keeping the aspect ratio."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()
    except FileNotFoundError:
        raise DataError(f"image file {str(path)!r} not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"image file {str(path)!r} is not a readable image ({type(err).__name__})") from None


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A binary (H, W) mask as (1, size, size) uint8 in {0, 1}, nearest-neighbour resized."""
    img = Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255)
    return (np.asarray(img.resize((size, size), Image.Resampling.NEAREST)) > 127).astype(np.uint8)[None]
