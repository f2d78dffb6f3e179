"""JPEGs decoded on the device (data/device_decode.py), run on the CPU through the same code: the
same batches as the PIL path, pixels within the two resamplers' difference."""

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.data.device_decode import resized
from benchmark.data.images import FileSplit
from benchmark.data.loader import load_batches, resolve_decoder
from benchmark.errors import DataError
from benchmark.perf_cases.data import photo_like_jpegs


@pytest.fixture
def files(tmp_path):
    """Seven photo-like JPEGs, one PNG under a JPEG's name (ImageNet has one), a grey JPEG."""
    paths = photo_like_jpegs(tmp_path, 7)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(tmp_path / "png.JPEG", format="PNG")
    Image.fromarray(rng.integers(0, 255, (80, 60), dtype=np.uint8)).save(tmp_path / "grey.JPEG", quality=95)
    return [*paths, tmp_path / "png.JPEG", tmp_path / "grey.JPEG"]


def split_of(paths):
    def mask_of(k):
        with Image.open(paths[k]) as img:
            mask = np.zeros((img.height, img.width), dtype=np.uint8)
        mask[: mask.shape[0] // 2] = 1
        return mask if k % 3 else None  # some samples have no mask

    return FileSplit(paths, [k % 4 for k in range(len(paths))], 64, mask_of)


@pytest.mark.parametrize("workers", [0, 2])
def test_device_decoding_gives_the_pil_paths_batches(files, workers):
    split = split_of(files)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(0))
    pil = list(load_batches(split, order, 4, workers=workers, decoder="pil"))
    device = list(load_batches(split, order, 4, workers=workers, decoder="device"))
    assert [len(b) for b in device] == [4, 4, 1]
    for a, b in zip(pil, device):
        assert torch.equal(a.index, b.index) and torch.equal(a.y, b.y) and torch.equal(a.mask, b.mask)
        assert a.x.shape == b.x.shape and b.x.dtype == torch.float32
        levels = (a.x - b.x).abs() * 255
        # PIL's bilinear filter against interpolate(antialias=True), both after libjpeg-turbo: at
        # most 1 level of 255 (mean 0.15 at 224 px, docs/PERFORMANCE.md); a little slack for rounding
        assert float(levels.max()) <= 1.01 and float(levels.mean()) <= 0.25


def test_a_file_the_worker_decoded_is_used_as_is(files):
    split = split_of(files)
    png = torch.tensor([7])
    (pil,), (device,) = load_batches(split, png, 1, decoder="pil"), load_batches(split, png, 1, decoder="device")
    assert torch.equal(pil.x, device.x)  # not a JPEG: PIL decoded it in both paths


def test_a_broken_jpeg_is_a_one_line_data_error(tmp_path, files):
    broken = tmp_path / "broken.JPEG"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 200)
    split = FileSplit([files[0], broken], [0, 1], 64)
    with pytest.raises(DataError, match="sample 1 is not a readable image"):
        list(load_batches(split, torch.arange(2), 2, decoder="device"))


def test_auto_decodes_on_the_device_only_for_cuda():
    assert resolve_decoder("auto", "cpu") == "pil" and resolve_decoder("auto", torch.device("cuda")) == "device"
    assert resolve_decoder("device", "cpu") == "device" and resolve_decoder("pil", "cuda") == "pil"


def test_resizing_keeps_the_size_and_rounds():
    image = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8)
    out = resized(image, 16)
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
    assert torch.equal(resized(out, 16), out)
