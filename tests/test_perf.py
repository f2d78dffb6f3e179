"""The perf harness: warm-up and repeat counts, alternation, medians and ratios."""

import pytest
import torch

from benchmark.perf_cases import harness as perf
from benchmark.perf_cases.harness import PerfCase, measure, quartiles


def test_quartiles_of_known_values():
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)
    assert quartiles([7.0]) == (7.0, 7.0, 7.0)


def test_measure_counts_calls_alternates_and_takes_the_ratio_of_medians(monkeypatch):
    calls = []
    times = {"c": iter([1.0, 3.0, 2.0, 5.0]), "p": iter([2.0, 2.0, 4.0, 4.0])}

    def fake_timed(fn, sync):
        fn()
        wall = next(times[calls[-1]])
        return wall, 2 * wall  # two cores busy

    monkeypatch.setattr(perf, "_timed", fake_timed)
    case = PerfCase(candidate=lambda: calls.append("c"), peer=lambda: calls.append("p"))
    result = measure("x", case, repeats=4, warmup=2, device=torch.device("cpu"))
    assert calls[:4] == ["c", "p", "c", "p"]  # warm-up
    assert calls[4:] == ["c", "p", "p", "c", "c", "p", "p", "c"]  # alternating order
    assert result.median_s == 2.5 and result.peer_median_s == 3.0
    assert result.ratio == pytest.approx(2.5 / 3.0)
    assert result.cpu_s == 5.0 and result.peer_cpu_s == 6.0


def test_cpu_time_counts_the_workers_a_call_waited_for():
    import subprocess
    import sys

    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    wall, cpu = perf._timed(lambda: subprocess.run([sys.executable, "-c", spin], check=True), lambda: None)
    assert cpu >= 0.3 and wall >= 0.3  # the child's CPU time, which this process's own clock would miss


def test_vanilla_step_case_runs_both_sides():
    from benchmark.perf_cases.training import train_step_vanilla

    case = train_step_vanilla(torch.device("cpu"))
    case.candidate()
    case.peer()


def test_hsplid_step_case_exercises_every_loss_term(monkeypatch):
    from benchmark.perf_cases.training import train_step_hsplid
    from benchmark_methods.hsplid import HSplid

    seen = []
    original = HSplid.training_step

    def recording(self, model, batch, state):
        out = original(self, model, batch, state)
        seen.append(set(out.losses))
        return out

    monkeypatch.setattr(HSplid, "training_step", recording)
    case = train_step_hsplid(torch.device("cpu"))
    case.candidate()
    case.peer()
    assert seen == [{"ce", "class_compactness", "global_compactness", "hsic_x_salient", "hsic_y_nonsalient"}]


def test_allocator_script_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "allocator_effect.py"
    proc = subprocess.run([sys.executable, str(script), "1", "4"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "default / tuned =" in proc.stdout


def test_resume_checkpoint_case_writes_a_checkpoint_that_restores_adam(monkeypatch, tmp_path):
    import tempfile

    from benchmark.checkpoint import load_resume
    from benchmark.perf_cases.training import resume_checkpoint

    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: str(tmp_path))
    case = resume_checkpoint(torch.device("cpu"))
    case.candidate()
    saved = load_resume(tmp_path / "run.resume.pt", "perf")
    assert saved is not None and saved["optimizer"]["state"]  # Adam's moments are in it
    assert {"centres", "accumulated"} <= set(saved["method_state"])


@pytest.mark.parametrize("name", ["agreement_metrics", "pgd_masked", "prepared_cache", "report_intervals",
                                  "external_pgd", "resnet50_ceiling", "mprt_explainers", "train_stacked_seeds",
                                  "train_step_hsplid_resnet50"])  # decode_on_device's loader: test_device_decode
def test_every_case_builds_its_two_sides(name, monkeypatch, tmp_path):
    """Building a case runs its imports and set-up (timing is `benchmark perf`'s job, not a test's)."""
    import tempfile

    from benchmark.registry import PERF_CASES

    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: real_mkdtemp(dir=tmp_path))
    case = PERF_CASES.get(name)(torch.device("cpu"))
    assert isinstance(case, PerfCase) and callable(case.candidate) and (case.peer is None or callable(case.peer))
    assert set(PERF_CASES.names()) >= {name, "train_step_vanilla", "train_step_hsplid", "resume_checkpoint"}


@pytest.mark.slow
def test_resnet50_training_case_trains_both_precisions_through_the_loader(monkeypatch, tmp_path):
    """The GPU throughput case runs end to end on the CPU (two batches of 4 per precision)."""
    import tempfile

    from benchmark.registry import PERF_CASES

    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: real_mkdtemp(dir=tmp_path))
    for name in ("resnet50_training", "resnet50_training_device_decode"):
        case = PERF_CASES.get(name)(torch.device("cpu"))
        assert case.peer is not None and "8 images per call" in case.setup_note
        case.candidate()
        case.peer()


def test_gpu_cases_are_left_out_of_a_cpu_run_by_default():
    cpu, cuda = perf.default_cases(torch.device("cpu")), perf.default_cases(torch.device("cuda"))
    assert "resnet50_training" not in cpu and "resnet50_training" in cuda
    assert set(cuda) - set(cpu) == {"resnet50_training", "resnet50_ceiling", "resnet50_training_device_decode",
                                    "train_step_hsplid_resnet50"}
    assert "data_pipeline" in cpu
