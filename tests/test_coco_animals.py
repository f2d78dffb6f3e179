"""COCO-Animals on a fixture in the exact COCO 2017 layout: real JPEGs, a real instances JSON with
polygon and crowd-RLE segmentations, a multi-class image to drop, a class outside the four."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.data.split import DataInfo
from benchmark.errors import DataError
from benchmark.models import create_encoder
from benchmark_datasets.coco_animals import COCOAnimals, COCOAnimalsParams, split_positions

CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"},
              {"id": 22, "name": "elephant", "supercategory": "animal"},
              {"id": 23, "name": "bear", "supercategory": "animal"},
              {"id": 24, "name": "zebra", "supercategory": "animal"},
              {"id": 25, "name": "giraffe", "supercategory": "animal"}]
LABEL_OF_CATEGORY = {23: 0, 22: 1, 25: 2, 24: 3}
H, W = 60, 80


def box_polygon(x0, y0, x1, y1):
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's crowd format: run lengths over the column-major flattening, starting with zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def write_coco_fixture(root):
    """12 single-class images (3 per class; one with two instances, one with a crowd RLE), one
    image with a bear and a zebra (dropped), one with only a person (not an animal image)."""
    images, anns = [], []
    (root / "train2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    spec = [(cat, k) for cat in (23, 22, 25, 24) for k in range(3)] + [("multi", 0), (1, 0)]
    for image_id, (cat, k) in enumerate(spec, start=101):
        pixels = np.full((H, W, 3), 20, dtype=np.uint8)
        boxes = [(8 + 4 * k, 10, 40 + 4 * k, 44)]
        cats = [cat]
        if cat == "multi":
            cats, boxes = [23, 24], [(4, 4, 30, 30), (44, 20, 76, 56)]
        elif image_id == 102:  # two bears: the mask is their union
            cats, boxes = [23, 23], [(4, 4, 24, 24), (50, 30, 74, 56)]
        for n, (c, (x0, y0, x1, y1)) in enumerate(zip(cats, boxes)):
            pixels[y0:y1, x0:x1] = 235
            ann = {"id": image_id * 10 + n, "image_id": image_id, "category_id": c, "iscrowd": 0,
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float((x1 - x0) * (y1 - y0)),
                   "segmentation": [box_polygon(x0, y0, x1, y1)]}
            if image_id == 105:  # a crowd annotation in uncompressed RLE
                m = np.zeros((H, W), dtype=np.uint8)
                m[y0:y1, x0:x1] = 1
                ann.update(iscrowd=1, segmentation=uncompressed_rle(m))
            anns.append(ann)
        name = f"{image_id:012d}.jpg"
        Image.fromarray(pixels).save(root / "train2017" / name, quality=95)
        images.append({"id": image_id, "file_name": name, "height": H, "width": W, "license": 1})
    instances = {"info": {"description": "fixture"}, "licenses": [{"id": 1, "name": "fixture"}],
                 "images": images, "annotations": anns, "categories": CATEGORIES}
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(instances))
    return root


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return write_coco_fixture(tmp_path_factory.mktemp("coco"))


def test_single_class_images_are_kept_with_their_labels_and_multi_class_ones_dropped(coco_root):
    ds = COCOAnimals(COCOAnimalsParams(image_size=32), coco_root)
    labels = torch.cat([ds.split(s).labels for s in ("train", "val", "test")])
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert ds.counts == {"dropped_multi_class": 1}
    assert ds.info.num_classes == 4 and ds.info.class_names == ("bear", "elephant", "giraffe", "zebra")


def test_splits_are_disjoint_deterministic_and_sized_by_the_fractions(coco_root):
    parts = split_positions(12, seed=0, test_fraction=0.2, val_fraction=0.2)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [8, 2, 2]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(12))
    again = split_positions(12, seed=0, test_fraction=0.2, val_fraction=0.2)
    assert all(np.array_equal(parts[s], again[s]) for s in parts)


def test_masks_are_the_union_of_instances_aligned_with_the_object_pixels(coco_root):
    ds = COCOAnimals(COCOAnimalsParams(image_size=40), coco_root)
    for name in ("train", "val", "test"):
        split = ds.split(name)
        x, mask = split.images.float() / 255, split.masks.bool()
        assert split.images.shape[1:] == (3, 40, 40) and split.masks.shape[1:] == (1, 40, 40)
        bright = x.mean(1, keepdim=True) > 0.5
        # mask 1 = object (bright boxes), 0 = background; agreement up to resampling at box edges
        agree = (bright == mask).float().flatten(1).mean(1)
        assert (agree > 0.95).all(), agree
        assert (mask.flatten(1).float().mean(1) > 0).all()


def test_two_instances_give_two_object_regions_and_crowd_rle_is_read(coco_root):
    ds = COCOAnimals(COCOAnimalsParams(image_size=W), coco_root)
    from pycocotools.coco import COCO

    from benchmark_datasets.coco_animals import object_mask
    coco = COCO(str(coco_root / "annotations" / "instances_train2017.json"))
    union = object_mask(coco, 102, 23)
    assert union[4:24, 4:24].all() and union[30:56, 50:74].all() and union.sum() == 20 * 20 + 26 * 24
    crowd = object_mask(coco, 105, 22)
    assert crowd[10:44, 12:44].all() and crowd.sum() == 34 * 32
    assert ds.split("train").labels.dtype == torch.int64


def test_missing_or_corrupt_files_are_one_line_errors(coco_root, tmp_path):
    with pytest.raises(DataError, match="instances_train2017.json.*not found"):
        COCOAnimals(COCOAnimalsParams(), tmp_path).check()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2017.json").write_text("{not json")
    with pytest.raises(DataError, match="not a COCO instances file"):
        COCOAnimals(COCOAnimalsParams(), tmp_path).check()
    (tmp_path / "annotations" / "instances_train2017.json").write_text(
        (coco_root / "annotations" / "instances_train2017.json").read_text())
    with pytest.raises(DataError, match="image folder"):
        COCOAnimals(COCOAnimalsParams(), tmp_path).check()
    (tmp_path / "train2017").mkdir()
    with pytest.raises(DataError, match=r"\d{12}\.jpg' not found"):
        COCOAnimals(COCOAnimalsParams(), tmp_path).check()
    with pytest.raises(DataError, match="needs --data-root"):
        COCOAnimals(COCOAnimalsParams(), None).check()


def rewrite_instances(root, change):
    path = root / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


@pytest.mark.parametrize("change, expected", [
    (lambda d: [], "expected a JSON object with images, annotations and categories, got a list"),
    (lambda d: {**d, "images": [{k: v for k, v in d["images"][0].items() if k != "file_name"}, *d["images"][1:]]},
     "image entry .* lacks an integer id, height or width or a file_name"),
    (lambda d: {**d, "annotations": [{**d["annotations"][0], "segmentation": "a polygon"}, *d["annotations"][1:]]},
     "annotation 1010 has a segmentation of type str; expected a list of polygons or an RLE object"),
    (lambda d: {k: v for k, v in d.items() if k != "categories"}, "expected a list under 'categories'"),
], ids=["list", "no-file-name", "string-segmentation", "no-categories"])
def test_malformed_annotations_are_one_line_errors_naming_the_file(tmp_path, change, expected):
    root = write_coco_fixture(tmp_path / "coco")
    rewrite_instances(root, change)
    with pytest.raises(DataError, match=expected) as err:
        COCOAnimals(COCOAnimalsParams(image_size=32), root).check()
    assert "instances_train2017.json" in str(err.value) and "\n" not in str(err.value)


def test_a_declared_size_that_disagrees_with_the_image_blames_the_annotation_file(tmp_path):
    root = write_coco_fixture(tmp_path / "coco")
    rewrite_instances(root, lambda d: {**d, "images": [{**d["images"][0], "height": H + 10}, *d["images"][1:]]})
    with pytest.raises(DataError, match=r"000000000101\.jpg' is 80x70 \(the height and width declared in "
                                        r".*instances_train2017\.json'\), the image 80x60"):
        COCOAnimals(COCOAnimalsParams(image_size=32), root).check()


# -- ResNet encoders ----------------------------------------------------------------------------
def info(classes=4):
    return DataInfo(classes, tuple(map(str, range(classes))), (3, 32, 32), (0.5,) * 3, (0.25,) * 3)


def build_encoder(name="resnet18", classes=4, **args):
    return create_encoder(name, info(classes), **args)


def test_resnet18_without_batchnorm_has_no_norm_layers_and_a_512d_embedding():
    enc = build_encoder(batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules())
    assert enc.embed_dim == 512 and enc.features(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    assert build_encoder("resnet50").embed_dim == 2048


def test_resnet_loads_torchvision_weights_from_a_local_file_and_keeps_a_fresh_head(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    enc = build_encoder(weights=str(path))
    assert torch.equal(enc.features.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert enc.classifier.fc.out_features == 4
    full = build_encoder(classes=1000, weights=str(path))
    assert torch.equal(full.classifier.fc.weight, reference.fc.weight)  # a 1000-way head is kept
    with pytest.raises(DataError, match="not found"):
        build_encoder(weights=str(tmp_path / "absent.pth"))
    with pytest.raises(DataError, match="unknown resnet18 weights 'V9'"):
        build_encoder(weights="V9")


def test_resnet_weights_by_name_fail_in_one_line_when_not_cached_and_offline(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(DataError, match=r"not in torchvision's cache .*resnet50-11ad3fa6\.pth") as err:
        build_encoder("resnet50", weights="IMAGENET1K_V2")
    assert "\n" not in str(err.value)


def test_a_corrupt_image_file_is_a_one_line_error(tmp_path):
    root = write_coco_fixture(tmp_path / "coco")
    victim = root / "train2017" / f"{101:012d}.jpg"
    victim.write_bytes(victim.read_bytes()[:40])  # a truncated JPEG
    with pytest.raises(DataError, match=r"000000000101\.jpg' is not a readable image") as err:
        COCOAnimals(COCOAnimalsParams(image_size=32), root).check()
    assert "\n" not in str(err.value)
