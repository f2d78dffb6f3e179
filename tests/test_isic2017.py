"""ISIC-2017 on a fixture in the official archive layout: JPEG images (with the superpixel PNGs and
metadata CSV the archives carry), 0/255 segmentation PNGs, and the Part 3 CSV columns."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.config import resolve
from benchmark.errors import DataError
from benchmark_datasets.isic2017 import ISIC2017, ISICParams

# part -> labels of its images (0 nevus, 1 melanoma, 2 seborrheic keratosis)
FIXTURE = {"Training": [0, 0, 0, 0, 1, 1, 2, 2], "Validation": [0, 1], "Test_v2": [0, 1, 2]}


def write_isic_fixture(root, flags_override=None):
    image_id = 0
    for part, labels in FIXTURE.items():
        data = root / f"ISIC-2017_{part}_Data"
        truth = root / f"ISIC-2017_{part}_Part1_GroundTruth"
        data.mkdir(parents=True)
        truth.mkdir()
        rows, meta = [], []
        for label in labels:
            name = f"ISIC_{image_id:07d}"
            h, w = 48 + 4 * (image_id % 3), 64  # sizes vary, as in the real archive
            pixels = np.full((h, w, 3), (200, 170, 150), dtype=np.uint8)  # skin
            mask = np.zeros((h, w), dtype=np.uint8)
            top, left = 8 + image_id % 5, 10 + 2 * (image_id % 4)
            mask[top:top + 24, left:left + 30] = 255
            pixels[mask > 0] = (60, 30, 20)  # the lesion is dark
            Image.fromarray(pixels).save(data / f"{name}.jpg", quality=95)
            Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8)).save(data / f"{name}_superpixels.png")
            Image.fromarray(mask).save(truth / f"{name}_segmentation.png")
            rows.append({"image_id": name, "melanoma": f"{float(label == 1)}",
                         "seborrheic_keratosis": f"{float(label == 2)}"})
            meta.append({"image_id": name, "age_approximate": "55", "sex": "female"})
            image_id += 1
        if flags_override and part in flags_override:
            rows[0].update(flags_override[part])
        for path, table in ((root / f"ISIC-2017_{part}_Part3_GroundTruth.csv", rows),
                            (data / f"ISIC-2017_{part}_Data_metadata.csv", meta)):
            with open(path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(table[0]))
                writer.writeheader()
                writer.writerows(table)
    return root


@pytest.fixture(scope="module")
def isic_root(tmp_path_factory):
    return write_isic_fixture(tmp_path_factory.mktemp("isic"))


def test_labels_protocol_and_splits(isic_root):
    ds = ISIC2017(ISICParams(image_size=32), isic_root)
    train, val, test = (ds.split(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (8, 2, 3)  # 10 pooled, 80/20; Test_v2 as test
    assert sorted(torch.cat([train.labels, val.labels]).tolist()) == sorted(FIXTURE["Training"] + FIXTURE["Validation"])
    assert test.labels.tolist() == FIXTURE["Test_v2"]
    # pooled images are never in both train and val (each image is unique: compare pixels)
    flat = lambda s: {bytes(s.images[i].numpy()) for i in range(len(s))}  # noqa: E731
    assert not flat(train) & flat(val)
    again = ISIC2017(ISICParams(image_size=32), isic_root)
    assert torch.equal(again.split("train").images, train.images)
    assert ds.info.num_classes == 3 and ds.info.class_names == ("nevus", "melanoma", "seborrheic_keratosis")


def test_mask_polarity_and_alignment(isic_root):
    ds = ISIC2017(ISICParams(image_size=40), isic_root)
    for name in ("train", "val", "test"):
        split = ds.split(name)
        dark = split.images.float().mean(1, keepdim=True) < 128
        lesion = split.masks.bool()
        assert ((dark == lesion).float().flatten(1).mean(1) > 0.95).all()  # 1 = lesion, 0 = skin
        assert (split.masks.flatten(1).float().mean(1) < 0.5).all()


def test_class_balanced_weights_and_quick_defaults(isic_root):
    ds = ISIC2017(ISICParams(image_size=32), isic_root)
    counts = torch.bincount(ds.split("train").labels, minlength=3).float()
    torch.testing.assert_close(ds.class_weights(), counts.sum() / (3 * counts))
    config = resolve("vanilla", "isic2017")
    assert config.train.class_balanced and config.suite("corruptions").region == "background"


def test_bad_flags_missing_csv_and_missing_mask_are_one_line_errors(tmp_path):
    bad = write_isic_fixture(tmp_path / "bad", {"Training": {"melanoma": "1.0", "seborrheic_keratosis": "1.0"}})
    with pytest.raises(DataError, match="expected at most one of them set to 1"):
        ISIC2017(ISICParams(image_size=32), bad).check()
    good = write_isic_fixture(tmp_path / "good")
    next((good / "ISIC-2017_Training_Part1_GroundTruth").glob("*.png")).unlink()
    with pytest.raises(DataError, match="_segmentation.png' not found"):
        ISIC2017(ISICParams(image_size=32), good).check()
    (good / "ISIC-2017_Test_v2_Part3_GroundTruth.csv").unlink()
    with pytest.raises(DataError, match="Test_v2_Part3_GroundTruth.csv' not found"):
        ISIC2017(ISICParams(image_size=32), good).check()


def test_a_labels_csv_saved_with_a_byte_order_mark_is_read(tmp_path):
    root = write_isic_fixture(tmp_path / "isic")
    path = root / "ISIC-2017_Validation_Part3_GroundTruth.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(ISIC2017(ISICParams(image_size=32), root).split("val")) == 2


def test_a_binary_labels_file_is_one_line(tmp_path):
    root = write_isic_fixture(tmp_path / "isic")
    (root / "ISIC-2017_Training_Part3_GroundTruth.csv").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"Training_Part3_GroundTruth.csv' is not a text CSV") as err:
        ISIC2017(ISICParams(image_size=32), root).check()
    assert "\n" not in str(err.value)
