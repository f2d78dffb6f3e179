"""Bad input, over the command line and the Python API: every case ends in one line naming what
was expected, exit status 2, no traceback, and the results folder byte-identical before and after
(nothing written, nothing lost). Plus the faults that are not input: diverged training, a full
disk, a read-only folder, untrusted strings in result files."""

import os
import subprocess

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import benchmark.files
from benchmark.checkpoint import load_checkpoint
from benchmark.config import resolve
from benchmark.data.prepared import safe_extract
from benchmark.engine.run import evaluate_checkpoint, run
from benchmark.engine.weights import Workspace
from benchmark.errors import BenchmarkError
from benchmark.results.store import read_results
from benchmark_leaderboard.render import render_markdown
from benchmark_leaderboard.report import build_report
from conftest import BENCHMARK_CLI, cli_env, run_cli

TINY = ["--set", "train.samples=64", "--set", "train.epochs=1", "--set", "eval.samples=32",
        "--set", "eval.suites=accuracy,robustness", "--set", "robustness.samples=8", "--set", "robustness.steps=1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A results folder holding one finished run (results, checkpoint), and bad files beside it."""
    root = tmp_path_factory.mktemp("bad-input")
    out = root / "results"
    proc = run_cli("run", "--method", "vanilla", "--out", out, *TINY)
    assert proc.returncode == 0, proc.stderr
    ckpt = next((out / "checkpoints").glob("*.pt"))
    (root / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated")
    payload = torch.load(ckpt, weights_only=True)
    torch.save({**payload, "config": "{not json"}, root / "config-not-json.pt")
    nan = {**payload, "model": {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                for k, v in payload["model"].items()}}
    torch.save(nan, root / "nan-weights.pt")
    (root / "a-file").write_text("not a folder")
    (root / "report-dir.html").mkdir()
    (root / "exits.py").write_text("import sys\nsys.exit(3)\n")
    return {"OUT": out, "CKPT": ckpt, "CORRUPT": root / "corrupt.pt", "NOTJSON": root / "config-not-json.pt",
            "NAN": root / "nan-weights.pt", "FILE": root / "a-file", "DIR_HTML": root / "report-dir.html",
            "EXITS": root / "exits.py"}


def snapshot(folder) -> dict[str, tuple[int, int, int]]:
    """Size, modification time and inode of every file: any write, atomic replace or removal shows."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino)
            for p in sorted(folder.rglob("*")) if p.is_file() and ".locks" not in p.parts}


RUN = ["run", "--method", "vanilla", "--out", "OUT"]
CASES = [
    # names and choices
    (["run", "--method", "no-such", "--out", "OUT"], "unknown method 'no-such'; did you mean"),
    (["run", "--method", ",", "--out", "OUT"], "--method expects at least one name"),
    (["run", "--dataset", "cmnst", "--out", "OUT"], "did you mean cmnist"),
    (["run", "--profile", "fast", "--out", "OUT"], "unknown profile 'fast'"),
    (["run", "--seed", "x", "--out", "OUT"], "--seed expects integers"),
    (["run", "--seed", "-1", "--out", "OUT"], "--seed expects integers >= 0"),
    ([*RUN, "--checkpoint-every", "0"], "--checkpoint-every expects a number of steps >= 1"),
    ([*RUN, "--plugin", "/missing.py"], "plugin file '/missing.py' not found"),
    ([*RUN, "--plugin", "EXITS"], "failed to import: SystemExit: 3"),
    # keys and values
    ([*RUN, "--set", "train.lrr=1"], "unknown key train.lrr; did you mean train.lr?"),
    ([*RUN, "--set", "nosection.key=1"], "unknown config section 'nosection'"),
    ([*RUN, "--set", "train.lr"], "bad override 'train.lr': expected section.key=value"),
    ([*RUN, "--set", "train.epochs=two"], "train.epochs expects an integer"),
    ([*RUN, "--set", "train.epochs=-1"], "train.epochs must be an integer >= 0"),
    ([*RUN, "--set", "train.batch_size=0"], "train.batch_size must be an integer >= 1"),
    ([*RUN, "--set", "train.init_from=run:vanila"], "unknown method 'vanila'"),
    ([*RUN, "--set", "train.init_from=OUT/none.pt"], "train.init_from: no checkpoint file"),
    ([*RUN, "--dataset", "coco_animals", "--set", "train.init_from=CKPT"],
     "was trained on 'cmnist', not 'coco_animals'"),
    ([*RUN, "--set", "train.lr=inf"], "train.lr expects a finite number"),
    ([*RUN, "--set", "train.lr=nan"], "train.lr expects a finite number"),
    ([*RUN, "--set", "train.lr=-1"], "train.lr must be a float in (0, 10]"),
    ([*RUN, "--set", "train.lr=1e39"], "train.lr must be a float in (0, 10]"),
    ([*RUN, "--set", "train.adam_eps=nan"], "train.adam_eps expects a finite number"),
    ([*RUN, "--set", "train.adam_eps=-1"], "train.adam_eps must be a float in (0, 1]"),
    ([*RUN, "--set", "train.adam_betas=0.9,1.5"], "train.adam_betas must be two floats in [0, 1)"),
    ([*RUN, "--set", "train.grad_clip=0"], "train.grad_clip must be a float > 0 or none"),
    ([*RUN, "--set", "eval.suites=", "--set", "train.epochs=0"], "nothing to do"),
    ([*RUN, "--set", "eval.suites=nosuch"], "unknown suite 'nosuch'"),
    ([*RUN, "--set", "eval.suites=accuracy,accuracy"], "eval.suites must be names without repeats"),
    ([*RUN, "--set", "eval.splits=val,tset"], "eval.splits: dataset 'cmnist' has no split 'tset'"),
    ([*RUN, "--set", "eval.samples=0"], "eval.samples must be an integer >= 1 or none"),
    ([*RUN, "--set", "robustness.steps=0"], "robustness.steps must be >= 1"),
    ([*RUN, "--set", "robustness.step_size=0"], "robustness.step_size > 0"),
    ([*RUN, "--set", 'robustness.grid={"pgd": {"full": ["nan"]}}'], "robustness.grid expects a finite number"),
    ([*RUN, "--set", 'robustness.grid={"pgd": {"full": [2]}}'], "an L-inf eps above 1 means nothing"),
    ([*RUN, "--set", 'robustness.grid={"pgd": {"full": [-0.1]}}'], "eps values must be >= 0"),
    ([*RUN, "--set", 'robustness.grid={"pgd": {"nowhere": [0.1]}}'], "unknown attack region 'nowhere'"),
    ([*RUN, "--set", 'robustness.grid={"pgdd": {"full": [0.1]}}'], "unknown attack 'pgdd'"),
    ([*RUN, "--set", "robustness.norm=l3"], "robustness.norm must be one of linf, l2"),
    ([*RUN, "--set", "robustness.seeds="], "robustness.seeds must list at least one attack seed"),
    ([*RUN, "--set", "corruptions.region=nowhere"], "unknown attack region 'nowhere'"),
    ([*RUN, "--set", 'corruptions.grid={"fog": [1]}'], "unknown corruption 'fog'"),
    ([*RUN, "--set", 'corruptions.grid={"snow": [6]}'], "severities must be integers 1 to 5"),
    ([*RUN, "--set", "attribution.explainers=nosuch"], "unknown explainer 'nosuch'"),
    ([*RUN, "--set", "attribution.top_k_fraction=2"], "attribution.top_k_fraction must be in (0, 1]"),
    ([*RUN, "--set", "attribution.metrics=pointing"], "unknown metric 'pointing'"),
    (["run", "--method", "l1_weights", "--out", "OUT", "--set", "method.strength=-1"], "method.strength must be >= 0"),
    (["run", "--method", "hsplid", "--out", "OUT", "--set", "method.beta_step=1"],
     "method.beta_step must be in [0, 1)"),
    # files and folders
    (["run", "--method", "vanilla", "--out", "FILE"], "--out 'FILE' is a file; expected a folder"),
    ([*RUN, "--data-root", "/missing", "--set", "dataset.source=idx"], "no MNIST IDX files in '/missing'"),
    (["run", "--dataset", "coco_animals", "--data-root", "/missing", "--out", "OUT"], "not found"),
    (["attack", "--checkpoint", "/missing.pt", "--out", "OUT"], "checkpoint '/missing.pt' not found"),
    (["attack", "--checkpoint", "CORRUPT", "--out", "OUT"], "is not a readable benchmark checkpoint"),
    (["attack", "--checkpoint", "NOTJSON", "--out", "OUT"], "has a config or history that is not JSON"),
    (["attack", "--checkpoint", "NAN", "--out", "OUT"], "holds non-finite weights"),
    (["attack", "--checkpoint", "CKPT", "--attack", "pgdd", "--out", "OUT"], "unknown attack 'pgdd'"),
    (["attack", "--checkpoint", "CKPT", "--set", "train.lr=1", "--out", "OUT"],
     "train.lr describes how the checkpoint"),
    (["attack", "--checkpoint", "CKPT", "--suite", ",", "--out", "OUT"], "--suite expects at least one name"),
    (["attack", "--checkpoint", "CKPT", "--suite", "accuracy", "--attack", "pgd", "--out", "OUT"],
     "--attack needs the robustness suite"),
    (["results", "--out", "/missing"], "does not exist"),
    (["results", "--out", "FILE"], "--out 'FILE' is a file; expected a results folder"),
    (["report", "--results", "OUT", "--out", "DIR_HTML"], "--out expects an .html file, got the folder"),
    (["report", "--results", "OUT", "--out", "x.txt"], "--out expects an .html file"),
    (["report", "--results", "/missing"], "results folder or file '/missing' does not exist"),
    (["sweep", "--methods", ",", "--out", "OUT"], "--methods expects at least one name"),
    (["sweep", "--select-eps", "nan", "--out", "OUT"], "--select-eps expects a number >= 0"),
    (["sweep", "--workers", "0", "--out", "OUT"], "--workers expects an integer >= 1"),
    (["sweep", "--grid", "nosuch", "--out", "OUT"], "no method of this sweep has a grid named 'nosuch'"),
    (["prepare", "nosuch"], "unknown dataset 'nosuch'"),
    (["prepare", "cmnist", "--set", "train.lr=1"], "prepare takes dataset settings only"),
    (["list", "widgets"], "invalid choice"),
    (["perf", "no_case"], "unknown perf case"),
]


@pytest.mark.parametrize("args, expected", CASES, ids=[f"{i}-{c[0][0]}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(store, args, expected):
    before = snapshot(store["OUT"].parent)
    argv = [str(store.get(a, a)) for a in args]
    argv = [a.replace("=CKPT", f"={store['CKPT']}").replace("=OUT/", f"={store['OUT']}/") for a in argv]
    proc = run_cli(*argv)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert expected.replace("FILE", str(store["FILE"])).replace("DIR_HTML", "") in lines[0], lines[0]
    assert snapshot(store["OUT"].parent) == before


@pytest.mark.parametrize("call, expected", [
    (lambda s: resolve("vanilla", "cmnist", overrides={"train": {"lr": float("nan")}}), "train.lr expects a finite"),
    (lambda s: resolve("vanilla", "cmnist", overrides={"robustness": {"grid": {"pgd": {"full": [float("inf")]}}}}),
     "robustness.grid expects a finite number"),
    (lambda s: resolve("vanilla", "cmnist", seed=-3), "seed must be an integer >= 0"),
    (lambda s: resolve("vanilla", "cmnist", profile="slow"), "unknown profile 'slow'"),
    (lambda s: run("vanilla", "cmnist", overrides=["train.adam_eps=0"], workspace=Workspace(s["OUT"])),
     "train.adam_eps must be"),
    (lambda s: evaluate_checkpoint(s["NAN"], workspace=Workspace(s["OUT"])), "holds non-finite weights"),
    (lambda s: load_checkpoint(s["NOTJSON"]), "not JSON"),
])
def test_bad_input_through_the_python_api_is_one_benchmark_error(store, call, expected):
    before = snapshot(store["OUT"].parent)
    with pytest.raises(BenchmarkError, match=expected.replace("(", r"\(")) as err:
        call(store)
    assert "\n" not in str(err.value)
    assert snapshot(store["OUT"].parent) == before


INCOMPATIBLE_DATASET = '''
from dataclasses import replace
from benchmark.registry import DATASETS
from benchmark_datasets.cmnist import CMNIST


@DATASETS.register("cmnist-5way")
class FiveWay(CMNIST):
    """C-MNIST with a 5-class head, to test that a 10-class checkpoint is refused."""

    _info = replace(CMNIST._info, num_classes=5, class_names=tuple("01234"))
'''


def test_a_checkpoint_for_another_class_count_is_one_line(store, tmp_path):
    plugin = tmp_path / "five_way.py"
    plugin.write_text(INCOMPATIBLE_DATASET)
    before = snapshot(store["OUT"].parent)
    proc = subprocess.run([*BENCHMARK_CLI, "attack", "--checkpoint", str(store["CKPT"]), "--dataset", "cmnist-5way",
                           "--plugin", str(plugin), "--out", str(store["OUT"])],
                          capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "does not fit a model for dataset 'cmnist-5way'" in proc.stderr
    assert snapshot(store["OUT"].parent) == before


# -- training that diverges --------------------------------------------------------------------
def test_an_update_that_makes_the_weights_non_finite_is_never_saved(tmp_path, monkeypatch):
    """One step (so the loss the loop sees is finite) that leaves infinite weights."""
    original = torch.optim.Adam.step

    def exploding(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", exploding)
    proc = run_cli("run", "--method", "vanilla", "--out", tmp_path / "out", "--quiet", *TINY)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "training diverged" in proc.stderr and "nothing was saved" in proc.stderr
    assert not list((tmp_path / "out").rglob("*.pt")) and not list((tmp_path / "out").rglob("*.parquet"))


def test_a_finite_but_exploded_loss_flags_every_row_diverged_warns_under_quiet_and_is_never_ranked(tmp_path):
    proc = run_cli("run", "--method", "vanilla", "--out", tmp_path, *TINY, "--set", "train.lr=10",
                   "--set", "train.samples=256", "--set", "train.batch_size=128", "--quiet")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "the final training loss is over 10 times the first" in warnings[0], proc.stderr
    frame, _ = read_results([tmp_path])
    assert frame["flags"].str.contains("diverged").all()
    first = frame[frame.metric == "first_loss_ce"].value.iloc[0]
    assert frame[frame.metric == "final_loss_ce"].value.iloc[0] > 10 * first
    (board,) = build_report([tmp_path])[0]
    (entry,) = board.entries
    assert entry.diverged and entry.rank == 0  # shown, never ranked
    assert "| — | vanilla" in render_markdown([board]) and "(diverged, not ranked)" in render_markdown([board])


def test_a_finished_checkpoint_with_non_finite_weights_is_trained_again_not_reused(tmp_path):
    out = tmp_path / "out"
    assert run_cli("run", "--method", "vanilla", "--out", out, *TINY).returncode == 0
    ckpt = next((out / "checkpoints").glob("*.pt"))
    payload = torch.load(ckpt, weights_only=True)
    payload["model"] = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in payload["model"].items()}
    torch.save(payload, ckpt)
    (next(out.glob("*.parquet"))).unlink()
    proc = run_cli("run", "--method", "vanilla", "--out", out, *TINY)
    said = " ".join(proc.stderr.split())  # rich wraps long paths
    assert proc.returncode == 0 and "holds non-finite weights" in said and "training again" in said, proc.stderr
    assert all(torch.isfinite(t).all() for t in torch.load(ckpt, weights_only=True)["model"].values()
               if t.is_floating_point())


# -- faults of the file system ------------------------------------------------------------------
def test_a_full_disk_is_one_line_and_keeps_the_last_resume_checkpoint(tmp_path, monkeypatch):
    """The final checkpoint's write fails the way torch.save fails on a full disk."""
    import benchmark.checkpoint as checkpoint

    real_save = torch.save

    def full_disk_save(obj, fh, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("kind") == "final":
            fh.write(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")
        return real_save(obj, fh, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", full_disk_save)
    monkeypatch.setattr(benchmark.files, "disk_full", lambda folder, slack=1 << 20: True)
    out = tmp_path / "out"
    proc = run_cli("run", "--method", "vanilla", "--out", out, "--quiet", *TINY, "--set", "train.epochs=2")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "No space left on device" in proc.stderr and "checkpoints/vanilla__cmnist" in proc.stderr
    assert "resume checkpoints included, are kept" in proc.stderr
    resume = list((out / "checkpoints").glob("*.resume.pt"))
    assert len(resume) == 1 and load_checkpoint(resume[0])["kind"] == "resume"  # epoch 1 is not lost
    assert not list((out / "checkpoints").glob(".*.tmp")) and not list(out.glob("*.parquet"))


def test_a_read_only_results_folder_is_refused_before_training(tmp_path, monkeypatch):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: emulate what any other user gets
        monkeypatch.setattr("benchmark.cli.base.os.access", lambda path, mode: False)
    try:
        proc = run_cli("run", "--method", "vanilla", "--out", folder / "results", *TINY)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot be written: permission denied on" in proc.stderr and list(folder.iterdir()) == []


def test_a_tar_hard_link_out_of_the_archive_root_is_refused_and_nothing_is_extracted(tmp_path):
    import io
    import tarfile

    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        data = b"fine"
        first = tarfile.TarInfo("annotations/ok.json")
        first.size = len(data)
        tf.addfile(first, io.BytesIO(data))
        link = tarfile.TarInfo("annotations/hl")
        link.type, link.linkname = tarfile.LNKTYPE, "../outside/victim.txt"  # relative to the archive root
        tf.addfile(link)
    target = tmp_path / "root"
    target.mkdir()
    (target / "kept.txt").write_text("already here")
    with pytest.raises(BenchmarkError, match="hard link target '../outside/victim.txt' outside the target folder"):
        safe_extract(archive, target)
    assert sorted(p.name for p in target.iterdir()) == ["kept.txt"]


# -- untrusted strings ---------------------------------------------------------------------------
def test_names_from_result_files_are_printed_as_text_never_as_markup(store, tmp_path):
    frame = pq.read_table(next(store["OUT"].glob("*.parquet")))
    hostile = frame.set_column(frame.schema.get_field_index("method"), "method",
                               pa.array(["[/x] [bold]=cmd|' /C calc'!A0 <script>alert(1)</script>"] * len(frame)))
    folder = tmp_path / "r[/x]"
    folder.mkdir(parents=True)
    pq.write_table(hostile, folder / "hostile.parquet")
    results = run_cli("results", "--out", folder)
    assert results.returncode == 0, results.stderr
    assert "[/x] [bold]=cmd" in results.stdout
    report = run_cli("report", "--results", folder, "--out", folder / "board.html")
    assert report.returncode == 0, report.stderr
    html = (folder / "board.html").read_text()
    markdown, csv = (folder / "board.md").read_text(), (folder / "board.csv").read_text()
    assert "<script>alert" not in html and "<script>alert" not in markdown and "&lt;script&gt;" in markdown
    assert not any(cell.startswith(("=", "+", "@")) for line in csv.splitlines() for cell in line.split(","))


def test_an_output_folder_with_markup_in_its_name_runs_every_method(tmp_path):
    out = tmp_path / "r[/x]"
    proc = run_cli("run", "--method", "vanilla,weight_decay", "--out", out, *TINY)
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("*.parquet"))) == 2


def test_a_plugin_description_with_markup_is_listed_as_text(tmp_path):
    plugin = tmp_path / "marked.py"
    plugin.write_text('from benchmark.method import Method\nfrom benchmark.registry import METHODS\n\n\n'
                      '@METHODS.register("marked")\nclass Marked(Method):\n    """Looks [/x] like [bold]markup."""\n')
    proc = subprocess.run([*BENCHMARK_CLI, "list", "methods", "marked", "--plugin", str(plugin)],
                          capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == 0 and "Looks [/x] like [bold]markup." in proc.stdout, proc.stderr


# -- result files of the wrong shape ------------------------------------------------------------
def test_an_ill_typed_or_partial_results_file_is_skipped_with_one_line(store, tmp_path):
    good = next(store["OUT"].glob("*.parquet"))
    table = pq.read_table(good)
    texty = table.set_column(table.schema.get_field_index("value"), "value",
                             pa.array([str(v) for v in table.column("value").to_pylist()]))
    pq.write_table(texty, tmp_path / "text-values.parquet")
    pq.write_table(table.select(["schema_version", "run_key", "method", "dataset", "suite", "metric", "value"]),
                   tmp_path / "required-only.parquet")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "foreign.parquet")
    (tmp_path / "good.parquet").write_bytes(good.read_bytes())
    frame, problems = read_results([tmp_path])
    assert set(frame.source_file) == {str(tmp_path / "good.parquet")}
    assert sorted(p.split(":")[0].rsplit("/", 1)[-1] for p in problems) == [
        "foreign.parquet", "required-only.parquet", "text-values.parquet"]
    assert any("column 'value' holds string, expected double" in p for p in problems)
    assert any("lacks 29 columns of schema version" in p for p in problems)
    for command in (["results", "--out", tmp_path], ["report", "--results", tmp_path, "--out", tmp_path / "b.html"]):
        proc = run_cli(*command)
        assert proc.returncode == 0 and proc.stderr.count("skipped") == 3, proc.stderr
