"""From the published archives to a finished run, for every natural-image dataset, exactly as
docs/DATASETS.md tells a user: the test builds archives in the public layouts (zip files of COCO
2017 and ISIC-2017, the Backgrounds Challenge tarball, ImageNet and CounterAnimal folders), then
runs the documented shell lines (unpack, `benchmark prepare`, `benchmark run`, `benchmark report`)
with the quick profile's default suites and every explainer, on tiny images for one epoch."""

import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from test_coco_animals import write_coco_fixture
from test_in9 import write_in9_fixture
from test_isic2017 import write_isic_fixture
from test_waterbirds import write_waterbirds_fixture

from benchmark.results.store import FAILED, read_results
from benchmark.suites.attribution import BUILTIN_EXPLAINERS as ALL_EXPLAINERS
from benchmark_datasets.imagenet import VARIANTS
from conftest import REPO, cli_env, run_cli

TINY = {"prepare": "--set dataset.image_size=32", "run": "--set dataset.image_size=32 --set train.epochs=1"}


def documented_lines(dataset: str) -> list[str]:
    """The bash block under `<!-- end-to-end: DATASET -->` in docs/DATASETS.md."""
    text = (REPO / "docs" / "DATASETS.md").read_text()
    match = re.search(rf"<!-- end-to-end: {dataset} -->\n```bash\n(.*?)```", text, re.S)
    assert match, f"docs/DATASETS.md has no end-to-end block for {dataset}"
    return match.group(1).strip().splitlines()


def as_test_script(lines: list[str], paths: dict[str, Path]) -> str:
    """The documented lines with this interpreter for `benchmark` and `python`, the fixtures for
    placeholder paths, and tiny images for one epoch on prepare and run."""
    out = ["set -euo pipefail"]
    for line in lines:
        for placeholder, path in paths.items():
            line = line.replace(placeholder, str(path))
        command = line.split("#")[0].rstrip()
        for verb, settings in TINY.items():
            if command.startswith(f"benchmark {verb} "):
                command += " " + settings
        command = re.sub(r"^benchmark ", f"{sys.executable} -m benchmark ", command)
        command = command.replace("python -m zipfile", f"{sys.executable} -m zipfile")
        out.append(command)
    return "\n".join(out) + "\n"


def zip_folders(archive: Path, root: Path, names: list[str]) -> None:
    with zipfile.ZipFile(archive, "w") as zf:
        for name in names:
            for path in sorted((root / name).rglob("*")):
                zf.write(path, path.relative_to(root).as_posix())


def coco_archives(where: Path, tmp: Path) -> dict[str, Path]:
    source = write_coco_fixture(tmp / "coco-source")
    zip_folders(where / "annotations_trainval2017.zip", source, ["annotations"])
    zip_folders(where / "train2017.zip", source, ["train2017"])
    return {}


def isic_archives(where: Path, tmp: Path) -> dict[str, Path]:
    source = write_isic_fixture(tmp / "isic-source")
    for part in ("Training", "Validation", "Test_v2"):
        for what in ("Data", "Part1_GroundTruth"):
            zip_folders(where / f"ISIC-2017_{part}_{what}.zip", source, [f"ISIC-2017_{part}_{what}"])
        shutil.copy(source / f"ISIC-2017_{part}_Part3_GroundTruth.csv", where)
    return {}


def in9_archives(where: Path, tmp: Path) -> dict[str, Path]:
    source = write_in9_fixture(tmp / "in9-source")
    shutil.move(source / "bg_challenge" / "in_to_in9.json", where / "in_to_in9.json")  # not in the tarball
    with tarfile.open(where / "backgrounds_challenge_data.tar.gz", "w:gz") as tf:
        tf.add(source / "bg_challenge", arcname="bg_challenge")
    return {"/path/to/imagenet": source / "imagenet",
            "/path/to/LAION-final": source / "counteranimal" / "LAION-final"}


def waterbirds_archives(where: Path, tmp: Path) -> dict[str, Path]:
    source = write_waterbirds_fixture(tmp / "waterbirds-source")
    with tarfile.open(where / "waterbird_complete95_forest2water2.tar.gz", "w:gz") as tf:
        tf.add(source / "waterbird_complete95_forest2water2", arcname="waterbird_complete95_forest2water2")
    with tarfile.open(where / "segmentations.tgz", "w:gz") as tf:
        tf.add(source / "segmentations", arcname="segmentations")
    return {}


ARCHIVES = {"coco_animals": coco_archives, "isic2017": isic_archives, "in9": in9_archives,
            "waterbirds": waterbirds_archives}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", list(ARCHIVES))
def test_documented_commands_run_the_default_suites_with_every_explainer(dataset, tmp_path):
    where = tmp_path / "downloads"
    where.mkdir()
    paths = ARCHIVES[dataset](where, tmp_path)
    script = as_test_script(documented_lines(dataset), paths)
    proc = subprocess.run(["bash", "-c", script], cwd=where, capture_output=True, text=True, env=cli_env(),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote the prepared cache" in proc.stdout or "every evaluation image and mask decodes" in proc.stdout
    frame, problems = read_results([where / "results"])
    assert problems == [] and set(frame.dataset) == {dataset} and set(frame.method) == {"hsplid"}
    assert not (frame.metric == FAILED).any()
    config = frame.config.iloc[0]
    suites = set(re.search(r'"suites":\[(.*?)\]', config).group(1).replace('"', "").split(","))
    assert {"accuracy", "robustness", "attribution"} <= suites and suites <= set(frame.suite)
    attribution = frame[(frame.suite == "attribution") & (frame.metric == "relevance_mass_accuracy")]
    assert set(attribution.explainer) == set(ALL_EXPLAINERS)
    assert attribution.value.between(0, 1).all()
    assert (where / "results" / "leaderboard.html").stat().st_size > 0
    CHECKS[dataset](frame)


def coco_checks(frame):
    robust = frame[frame.metric == "robust_accuracy"]
    assert {"background", "block", "full"} <= set(robust.region)
    block = robust[robust.region == "block"]
    assert (block.area_fraction > 0).all() and (block.area_fraction < 56 / 224 + 1e-6).all()
    assert (frame[(frame.suite == "accuracy") & (frame.eval_set == "test")].n == 2).all()


def isic_checks(frame):
    corrupted = frame[frame.metric == "corrupted_accuracy"]
    assert set(corrupted.region) == {"background"} and set(corrupted.attack) == {"brightness", "defocus_blur", "snow"}
    assert '"class_balanced":true' in frame.config.iloc[0]


def in9_checks(frame):
    scored = set(frame[frame.suite == "accuracy"].eval_set)
    assert {f"in9_{v}" for v in VARIANTS} | {"counteranimal_common", "counteranimal_counter", "val", "test"} <= scored
    assert {"bg_gap", "counter_drop"} <= set(frame[frame.suite == "derived"].metric)
    assert set(frame[frame.metric == "challenge_accuracy"].eval_set) == {"in9_challenge"}
    robust = frame[frame.metric == "robust_accuracy"]
    assert (robust[robust.region == "background"].area_fraction < 1).all()


def waterbirds_checks(frame):
    groups = frame[frame.suite == "group_accuracy"]
    assert {"group_accuracy", "worst_group_accuracy", "average_group_accuracy"} <= set(groups.metric)
    named = {json.loads(e)["group"] for e in groups[groups.metric == "group_accuracy"].extra}
    assert named == {"landbird on land", "landbird on water", "waterbird on land", "waterbird on water"}
    assert set(frame[frame.metric == "robust_accuracy"].region) >= {"background", "full"}


CHECKS = {"coco_animals": coco_checks, "isic2017": isic_checks, "in9": in9_checks, "waterbirds": waterbirds_checks}


@pytest.mark.parametrize("dataset", list(ARCHIVES))
def test_a_missing_data_root_is_one_line_before_anything_runs(dataset, tmp_path):
    proc = run_cli("run", "--dataset", dataset, "--data-root", "/missing", "--out", tmp_path / "out")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "/missing" in proc.stderr
    assert not (tmp_path / "out").exists()
