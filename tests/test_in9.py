"""ImageNet + ImageNet-9 + CounterAnimal on fixtures in their exact folder layouts: synset folders,
the nine IN-9 class folders with spaces in their names, every variant, fg_mask .npy files,
in_to_in9.json, and CounterAnimal's '<index> <name>/common-<bg>' folders."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.errors import DataError
from benchmark_datasets.imagenet import IMAGENET_WNIDS, VARIANTS, ImageNetParams, ImageNetTransfer
from benchmark_datasets.in9 import mapped_prediction

# Real ImageNet-1k classes by index: one per IN-9 class (Chihuahua, ostrich, ambulance, loggerhead,
# lion, ladybug, acoustic guitar, orangutan, tench), then black swan, tiger shark and electric ray.
# The folder holds only these 12, so its class order is not the ImageNet index order.
IN9_INDICES = [151, 9, 407, 33, 291, 301, 402, 365, 0]
INDICES = IN9_INDICES + [100, 3, 5]
WNIDS = [IMAGENET_WNIDS[i] for i in INDICES]
LOCAL = {w: k for k, w in enumerate(sorted(WNIDS))}  # class index in the fixture's ImageNet folder
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
    table = {str(i): -1 for i in range(1000)}
    table.update({str(index): c for c, index in enumerate(IN9_INDICES)})
    (bg / "in_to_in9.json").write_text(json.dumps(table))
    ca = root / "counteranimal" / "LAION-final"
    for index, name in ((100, "black swan"), (3, "tiger shark")):
        jpeg(ca / f"{index} {name}" / "common-water" / "a.jpg")
        jpeg(ca / f"{index} {name}" / "common-water" / "b.jpg")
        jpeg(ca / f"{index} {name}" / "counter-grass" / "c.jpg")
    return root


@pytest.fixture(scope="module")
def in9_root(tmp_path_factory):
    return write_in9_fixture(tmp_path_factory.mktemp("in9"))


def test_imagenet_splits_use_sorted_synsets_and_carry_no_object(in9_root):
    ds = ImageNetTransfer(ImageNetParams(image_size=32), in9_root)
    assert ds.info.num_classes == 12 and list(ds.info.class_names) == sorted(WNIDS)
    train = ds.split("train")
    assert len(train) == 24 and train.labels.tolist() == [i for i in range(12) for _ in range(2)]
    batch = train.batch(torch.arange(4))
    assert batch.x.shape == (4, 3, 32, 32) and float(batch.mask.sum()) == 0.0
    assert sorted(ds.split("val").labels.tolist()) == list(range(12))


def test_test_split_is_the_original_variant_with_aligned_foreground_masks(in9_root):
    ds = ImageNetTransfer(ImageNetParams(image_size=32), in9_root)
    test = ds.split("test")
    batch = test.batch(torch.arange(len(test)))
    assert batch.y.tolist() == [LOCAL[WNIDS[c]] for c in range(9)]  # the folder's index of each file's synset
    bright = batch.x.mean(1, keepdim=True) > 0.5
    assert ((bright == batch.mask.bool()).float().flatten(1).mean(1) > 0.95).all()  # 1 = foreground


def test_both_label_protocols_and_every_variant(in9_root):
    synset = {s.name: s for s in ImageNetTransfer(ImageNetParams(image_size=32), in9_root).eval_sets()}
    assert set(synset) == {f"in9_{v}" for v in VARIANTS} | {"counteranimal_common", "counteranimal_counter"}
    expected = [LOCAL[WNIDS[c]] for c in range(9)]
    assert synset["in9_mixed_rand"].split.labels.tolist() == expected  # fg_<wnid> names parsed
    nine = {s.name: s for s in ImageNetTransfer(ImageNetParams(image_size=32, labels="in9"), in9_root).eval_sets()}
    assert nine["in9_only_fg"].split.labels.tolist() == list(range(9))
    logits = torch.zeros(3, 12)
    lion, swan, tench = (LOCAL[IMAGENET_WNIDS[i]] for i in (291, 100, 0))
    logits[0, lion], logits[1, swan], logits[2, tench] = 1, 1, 1  # carnivore; unmapped; fish
    assert nine["in9_original"].predict(logits).tolist() == [4, -1, 8]
    assert mapped_prediction(torch.tensor([2, -1]))(torch.tensor([[0.0, 1.0]])).tolist() == [-1]
    common, counter = synset["counteranimal_common"].split, synset["counteranimal_counter"].split
    swan, shark = LOCAL[IMAGENET_WNIDS[100]], LOCAL[IMAGENET_WNIDS[3]]
    assert common.labels.tolist() == [swan, swan, shark, shark] and counter.labels.tolist() == [swan, shark]


def test_every_local_class_maps_to_in9_through_its_synset_not_its_folder_position(in9_root):
    """A folder of 12 classes: class k of the folder is not ImageNet class k (on the old mapping by
    position, ostrich, the folder's class 1, became ImageNet class 1, a fish)."""
    ds = ImageNetTransfer(ImageNetParams(image_size=32, labels="in9"), in9_root)
    predict = ds.eval_sets()[0].predict
    for c, index in enumerate(IN9_INDICES):
        logits = torch.zeros(1, 12)
        logits[0, LOCAL[IMAGENET_WNIDS[index]]] = 1
        assert predict(logits).tolist() == [c], IMAGENET_WNIDS[index]


def test_bg_gap_and_counter_drop_are_derived_exactly(in9_root):
    ds = ImageNetTransfer(ImageNetParams(image_size=32), in9_root)
    accuracy = {"in9_mixed_same": 0.862, "in9_mixed_rand": 0.789, "counteranimal_common": 0.8144,
                "counteranimal_counter": 0.6607}
    derived = ds.derived(accuracy)
    assert derived["bg_gap"] == pytest.approx(0.073) and derived["counter_drop"] == pytest.approx(0.1537)
    assert ds.derived({"in9_original": 0.9}) == {}


def test_missing_and_malformed_files_are_one_line_errors(in9_root, tmp_path):
    with pytest.raises(DataError, match="imagenet/train' not found"):
        ImageNetTransfer(ImageNetParams(), tmp_path).check()
    root = write_in9_fixture(tmp_path / "copy")
    (root / "bg_challenge" / "in_to_in9.json").unlink()
    with pytest.raises(DataError, match="in_to_in9.json' not found"):
        ImageNetTransfer(ImageNetParams(labels="in9"), root).check()
    (root / "counteranimal" / "LAION-final" / "turtle").mkdir()
    with pytest.raises(DataError, match="expected '<ImageNet index> <class name>'"):
        ImageNetTransfer(ImageNetParams(), root).eval_sets()
    np.save(root / "bg_challenge" / "fg_mask" / "val" / "00_dog" / f"{WNIDS[0]}_100.npy", np.zeros((5, 5)))
    with pytest.raises(DataError, match="the mask of .* is 5x5, the image 40x32"):
        ImageNetTransfer(ImageNetParams(), root).split("test").batch(torch.arange(1))


def test_counteranimal_class_outside_the_folder_is_refused_in_one_line(tmp_path):
    root = write_in9_fixture(tmp_path / "in9")
    (root / "counteranimal" / "LAION-final" / "1 goldfish" / "common-water").mkdir(parents=True)
    expected = r"ImageNet class 1 \(n01443537\), which the ImageNet folder's 12 classes"
    with pytest.raises(DataError, match=expected) as err:
        ImageNetTransfer(ImageNetParams(image_size=32), root).check()
    assert "\n" not in str(err.value)


def test_a_flat_val_folder_is_told_to_be_sorted_into_synset_folders(tmp_path):
    root = write_in9_fixture(tmp_path / "in9")
    val = root / "imagenet" / "val"
    for image in list(val.rglob("*.JPEG")):
        image.rename(val / image.name)
    for folder in [p for p in val.iterdir() if p.is_dir()]:
        folder.rmdir()
    with pytest.raises(DataError, match="holds its images directly; sort them into one folder per synset"):
        ImageNetTransfer(ImageNetParams(image_size=32), root).check()


@pytest.mark.parametrize("damage", ["missing", "empty", "shape", "garbage"])
def test_bad_foreground_masks_are_found_by_check_before_any_training(tmp_path, damage):
    root = write_in9_fixture(tmp_path / "in9")
    mask = root / "bg_challenge" / "fg_mask" / "val" / "03_reptile" / f"{WNIDS[3]}_103.npy"
    if damage == "missing":
        mask.unlink()
    elif damage == "empty":
        mask.write_bytes(b"")
    elif damage == "shape":
        np.save(mask, np.zeros((5, 5), dtype=bool))
    else:
        mask.write_bytes(b"\x93NUMPY garbage")
    expected = {"missing": "not found", "empty": "not a readable .npy", "shape": "is 5x5, the image 40x32",
                "garbage": "not a readable .npy"}[damage]
    with pytest.raises(DataError, match=expected) as err:
        ImageNetTransfer(ImageNetParams(image_size=32), root).check()
    assert "\n" not in str(err.value) and "03_reptile" in str(err.value)


def test_prepare_decodes_every_evaluation_image(tmp_path):
    root = write_in9_fixture(tmp_path / "in9")
    victim = next((root / "bg_challenge" / "mixed_same" / "val" / "05_insect").iterdir())
    victim.write_bytes(victim.read_bytes()[:60])  # a truncated JPEG passes check(), not prepare
    ImageNetTransfer(ImageNetParams(image_size=32), root).check()
    with pytest.raises(DataError, match=r"05_insect/.*is not a readable image"):
        ImageNetTransfer(ImageNetParams(image_size=32), root).prepare()


def test_no_data_root_names_where_each_part_comes_from():
    with pytest.raises(DataError) as err:
        ImageNetTransfer(ImageNetParams()).check()
    text = str(err.value)
    assert "\n" not in text and "image-net.org" in text and "benchmark prepare in9 --download" in text
    assert "in_to_in9.json" in text and "CounterAnimal" in text and "docs/DATASETS.md" in text


def test_prepare_download_fetches_only_the_missing_parts_into_their_folders(tmp_path, monkeypatch):
    """With the tarball unpacked but in_to_in9.json missing, only the JSON is fetched, into bg_challenge/."""
    from benchmark.dataset import Download

    root = write_in9_fixture(tmp_path / "in9")
    table = root / "bg_challenge" / "in_to_in9.json"
    served = tmp_path / "served"
    served.mkdir()
    table.rename(served / "in_to_in9.json")
    monkeypatch.setattr(ImageNetTransfer, "downloads", (
        Download((served / "absent.tar.gz").as_uri(), present="bg_challenge/original"),  # would fail if fetched
        Download((served / "in_to_in9.json").as_uri(), into="bg_challenge", present="bg_challenge/in_to_in9.json")))
    with pytest.raises(DataError, match="in_to_in9.json' not found"):
        ImageNetTransfer(ImageNetParams(image_size=32, labels="in9"), root).prepare()
    lines = ImageNetTransfer(ImageNetParams(image_size=32, labels="in9"), root).prepare(download=True)
    assert table.is_file() and any(line.startswith("in9_original: 9 images") for line in lines)


def test_challenge_accuracy_equals_a_literal_loop_over_every_foreground_and_background(in9_root):
    from benchmark.config import resolve
    from benchmark.engine.evaluate import evaluate
    from benchmark_datasets.in9 import ImageNet9

    ds = ImageNetTransfer(ImageNetParams(image_size=32, labels="both"), in9_root)
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 7 * 7, ds.info.num_classes)).eval()
    config = resolve("vanilla", "in9", overrides=["eval.suites=challenge", "dataset.image_size=32",
                                                  "dataset.labels=both", "challenge.batch=4"])
    rows = {r.eval_set: r for r in evaluate(model, ds, config, torch.device("cpu")).measurements}
    source = next(s for s in ds.sources() if isinstance(s, ImageNet9))
    foregrounds, classes, pool = source.challenge_parts()
    predictions = source.challenge_predictions()
    backgrounds = [pool.batch(torch.tensor([j])).x[0] for j in range(len(pool))]
    for protocol, eval_set in (("synset", "in9_challenge"), ("in9", "in9_challenge_9way")):
        expected = []
        for k in range(len(foregrounds)):
            one = foregrounds.batch(torch.tensor([k]))
            target = int(one.y[0]) if protocol == "synset" else classes[k]
            right = True
            for background in backgrounds:  # the challenge's composition, one image at a time
                image = background * (1 - one.mask[0]) + one.x[0] * one.mask[0]
                logits = model(image[None])
                predicted = logits.argmax(1) if predictions[protocol] is None else predictions[protocol](logits)
                right = right and int(predicted[0]) == target
            expected.append(float(right))
        row = rows[eval_set]
        assert row.n == len(foregrounds) == 9 and row.extra["pool"] == len(pool) == 9
        assert sorted(zip(row.records.sample.tolist(), row.records.value.tolist())) == list(enumerate(expected))

    class Always(torch.nn.Module):  # predicts the synset of IN-9 class 2 whatever the image
        def forward(self, x):
            logits = torch.zeros(len(x), ds.info.num_classes)
            logits[:, list(ds.info.class_names).index(WNIDS[2])] = 1.0
            return logits

    rows = {r.eval_set: r for r in evaluate(Always(), ds, config, torch.device("cpu")).measurements}
    for eval_set in ("in9_challenge", "in9_challenge_9way"):  # only class 2's foreground survives every background
        held = dict(zip(rows[eval_set].records.sample.tolist(), rows[eval_set].records.value.tolist()))
        assert [held[k] for k in range(9)] == [float(k == 2) for k in range(9)]


def test_the_challenge_without_backgrounds_is_one_line_before_training(in9_root, tmp_path):
    import shutil

    from benchmark.suites import groups  # noqa: F401  (suites register on import)
    from benchmark_datasets.in9_challenge import ChallengeSuite

    root = tmp_path / "copy"
    shutil.copytree(in9_root, root)
    shutil.rmtree(root / "bg_challenge" / "only_bg_t")
    ds = ImageNetTransfer(ImageNetParams(image_size=32), root)
    with pytest.raises(DataError, match="only_bg_t") as caught:
        ChallengeSuite(ChallengeSuite.Params()).check(ds)
    assert "\n" not in str(caught.value)


def test_counteranimal_groups_are_class_by_background_kind_and_score_through_the_group_suite(in9_root):
    from benchmark.config import resolve
    from benchmark.engine.evaluate import evaluate

    ds = ImageNetTransfer(ImageNetParams(image_size=32), in9_root)
    groups = ds.groups("counteranimal")
    assert len(groups.split) == 6 and len(groups.names) == 4  # 2 classes x (common, counter)
    kinds = ["common"] * 4 + ["counter"] * 2  # two common images per class, one counter image per class
    for k, (group, label) in enumerate(zip(groups.ids.tolist(), groups.split.labels.tolist())):
        assert groups.names[group] == f"{ds.info.class_names[label]} {kinds[k]}"
    assert ds.groups("test") is None
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, ds.info.num_classes)).eval()
    config = resolve("vanilla", "in9", overrides=["eval.suites=group_accuracy", "group_accuracy.eval_set=counteranimal",
                                                  "dataset.image_size=32"])
    rows = evaluate(model, ds, config, torch.device("cpu")).measurements
    assert {r.metric for r in rows} == {"group_accuracy", "worst_group_accuracy", "average_group_accuracy"}
    assert sum(r.n for r in rows if r.metric == "group_accuracy") == 6
