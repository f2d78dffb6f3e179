"""Waterbirds on a fixture composed as the published generation script composes it: a bird image,
its soft CUB segmentation, a background cropped to the bird image's size, blended through the
segmentation; metadata.csv in the published columns, masks in CUB's segmentations layout."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.errors import DataError
from benchmark_datasets.waterbirds import FOLDER, SEGMENTATIONS, Waterbirds, WaterbirdsParams

CLASS_FOLDERS = {0: "041.Scissor_tailed_Flycatcher", 1: "001.Black_footed_Albatross"}
# (split, y, place): training mostly matches bird and background; val and test hold every group
FIXTURE = ([(0, 0, 0)] * 3 + [(0, 1, 1)] * 3 + [(0, 0, 1), (0, 1, 0)]
           + [(1, y, p) for y in (0, 1) for p in (0, 1)] + [(2, y, p) for y in (0, 1) for p in (0, 1)])
BIRD = {0: (180, 120, 40), 1: (240, 240, 240)}
PLACE = {0: (40, 140, 40), 1: (40, 80, 200)}


def write_waterbirds_fixture(root, metadata_override=None):
    rows = []
    for k, (split, y, place) in enumerate(FIXTURE):
        folder = CLASS_FOLDERS[y]
        stem = f"{folder.split('.')[1]}_{k:04d}_{100 + k}"
        h, w = 40 + 2 * (k % 3), 48  # CUB images differ in size; the composite keeps the bird image's
        seg = np.zeros((h, w), dtype=np.uint8)
        top, left = 8 + k % 4, 10 + k % 5
        seg[top:top + 20, left:left + 22] = 255
        seg[top - 1, left:left + 22] = 100  # a soft border where annotators disagreed
        s = seg[..., None] / 255.0
        background = np.broadcast_to(np.array(PLACE[place], dtype=np.float64), (h, w, 3))
        bird = np.broadcast_to(np.array(BIRD[y], dtype=np.float64), (h, w, 3))
        combined = np.around(background * (1 - s) + bird * s).astype(np.uint8)
        (root / FOLDER / folder).mkdir(parents=True, exist_ok=True)
        (root / SEGMENTATIONS / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(combined).save(root / FOLDER / folder / f"{stem}.jpg", quality=95)
        Image.fromarray(seg).save(root / SEGMENTATIONS / folder / f"{stem}.png")
        rows.append({"img_id": k + 1, "img_filename": f"{folder}/{stem}.jpg", "y": y, "split": split,
                     "place": place, "place_filename": f"/o/ocean/{k:08d}.jpg"})
    if metadata_override:
        rows[0].update(metadata_override)
    with open(root / FOLDER / "metadata.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def waterbirds_root(tmp_path_factory):
    return write_waterbirds_fixture(tmp_path_factory.mktemp("waterbirds"))


def test_splits_labels_and_bird_masks_align_with_the_composed_images(waterbirds_root):
    ds = Waterbirds(WaterbirdsParams(image_size=32), waterbirds_root)
    sizes = {name: len(ds.split(name)) for name in ("train", "val", "test")}
    assert sizes == {"train": 8, "val": 4, "test": 4}
    test = ds.split("test").batch(torch.arange(4))
    assert test.y.tolist() == [0, 0, 1, 1]
    for k in range(4):
        inside, outside = test.mask[k, 0] > 0.5, test.mask[k, 0] < 0.5
        bird = torch.tensor(BIRD[int(test.y[k])]) / 255.0
        colour_inside = test.x[k][:, inside].mean(1)
        assert torch.allclose(colour_inside, bird, atol=0.08)  # the mask covers the bird, pixel for pixel
        assert not torch.allclose(test.x[k][:, outside].mean(1), bird, atol=0.08)


def test_groups_are_bird_type_by_background(waterbirds_root):
    ds = Waterbirds(WaterbirdsParams(image_size=32), waterbirds_root)
    groups = ds.groups("test")
    assert groups.ids.tolist() == [0, 1, 2, 3]
    assert groups.names == ("landbird on land", "landbird on water", "waterbird on land", "waterbird on water")
    assert ds.groups("train").ids.tolist() == [0, 0, 0, 3, 3, 3, 1, 2]


@pytest.mark.parametrize("damage, message", [
    ("metadata", "metadata.csv' not found"),
    ("split", "expected split 0/1/2, y and place 0/1"),
    ("mask", "no bird mask"),
    ("segmentations", "no segmentations/ folder"),
])
def test_bad_files_are_refused_in_one_line(tmp_path, damage, message):
    root = write_waterbirds_fixture(tmp_path / "wb", {"split": "7"} if damage == "split" else None)
    if damage == "metadata":
        (root / FOLDER / "metadata.csv").unlink()
    if damage == "mask":
        next((root / SEGMENTATIONS).rglob("*.png")).unlink()
    if damage == "segmentations":
        import shutil

        shutil.rmtree(root / SEGMENTATIONS)
    with pytest.raises(DataError, match=message) as caught:
        Waterbirds(WaterbirdsParams(image_size=32), root).split("train")
    assert "\n" not in str(caught.value)
