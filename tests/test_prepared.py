"""`benchmark prepare`: the prepared cache, safe archive extraction, downloads, one-line errors."""

import io
import json
import tarfile
import zipfile

import pytest
import torch
from test_coco_animals import write_coco_fixture
from test_in9 import write_in9_fixture
from test_isic2017 import write_isic_fixture

from benchmark.data.prepared import CACHE, download, safe_extract
from benchmark.errors import DataError
from benchmark_datasets.coco_animals import COCOAnimals, COCOAnimalsParams
from benchmark_datasets.isic2017 import ISIC2017, ISICParams
from conftest import run_cli


def prepare(*args):
    return run_cli("prepare", *args)


def test_prepared_cache_holds_the_same_arrays_and_is_read_instead_of_the_raw_files(tmp_path):
    root = write_isic_fixture(tmp_path / "isic")
    raw = ISIC2017(ISICParams(image_size=32), root)
    expected = {s: raw.split(s) for s in ("train", "val", "test")}
    proc = prepare("isic2017", "--data-root", str(root), "--set", "dataset.image_size=32")
    assert proc.returncode == 0, proc.stderr
    assert "train: 8 samples" in proc.stdout and "wrote the prepared cache" in proc.stdout
    assert "Training: 8 images (published: 2000" in proc.stdout and "Test_v2: 3 images" in proc.stdout
    for jpg in root.glob("ISIC-2017_*_Data/*.jpg"):  # overwritten in place: only the cache has the pixels now
        jpg.write_bytes(b"not a jpeg")
    cached = ISIC2017(ISICParams(image_size=32), root)
    for name, split in expected.items():
        got = cached.split(name)
        assert torch.equal(got.images, split.images) and torch.equal(got.masks, split.masks)
        assert torch.equal(got.labels, split.labels)
    assert cached.notes == []
    assert ISIC2017(ISICParams(image_size=32), root).prepare()[0].endswith("is up to date (--force rebuilds it)")
    with pytest.raises(DataError, match="not a readable image"):  # another size, another cache: raw files again
        ISIC2017(ISICParams(image_size=40), root).prepare()
    with pytest.raises(DataError, match=r"\.jpg' is not a readable image"):  # --force reads the raw files again
        ISIC2017(ISICParams(image_size=32), root).prepare(force=True)
    assert len(list((root / CACHE).iterdir())) == 1  # the failed rebuild left the cache as it was
    assert torch.equal(ISIC2017(ISICParams(image_size=32), root).split("val").images, expected["val"].images)


def test_a_cache_built_from_other_source_files_is_never_read(tmp_path):
    """Issue 15: prepared with 5 rows of the Part 3 CSV, then the full CSV restored."""
    root = write_isic_fixture(tmp_path / "isic")
    labels = root / "ISIC-2017_Training_Part3_GroundTruth.csv"
    full = labels.read_text()
    labels.write_text("".join(full.splitlines(keepends=True)[:6]))  # the header and 5 images
    assert prepare("isic2017", "--data-root", str(root), "--set", "dataset.image_size=32").returncode == 0
    labels.write_text(full)
    ds = ISIC2017(ISICParams(image_size=32), root)
    assert len(ds.split("train")) + len(ds.split("val")) == 10  # the full CSV, not the cached subset
    assert len(ds.notes) == 1 and "no longer matches its source files (ISIC-2017_Training_Part3_GroundTruth.csv " \
        "changed); reading the raw files" in ds.notes[0]
    proc = prepare("isic2017", "--data-root", str(root), "--set", "dataset.image_size=32")
    assert proc.returncode == 0 and "no longer matches its source files" in proc.stdout
    assert "rebuilding it" in proc.stdout and "train: 8 samples" in proc.stdout
    (root / "ISIC-2017_Test_v2_Data" / "ISIC_0000010.jpg").unlink()  # a file count changes too
    assert ISIC2017(ISICParams(image_size=32), root).stale_sources(next((root / CACHE).iterdir())) == [
        "ISIC-2017_Test_v2_Data"]


def test_coco_cache_follows_its_annotation_file_and_keeps_the_dropped_count(tmp_path):
    root = write_coco_fixture(tmp_path / "coco")
    path = root / "annotations" / "instances_train2017.json"
    full = json.loads(path.read_text())
    partial = {**full, "images": full["images"][:8]}  # 7 single-class images and the two-class one kept
    partial["annotations"] = [a for a in full["annotations"] if a["image_id"] in {i["id"] for i in partial["images"]}]
    path.write_text(json.dumps(partial))
    proc = prepare("coco_animals", "--data-root", str(root), "--set", "dataset.image_size=32")
    assert proc.returncode == 0 and "dropped 0 images showing two or more of" in proc.stdout
    path.write_text(json.dumps(full))
    proc = prepare("coco_animals", "--data-root", str(root), "--set", "dataset.image_size=32")
    assert "annotations/instances_train2017.json changed); rebuilding it" in proc.stdout
    assert "train: 8 samples" in proc.stdout and "dropped 1 images showing two or more of" in proc.stdout
    again = prepare("coco_animals", "--data-root", str(root), "--set", "dataset.image_size=32")
    assert "is up to date" in again.stdout and "dropped 1 images" in again.stdout  # the count read from the cache
    ds = COCOAnimals(COCOAnimalsParams(image_size=32), root)
    ds.split("train")
    assert ds.counts == {"dropped_multi_class": 1} and ds.notes == []


def test_missing_data_root_is_one_line_for_every_dataset():
    for name in ("cmnist", "coco_animals", "isic2017", "in9"):
        proc = prepare(name, "--data-root", "/missing")
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "/missing" in proc.stderr, name


def test_safe_extract_refuses_members_outside_the_target(tmp_path):
    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../escape.txt", "bad")
    with pytest.raises(DataError, match="outside the target folder"):
        safe_extract(evil_zip, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
    evil_tar = tmp_path / "evil.tar.gz"
    with tarfile.open(evil_tar, "w:gz") as tf:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(DataError, match="outside the target folder"):
        safe_extract(evil_tar, tmp_path / "out2")
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as tf:
        data = b"hello"
        info = tarfile.TarInfo("folder/a.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    safe_extract(good, tmp_path / "out3")
    assert (tmp_path / "out3" / "folder" / "a.txt").read_bytes() == b"hello"


def test_prepare_downloads_public_archives_when_files_are_missing(tmp_path, monkeypatch):
    fixture = write_coco_fixture(tmp_path / "source")
    archive = tmp_path / "coco.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in fixture.rglob("*"):
            if path.is_file():
                zf.write(path, path.relative_to(fixture))
    monkeypatch.setattr(COCOAnimals, "downloads", (archive.as_uri(),))
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DataError, match="not found"):
        COCOAnimals(COCOAnimalsParams(image_size=32), root).prepare(download=False)
    lines = COCOAnimals(COCOAnimalsParams(image_size=32), root).prepare(download=True)
    assert (root / "annotations" / "instances_train2017.json").is_file()
    assert lines[:3] == ["train: 8 samples", "val: 2 samples", "test: 2 samples"]
    with pytest.raises(DataError, match=r"could not download file:///nowhere/x\.zip .*by hand"):
        download("file:///nowhere/x.zip", tmp_path / "t")


def test_prepare_checks_and_counts_the_coco_and_in9_fixtures(tmp_path):
    coco = write_coco_fixture(tmp_path / "coco")
    proc = prepare("coco_animals", "--data-root", str(coco), "--set", "dataset.image_size=32")
    assert proc.returncode == 0, proc.stderr
    assert "train: 8 samples" in proc.stdout and "wrote the prepared cache" in proc.stdout
    in9 = write_in9_fixture(tmp_path / "in9")
    proc = prepare("in9", "--data-root", str(in9), "--set", "dataset.image_size=32")
    assert proc.returncode == 0, proc.stderr
    assert "train: 24 samples" in proc.stdout and "in9_mixed_rand: 9 images" in proc.stdout
    assert "counteranimal_counter: 2 images" in proc.stdout
    bad = prepare("in9", "--data-root", str(in9), "--set", "train.lr=1")
    assert bad.returncode == 2 and "dataset settings only" in bad.stderr
