"""JPEG decoding on the accelerator: the loader's workers only read the files' bytes (and the
masks), and the training process decodes a whole batch at once with nvJPEG
(`torchvision.io.decode_jpeg(..., device="cuda")`), then resizes on the device.

The same code runs on the CPU where there is no CUDA (torchvision's libjpeg-turbo decoder and
`interpolate` on the CPU), which is how its batches are tested against the PIL path: the same
images, labels, masks and indices in the same order; pixels differ only by the two resamplers
(PIL's bilinear filter against `interpolate(antialias=True)`) and, on a GPU, nvJPEG's IDCT.
The differences are measured in docs/PERFORMANCE.md. A file that is not a JPEG (ImageNet has a
PNG under a JPEG's name) is decoded by PIL in the worker, as before; a JPEG the device decoder
refuses (CMYK on nvJPEG) is decoded by PIL in the training process.

Which decoder runs is `train.decoder` / `eval.decoder`: "auto" (the device decoder for a CUDA
device, PIL otherwise), "pil" or "device".
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from benchmark.data.split import StoredBatch
from benchmark.errors import DataError

JPEG_START = b"\xff\xd8\xff"


@dataclass
class EncodedBatch:
    """A batch as its files hold it: one byte tensor per JPEG, or (3, size, size) uint8 pixels
    where the worker decoded the file itself; labels, uint8 masks and indices as stored."""

    images: list[Tensor]
    size: int
    y: Tensor
    mask: Tensor
    index: Tensor

    def pin_memory(self) -> "EncodedBatch":
        return EncodedBatch([t.pin_memory() for t in self.images], self.size, self.y.pin_memory(),
                            self.mask.pin_memory(), self.index.pin_memory())

    def stored_on(self, device: torch.device) -> StoredBatch:
        """The StoredBatch `FileSplit.stored` would give, decoded and resized on `device`."""
        encoded = [k for k, t in enumerate(self.images) if t.dim() == 1]
        pixels: list[Tensor | None] = [None if t.dim() == 1 else t.to(device) for t in self.images]
        samples = [int(self.index[k]) for k in encoded]
        for k, image in zip(encoded, decode_jpegs([self.images[k] for k in encoded], device, samples)):
            pixels[k] = resized(image, self.size)
        labels, masks, index = (t.to(device, non_blocking=True) for t in (self.y, self.mask, self.index))
        return StoredBatch(torch.stack(pixels), labels, masks, index)  # type: ignore[arg-type]


def is_jpeg(data: bytes) -> bool:
    return data[:3] == JPEG_START


def decode_jpegs(data: list[Tensor], device: torch.device, samples: list[int]) -> list[Tensor]:
    """RGB uint8 (3, H, W) images on `device`, all of a batch in one call; a batch the decoder
    refuses (a JPEG variant it does not support) is decoded one file at a time, PIL last.
    `samples` are the split's indices of the files, for the error a broken file raises."""
    if not data:
        return []
    with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec; its decode_jpeg still works
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            out = []
            for one, sample in zip(data, samples):
                try:
                    out.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    out.append(pil_pixels(one.numpy().tobytes(), sample).to(device))
            return out


def pil_pixels(data: bytes, sample: int) -> Tensor:
    """An image file's bytes as RGB uint8 (3, H, W), by PIL."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).copy())
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"the image file of sample {sample} is not a readable image ({type(err).__name__})") from None


def resized(image: Tensor, size: int) -> Tensor:
    """(3, H, W) uint8 to (3, size, size) uint8: bilinear with antialiasing (PIL's filter when
    shrinking), rounded to the nearest level."""
    if image.shape[1:] == (size, size):
        return image
    out = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)
