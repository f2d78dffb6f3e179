"""Packaging: `import datasets` stays Hugging Face, built-ins work from a regular install."""

import subprocess
import sys

import pytest

from conftest import REPO, TINY_TRAINING_RUN, cli_env


def test_import_datasets_in_repository_root_is_hugging_face():
    code = "import datasets; print(datasets.load_dataset); print(datasets.__file__)"
    proc = subprocess.run([sys.executable, "-c", code],
                          cwd=REPO, capture_output=True, text=True, check=True, env=cli_env())
    first, path = proc.stdout.splitlines()
    assert first.startswith("<function load_dataset")
    assert not path.startswith(str(REPO / "datasets"))


def test_tests_see_hugging_face_datasets_too():
    import datasets

    assert hasattr(datasets, "load_dataset") and hasattr(datasets, "Dataset")


def test_builtin_plugins_import_under_their_package_names():
    import benchmark_datasets.cmnist

    assert benchmark_datasets.cmnist.EMBEDDED.is_file()


@pytest.mark.slow
def test_regular_install_carries_the_builtins_and_the_embedded_sample(tmp_path):
    """`pip install .` (not editable) into a folder, then run from elsewhere."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO)], check=True, capture_output=True, text=True)
    assert (target / "benchmark_datasets" / "data" / "mnist_sample.npz").is_file()
    env = cli_env(PYTHONPATH=str(target))
    where = subprocess.run([sys.executable, "-c", "import benchmark_methods.vanilla as v, benchmark; "
                            "print(v.__file__); print(benchmark.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True, env=env).stdout
    assert all(line.startswith(str(target)) for line in where.splitlines())
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--method", "vanilla", "--out", str(out),
                           *TINY_TRAINING_RUN],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("vanilla__cmnist__quick__*.parquet"))) == 1
