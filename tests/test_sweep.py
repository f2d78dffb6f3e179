"""Sweeps: planning, model selection, locks, resume after kill -9, concurrent sweeps, Ray."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmark.config import resolve
from benchmark.errors import ConfigError
from benchmark.files import exclusive
from benchmark.results.kept import completed_run_id
from benchmark.results.store import Measurement, read_results, write_run
from benchmark.sweep.plan import SweepSpec, final_jobs, plain_config, plan, point_layer
from benchmark.sweep.select import select, write_selection
from conftest import BENCHMARK_CLI, TINY_TRAINING_RUN, cli_env, cli_in_process

# Small enough for seconds per run; H-SPLID so that method state (centres, beta) is resumed too.
KILL_RUN = ["--method", "hsplid", "--set", "train.samples=96", "--set", "train.batch_size=16",
            "--set", "eval.samples=32", "--set", "eval.suites=accuracy,robustness",
            "--set", "robustness.samples=16", "--set", "robustness.steps=2", "--quiet"]


def benchmark(*args, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*BENCHMARK_CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=cli_env(), **kw)


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Result rows without timings, in a fixed order."""
    frame = frame[~frame["metric"].str.contains("duration")]
    order = ["suite", "metric", "eval_set", "attack", "region", "eps", "attack_seed", "extra"]
    return frame.sort_values(order).reset_index(drop=True)


# -- plan and selection (no training) ----------------------------------------------------------
def test_plan_expands_named_grids_and_rejects_bad_input(tmp_path):
    spec = SweepSpec(("vanilla", "hsplid"), ("cmnist",), (1, 2), grid="paper")
    vanilla, hsplid = plan(spec, tmp_path)
    assert len(vanilla.points) == 1 and vanilla.points == [()]  # no grid named paper: its defaults
    assert len(hsplid.points) == 4 ** 4 and len(hsplid.candidates) == 2 * 4 ** 4
    keys = {job.key for job in hsplid.candidates.values()}
    assert len(keys) == len(hsplid.candidates)  # every candidate is a distinct config
    job = hsplid.candidates[(5, 2)]
    assert job.key == resolve("hsplid", "cmnist", seed=2, overrides=job.overrides).key()
    assert job.overrides["robustness"]["grid"] == {"pgd": {"full": [0.1]}}  # C-MNIST's selection eps
    assert job.overrides["eval"]["splits"] == ["val"]  # candidates never look at test
    assert plan(spec, tmp_path)[1].candidates[(5, 2)].key == job.key  # deterministic
    with pytest.raises(ConfigError, match="no method of this sweep has a grid named 'nope'; expected one of"):
        plan(SweepSpec(("vanilla", "hsplid"), ("cmnist",), (0,), grid="nope"), tmp_path)
    with pytest.raises(ConfigError, match="unknown key train.lrr"):
        plan(SweepSpec(("vanilla",), ("cmnist",), (0,), overrides=("train.lrr=1",)), tmp_path)


def test_an_ablation_grid_without_selection_plans_what_benchmark_run_of_each_point_runs(tmp_path):
    vanilla, hsplid = plan(SweepSpec(("vanilla", "hsplid"), ("cmnist",), (0, 1), grid="ablation", select=False),
                           tmp_path)
    assert vanilla.points == [()] and len(hsplid.points) == 5  # the listed points, not a product
    varied = plan(SweepSpec(("hsplid",), ("cmnist",), (0,), grid="ablation", select=False,
                            vary=(("method.threshold_offset", ("0.1", "0.2")),)), tmp_path)[0]
    assert len(varied.points) == 5 * 2  # times the --vary axis
    assert dict(varied.points[0]) == {"method.lambda_n": 0.0, "method.lambda_s": 0.0, "method.rho_x": 0.0,
                                      "method.rho_y": 0.0, "method.threshold_offset": "0.1"}
    for job in [*vanilla.candidates.values(), *hsplid.candidates.values()]:
        assert job.stage == "run" and "robustness" not in job.overrides  # no selection layer: test suites
        plain = resolve(job.method, "cmnist", seed=job.seed, overrides=point_layer(job.point))
        assert job.key == plain.key()  # exactly `benchmark run --set <point>`


def test_final_evaluation_is_what_benchmark_run_of_the_point_evaluates(tmp_path):
    spec = SweepSpec(("weight_decay",), ("cmnist",), (3,), grid="paper", overrides=("train.epochs=1",))
    (group,) = plan(spec, tmp_path)
    (final,) = final_jobs(group, 2, spec, tmp_path)
    direct = resolve("weight_decay", "cmnist", seed=3,
                     overrides=["train.epochs=1", f"method.weight_decay={group.points[2][0][1]}"])
    assert final.key == direct.key() == plain_config(group, 2, spec, 3).key()
    assert final.checkpoint == group.candidates[(2, 3)].checkpoint
    assert final.suites == direct.eval.suites


def fake_candidate(job, robust: float, clean: float, out: Path) -> None:
    """A candidate's results file as a finished run writes it (only the rows selection reads)."""
    config = resolve(job.method, job.dataset, profile=job.profile, seed=job.seed, overrides=job.overrides)
    rows = [Measurement("accuracy", "accuracy", clean, 64, eval_set="val")]
    rows += [Measurement("robustness", "robust_accuracy", robust + d, 16, eval_set="val", attack="pgd",
                         region="full", norm="linf", eps=0.1, attack_seed=s) for s, d in ((0, -0.01), (1, 0.01))]
    run = {"run_id": "r", "run_key": config.key(), "config_key": config.key(with_seed=False), "method": job.method,
           "dataset": job.dataset, "profile": job.profile, "seed": job.seed, "created": pd.Timestamp.now(tz="UTC")}
    write_run(rows, run, Path(job.results_path))


def test_selection_takes_the_best_mean_over_seeds_and_records_it(tmp_path):
    spec = SweepSpec(("weight_decay",), ("cmnist",), (0, 1), grid="paper")
    (group,) = plan(spec, tmp_path)
    # (robust on seed 0, robust on seed 1, clean): point 3 wins on the mean though point 1 has the best
    # single seed; points 4 and 5 tie on robust accuracy and clean accuracy breaks it.
    scores = {0: (0.2, 0.2, 0.9), 1: (0.9, 0.1, 0.9), 2: (0.3, 0.3, 0.9), 3: (0.6, 0.6, 0.5), 4: (0.1, 0.1, 0.9),
              5: (0.1, 0.1, 0.95)}
    for index, (r0, r1, clean) in scores.items():
        fake_candidate(group.candidates[(index, 0)], r0, clean, tmp_path)
        fake_candidate(group.candidates[(index, 1)], r1, clean, tmp_path)
    finished = {job.key for job in group.candidates.values()}
    selection = select(group, finished)
    assert selection.chosen == 3 and selection.best.robust == pytest.approx(0.6)
    ranked = sorted(selection.scores, key=lambda s: (-s.robust, -s.clean))
    assert [s.index for s in ranked][-2:] == [5, 4]

    # A point with a seed that did not finish is left out, with the reason.
    partial = select(group, finished - {group.candidates[(3, 1)].key})
    assert partial.chosen == 1 and any("seed(s) [1] did not finish" in p for p in partial.problems)

    path = write_selection(selection, tmp_path, "final-key")
    frame, problems = read_results([path])
    assert not problems and set(frame["suite"]) == {"selection"} and len(frame) == 6
    chosen = frame[frame["extra"].str.contains('"selected": true')]
    assert len(chosen) == 1 and json.loads(chosen["extra"].iloc[0])["final_config_key"] == "final-key"
    assert json.loads(chosen["extra"].iloc[0])["point"] == dict(group.points[3])
    assert write_selection(selection, tmp_path, "final-key") == path  # same decision: not rewritten
    assert point_layer(group.points[3]) == {"method": {"weight_decay": group.points[3][0][1]}}


def test_progress_table_shows_every_state_and_the_reason_of_a_failure(tmp_path):
    from rich.console import Console

    from benchmark.sweep.table import SweepProgress
    from benchmark.sweep.worker import Update

    spec = SweepSpec(("weight_decay",), ("cmnist",), (0,), grid="paper")
    jobs = list(plan(spec, tmp_path)[0].candidates.values())
    log = Console(record=True, width=300, force_terminal=False)
    progress = SweepProgress(log)
    for job in jobs[:5]:
        progress.add(job)
    progress.add(jobs[5], "skipped", "results exist")
    progress.update(Update(jobs[0].key, "running", "train weight_decay epoch 1/2"))
    progress.update(Update(jobs[1].key, "running", "started"))
    progress.update(Update(jobs[1].key, "failed", "training diverged: loss is nan", 3.0))
    progress.update(Update(jobs[2].key, "running", "started"))
    progress.update(Update(jobs[2].key, "done", "", 12.0))
    assert progress.counts() == {"queued": 2, "running": 1, "done": 1, "skipped": 1, "failed": 1}
    screen = Console(record=True, width=300)
    screen.print(progress.render())
    text = screen.export_text()
    assert "queued 2  ·  running 1  ·  done 1  ·  skipped 1  ·  failed 1" in text
    assert "training diverged: loss is nan" in text and "train weight_decay epoch 1/2" in text
    assert "weight_decay=0.1" in text  # the grid point
    lines = log.export_text().splitlines()  # without a terminal: one line per start and end
    assert any(line.startswith(" failed candidate weight_decay") and line.endswith("loss is nan") for line in lines)
    assert sum("running" in line for line in lines) == 3


def test_a_failing_job_becomes_a_one_line_reason_and_an_unexpected_one_leaves_its_traceback(tmp_path, monkeypatch):
    from benchmark.engine import run as run_module
    from benchmark.sweep.worker import WorkerSettings, execute

    spec = SweepSpec(("vanilla",), ("cmnist",), (0,))
    (group,) = plan(spec, tmp_path)
    final = final_jobs(group, 0, spec, tmp_path)[0]
    messages = []
    settings = WorkerSettings(out_dir=str(tmp_path))
    missing = execute(final, settings, messages.append)  # its candidate never wrote the checkpoint
    assert missing.status == "failed" and missing.detail == f"checkpoint {final.checkpoint!r} not found"
    assert messages == ["started"]

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(run_module, "run", broken)
    crashed = execute(group.candidates[(0, 0)], settings, messages.append)
    log = tmp_path / "logs" / f"{group.candidates[(0, 0)].key}.txt"
    assert crashed.status == "failed" and crashed.detail == f"RuntimeError: disk on fire (traceback in {log})"
    assert "Traceback" in log.read_text() and "disk on fire" in log.read_text()


def test_lock_waits_for_its_holder_and_is_freed_by_kill_9(tmp_path):
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, sys
        from benchmark.files import exclusive
        with exclusive({str(lock)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        waited = []
        killer = subprocess.Popen([sys.executable, "-c", f"import time, os; time.sleep(1); os.kill({holder.pid}, 9)"])
        started = time.monotonic()
        with exclusive(lock, on_wait=lambda: waited.append(True)):
            assert waited and time.monotonic() - started > 0.5  # it waited until the holder died
        killer.wait()
    finally:
        holder.kill()
        holder.wait()


# -- fault tolerance (subprocesses) --------------------------------------------------------------
@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_to_the_same_numbers(tmp_path):
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)  # printed on failure: the kill point can be replayed
    kill_after = rng.randint(2, 8)  # of 12 steps (2 epochs of 6), so the kill lands mid-training
    # The uninterrupted reference runs beside the one that gets killed.
    whole = subprocess.Popen([*BENCHMARK_CLI, "run", *KILL_RUN, "--out", str(tmp_path / "whole")], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env())
    out = tmp_path / "killed"
    loud = [a for a in KILL_RUN if a != "--quiet"]
    cmd = [*BENCHMARK_CLI, "run", *loud, "--out", str(out), "--checkpoint-every", "2"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=cli_env())
    for line in proc.stderr:
        step = re.search(r"resume checkpoint at step (\d+)", line)
        if step and int(step.group(1)) >= kill_after:
            time.sleep(rng.uniform(0, 0.3))  # somewhere inside the next step
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill (seed {seed})"
    assert not list(out.glob("*.parquet")) and list(out.glob("checkpoints/*.resume.pt"))
    assert whole.wait() == 0, whole.stderr.read()

    again = benchmark("run", *loud, "--out", out, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = re.search(r"resuming from .* \(epoch \d, step (\d+)\)", again.stderr.replace("\n", ""))
    assert resumed and int(resumed.group(1)) >= kill_after, f"seed {seed}: {again.stderr}"
    a, _ = read_results([tmp_path / "whole"])
    b, _ = read_results([out])
    a, b = comparable(a), comparable(b)
    assert len(a) == len(b) > 40 and a["run_key"].iloc[0] == b["run_key"].iloc[0]
    pd.testing.assert_series_equal(a["metric"], b["metric"])
    pd.testing.assert_series_equal(a["value"], b["value"], check_exact=True, obj=f"values (kill seed {seed})")
    assert not list(out.glob("checkpoints/*.resume.pt")) and not list(out.rglob("*.tmp"))



def sweep_counts(stdout: str) -> tuple[int, int, int]:
    found = re.search(r"sweep: (\d+) run, (\d+) already done, (\d+) failed", stdout)
    assert found, stdout
    return tuple(int(x) for x in found.groups())


SWEEP = ["sweep", "--methods", "vanilla", "--seeds", "1,2", *TINY_TRAINING_RUN, "--set", "train.epochs=1"]


@pytest.mark.slow
def test_two_sweeps_into_one_folder_do_each_run_once_and_skip_bad_files(tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    (out / "junk.parquet").write_bytes(b"PAR1 this is not parquet")
    pd.DataFrame({"a": [1, 2]}).to_parquet(out / "foreign.parquet")
    # One sweep runs its jobs in-process, the other in a pool of two worker processes.
    procs = [subprocess.Popen([*BENCHMARK_CLI, *SWEEP, "--workers", workers, "--out", str(out)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
             for workers in ("1", "2")]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr
        assert "junk.parquet: not a readable Parquet file" in stderr
        assert "foreign.parquet: not a results file" in stderr
    counts = [sweep_counts(stdout) for stdout, _ in outputs]
    assert sum(c[0] for c in counts) == 4 and sum(c[1] for c in counts) == 4, counts  # 2 candidates + 2 finals
    frame, problems = read_results([out])
    assert len(problems) == 2 and not list(out.rglob("*.tmp"))
    assert frame.groupby("run_key")["run_id"].nunique().max() == 1  # no run was written twice

    # A candidate's own results file gone bad is run again (from its checkpoint); the rest is kept.
    candidate = next(f for f in out.glob("vanilla__*.parquet") if "candidate" in pd.read_parquet(f)["extra"][0])
    before = pd.read_parquet(candidate)
    candidate.write_bytes(b"garbage")
    again = benchmark(*SWEEP, "--workers", "1", "--out", out, cwd=tmp_path)
    assert again.returncode == 0 and sweep_counts(again.stdout) == (1, 3, 0), again.stdout + again.stderr
    after = pd.read_parquet(candidate)
    assert completed_run_id(candidate, before["run_key"][0])
    # Not trained again: even the training durations are the ones saved with the checkpoint.
    training = before["suite"] == "training"
    assert training.sum() > 3 and after["value"].equals(before["value"])


CRASH_ONCE = '''
"""A method whose worker process dies (SIGKILL) in training step 3, the first time only."""
import os
import signal
from pathlib import Path

from benchmark.method import Method
from benchmark.registry import METHODS

MARKER = Path(__file__).with_suffix(".crashed")


@METHODS.register("crash_once")
class CrashOnce(Method):
    def on_step_end(self, model, batch, output, state):
        if state.step == 3 and not MARKER.exists():
            MARKER.write_text("crashed")
            os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.slow
def test_sweep_on_a_local_ray_instance_retries_a_dead_worker_and_reruns_nothing(tmp_path):
    pytest.importorskip("ray")
    plugin = tmp_path / "crash_once.py"
    plugin.write_text(CRASH_ONCE)
    out = tmp_path / "ray"
    # --all-points: one job per method (selection and final evaluation on Ray are the same dispatch)
    args = ["sweep", "--methods", "vanilla,crash_once", "--seeds", "1", "--all-points", *TINY_TRAINING_RUN,
            "--set", "train.batch_size=16", "--executor", "ray", "--workers", "2", "--checkpoint-every", "2",
            "--plugin", plugin, "--out", out]
    first = benchmark(*args, cwd=tmp_path, timeout=400)
    assert first.returncode == 0, first.stdout + first.stderr
    assert sweep_counts(first.stdout) == (2, 0, 0)
    assert plugin.with_suffix(".crashed").exists()  # the worker did die once ...
    # ... and Ray ran it again, from the resume checkpoint of the step before the crash.
    assert re.search(r"done run crash_once .* resumed at step 2", first.stderr), first.stderr
    frame, problems = read_results([out])
    assert not problems and set(frame["method"]) == {"vanilla", "crash_once"}
    # crash_once trains exactly as vanilla does, so the resumed run must match it number for number.
    runs = comparable(frame)
    vanilla, crashed = (runs[runs["method"] == m].reset_index(drop=True) for m in ("vanilla", "crash_once"))
    assert len(vanilla) == len(crashed) > 5
    pd.testing.assert_series_equal(vanilla["value"], crashed["value"], check_exact=True)
    again = benchmark(*args, cwd=tmp_path, timeout=400)
    assert again.returncode == 0 and sweep_counts(again.stdout) == (0, 2, 0), again.stdout + again.stderr


@pytest.mark.parametrize("args, expected", [
    (["--methods", "vanila"], "unknown method 'vanila'"),
    (["--seeds", "1,x"], "--seeds expects integers"),
    (["--grid", "nope"], "no method of this sweep has a grid named 'nope'"),
    (["--select-eps", "big"], "--select-eps expects a number"),
    (["--workers", "0"], "--workers expects an integer >= 1"),
    (["--gpus-per-run", "1"], "--address and --gpus-per-run are Ray options"),
    (["--set", "train.epochs=-1"], "train.epochs must be an integer >= 0"),
    (["--vary", "method.lambda_s"], "bad --vary 'method.lambda_s'"),
    (["--methods", "hsplid", "--vary", "method.lambda_z=0,1"], "unknown key method.lambda_z"),
    (["--methods", "hsplid", "--vary", "method.lambda_s=0,x"], "method.lambda_s"),
    (["--methods", "hsplid", "--set", "train.init_from=run:vanila"], "unknown method 'vanila'"),
])
def test_sweep_bad_input_is_one_line_exit_2(tmp_path, capsys, args, expected):
    code, _, err = cli_in_process(capsys, "sweep", *args, "--out", tmp_path / "o")
    assert code == 2
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_worst_group_selection_plans_group_accuracy_on_val_and_takes_the_best_worst_group(tmp_path):
    spec = SweepSpec(("weight_decay",), ("cmnist",), (0, 1), grid="paper", rule="worst_group")
    (group,) = plan(spec, tmp_path)
    config = resolve("weight_decay", "cmnist", seed=0, overrides=group.candidates[(0, 0)].overrides)
    assert config.eval.suites == ("accuracy", "group_accuracy") and config.eval.splits == ("val",)
    assert config.suite("group_accuracy").eval_set == "val"
    worst = {0: 0.2, 1: 0.5, 2: 0.4}
    for index in range(len(group.points)):
        for seed in (0, 1):
            job = group.candidates[(index, seed)]
            job_config = resolve(job.method, job.dataset, seed=seed, overrides=job.overrides)
            rows = [Measurement("accuracy", "accuracy", 0.9, 100, eval_set="val"),
                    Measurement("group_accuracy", "worst_group_accuracy", worst.get(index, 0.1), 30, eval_set="val")]
            run = {"run_id": "r", "run_key": job_config.key(), "config_key": job_config.key(with_seed=False),
                   "method": job.method, "dataset": job.dataset, "profile": job.profile, "seed": seed,
                   "created": pd.Timestamp.now(tz="UTC")}
            write_run(rows, run, Path(job.results_path))
    selection = select(group, {job.key for job in group.candidates.values()})
    assert selection.chosen == 1 and selection.best.robust == pytest.approx(0.5)
    frame, _ = read_results([write_selection(selection, tmp_path, "final")])
    assert set(frame["metric"]) == {"worst_group_accuracy"}
