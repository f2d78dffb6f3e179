"""ImageNet + ImageNet-9 + CounterAnimal on fixtures in their exact folder layouts: synset folders,
the nine IN-9 class folders with spaces in their names, every variant, fg_mask .npy files,
in_to_in9.json, and CounterAnimal's '<index> <name>/common-<bg>' folders."""

import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.errors import DataError
from benchmark.store import read_results
from benchmark_datasets.in9 import VARIANTS, IN9Params, ImageNet9, mapped_prediction
from conftest import BENCHMARK_CLI, cli_env

WNIDS = [f"n0{1000000 + 7 * i}" for i in range(12)]  # 12 synsets; the first 9 map to IN-9 classes
CLASS_DIRS = ["00_dog", "01_bird", "02_wheeled vehicle", "03_reptile", "04_carnivore", "05_insect",
              "06_musical instrument", "07_primate", "08_fish"]
BOX = (slice(6, 26), slice(8, 30))  # the foreground of every IN-9 image


def jpeg(path, bright_box=True, shade=40):
    pixels = np.full((32, 40, 3), shade, dtype=np.uint8)
    if bright_box:
        pixels[BOX] = 230
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)


def write_in9_fixture(root):
    for i, wnid in enumerate(WNIDS):
        for k in range(2):
            jpeg(root / "imagenet" / "train" / wnid / f"{wnid}_{k}.JPEG", shade=10 * i)
        jpeg(root / "imagenet" / "val" / wnid / f"ILSVRC2012_val_{i:08d}.JPEG", shade=10 * i)
    bg = root / "bg_challenge"
    for variant in VARIANTS:
        for c, class_dir in enumerate(CLASS_DIRS):
            prefix = "fg_" if variant == "mixed_rand" else ""
            jpeg(bg / variant / "val" / class_dir / f"{prefix}{WNIDS[c]}_{100 + c}.JPEG",
                 bright_box=variant not in ("only_bg_b", "only_bg_t", "no_fg"))
    for c, class_dir in enumerate(CLASS_DIRS):
        mask = np.zeros((32, 40), dtype=bool)
        mask[BOX] = True
        (bg / "fg_mask" / "val" / class_dir).mkdir(parents=True)
        np.save(bg / "fg_mask" / "val" / class_dir / f"{WNIDS[c]}_{100 + c}.npy", mask)
    (bg / "in_to_in9.json").write_text(json.dumps({str(i): (i if i < 9 else -1) for i in range(12)}))
    ca = root / "counteranimal" / "LAION-final"
    for index, name in ((3, "box turtle"), (5, "sea snake")):
        jpeg(ca / f"{index} {name}" / "common-water" / "a.jpg")
        jpeg(ca / f"{index} {name}" / "common-water" / "b.jpg")
        jpeg(ca / f"{index} {name}" / "counter-grass" / "c.jpg")
    return root


@pytest.fixture(scope="module")
def in9_root(tmp_path_factory):
    return write_in9_fixture(tmp_path_factory.mktemp("in9"))


def test_imagenet_splits_use_sorted_synsets_and_carry_no_object(in9_root):
    ds = ImageNet9(IN9Params(image_size=32), in9_root)
    assert ds.info.num_classes == 12 and list(ds.info.class_names) == sorted(WNIDS)
    train = ds.split("train")
    assert len(train) == 24 and train.labels.tolist() == [i for i in range(12) for _ in range(2)]
    batch = train.batch(torch.arange(4))
    assert batch.x.shape == (4, 3, 32, 32) and float(batch.mask.sum()) == 0.0
    assert ds.split("val").labels.tolist() == list(range(12))


def test_test_split_is_the_original_variant_with_aligned_foreground_masks(in9_root):
    ds = ImageNet9(IN9Params(image_size=32), in9_root)
    test = ds.split("test")
    batch = test.batch(torch.arange(len(test)))
    assert batch.y.tolist() == list(range(9))  # synset index of each class's file
    bright = batch.x.mean(1, keepdim=True) > 0.5
    assert ((bright == batch.mask.bool()).float().flatten(1).mean(1) > 0.95).all()  # 1 = foreground


def test_both_label_protocols_and_every_variant(in9_root):
    synset = {s.name: s for s in ImageNet9(IN9Params(image_size=32), in9_root).eval_sets()}
    assert set(synset) == {f"in9_{v}" for v in VARIANTS} | {"counteranimal_common", "counteranimal_counter"}
    assert synset["in9_mixed_rand"].split.labels.tolist() == list(range(9))  # fg_<wnid> names parsed
    nine = {s.name: s for s in ImageNet9(IN9Params(image_size=32, labels="in9"), in9_root).eval_sets()}
    assert nine["in9_only_fg"].split.labels.tolist() == list(range(9))
    logits = torch.zeros(3, 12)
    logits[0, 4], logits[1, 10], logits[2, 8] = 1, 1, 1  # ImageNet 4 -> IN-9 4; 10 -> unmapped; 8 -> 8
    assert nine["in9_original"].predict(logits).tolist() == [4, -1, 8]
    assert mapped_prediction(torch.tensor([2, -1]))(torch.tensor([[0.0, 1.0]])).tolist() == [-1]
    common, counter = synset["counteranimal_common"].split, synset["counteranimal_counter"].split
    assert common.labels.tolist() == [3, 3, 5, 5] and counter.labels.tolist() == [3, 5]


def test_bg_gap_and_counter_drop_are_derived_exactly():
    ds = ImageNet9(IN9Params())
    accuracy = {"in9_mixed_same": 0.862, "in9_mixed_rand": 0.789, "counteranimal_common": 0.8144,
                "counteranimal_counter": 0.6607}
    derived = ds.derived(accuracy)
    assert derived["bg_gap"] == pytest.approx(0.073) and derived["counter_drop"] == pytest.approx(0.1537)
    assert ds.derived({"in9_original": 0.9}) == {}


def test_missing_and_malformed_files_are_one_line_errors(in9_root, tmp_path):
    with pytest.raises(DataError, match="imagenet/train' not found"):
        ImageNet9(IN9Params(), tmp_path).check()
    root = write_in9_fixture(tmp_path / "copy")
    (root / "bg_challenge" / "in_to_in9.json").unlink()
    with pytest.raises(DataError, match="in_to_in9.json' not found"):
        ImageNet9(IN9Params(labels="in9"), root).check()
    (root / "counteranimal" / "LAION-final" / "turtle").mkdir()
    with pytest.raises(DataError, match="expected '<ImageNet index> <class name>'"):
        ImageNet9(IN9Params(), root).eval_sets()
    np.save(root / "bg_challenge" / "fg_mask" / "val" / "00_dog" / f"{WNIDS[0]}_100.npy", np.zeros((5, 5)))
    with pytest.raises(DataError, match="the mask of .* is 5x5, the image 40x32"):
        ImageNet9(IN9Params(), root).split("test").batch(torch.arange(1))


def test_benchmark_run_scores_every_variant_and_derives_the_gaps(in9_root, tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run([*BENCHMARK_CLI, "run", "--method", "vanilla", "--dataset", "in9", "--data-root",
                           str(in9_root), "--out", str(out), "--set", "dataset.image_size=32",
                           "--set", "dataset.labels=in9", "--set", "train.samples=8", "--set", "train.batch_size=4",
                           "--set", "robustness.samples=4", "--set", "robustness.steps=1"],
                          capture_output=True, text=True, env=cli_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    frame, problems = read_results([out])
    assert problems == []
    scored = set(frame[frame.suite == "accuracy"].eval_set)
    assert {f"in9_{v}" for v in VARIANTS} | {"counteranimal_common", "counteranimal_counter", "val", "test"} <= scored
    assert {"bg_gap", "counter_drop"} <= set(frame[frame.suite == "derived"].metric)
    robust = frame[frame.metric == "robust_accuracy"]
    assert (robust[robust.region == "background"].area_fraction < 1).all()
