"""`benchmark prepare`: the prepared cache, safe archive extraction, downloads, one-line errors."""

import io
import subprocess
import tarfile
import zipfile

import pytest
import torch

from benchmark.errors import DataError
from benchmark.prepared import CACHE, download, safe_extract
from benchmark_datasets.coco_animals import COCOAnimals, COCOAnimalsParams
from benchmark_datasets.isic2017 import ISIC2017, ISICParams
from conftest import BENCHMARK_CLI, cli_env
from test_coco_animals import write_coco_fixture
from test_in9 import write_in9_fixture
from test_isic2017 import write_isic_fixture


def prepare(*args):
    return subprocess.run([*BENCHMARK_CLI, "prepare", *args], capture_output=True, text=True, env=cli_env(),
                          timeout=300)


def test_prepared_cache_holds_the_same_arrays_and_replaces_the_raw_files(tmp_path):
    root = write_isic_fixture(tmp_path / "isic")
    raw = ISIC2017(ISICParams(image_size=32), root)
    expected = {s: raw.split(s) for s in ("train", "val", "test")}
    proc = prepare("isic2017", "--data-root", str(root), "--set", "dataset.image_size=32")
    assert proc.returncode == 0, proc.stderr
    assert "train: 8 samples" in proc.stdout and "wrote the prepared cache" in proc.stdout
    assert "Training: 8 images (published: 2000" in proc.stdout and "Test_v2: 3 images" in proc.stdout
    for jpg in root.glob("ISIC-2017_*_Data/*.jpg"):  # from now on only the cache can serve the pixels
        jpg.unlink()
    cached = ISIC2017(ISICParams(image_size=32), root)
    for name, split in expected.items():
        got = cached.split(name)
        assert torch.equal(got.images, split.images) and torch.equal(got.masks, split.masks)
        assert torch.equal(got.labels, split.labels)
    assert ISIC2017(ISICParams(image_size=32), root).prepare()[0].endswith("is up to date (--force rebuilds it)")
    with pytest.raises(DataError, match="not found"):  # another size, another cache: the raw files are gone
        ISIC2017(ISICParams(image_size=40), root).prepare()
    with pytest.raises(DataError, match=r"\.jpg' not found"):  # --force reads the raw files again
        ISIC2017(ISICParams(image_size=32), root).prepare(force=True)
    assert len(list((root / CACHE).iterdir())) == 1  # the failed rebuild left the cache as it was
    assert torch.equal(ISIC2017(ISICParams(image_size=32), root).split("val").images, expected["val"].images)


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
