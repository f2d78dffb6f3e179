"""The perf harness: warm-up and repeat counts, alternation, medians and ratios."""

import pytest
import torch

from benchmark import perf
from benchmark.perf import PerfCase, measure, quartiles


def test_quartiles_of_known_values():
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)
    assert quartiles([7.0]) == (7.0, 7.0, 7.0)


def test_measure_counts_calls_alternates_and_takes_the_ratio_of_medians(monkeypatch):
    calls = []
    times = {"c": iter([1.0, 3.0, 2.0, 5.0]), "p": iter([2.0, 2.0, 4.0, 4.0])}

    def fake_timed(fn, sync):
        fn()
        return next(times[calls[-1]])

    monkeypatch.setattr(perf, "_timed", fake_timed)
    case = PerfCase(candidate=lambda: calls.append("c"), peer=lambda: calls.append("p"))
    result = measure("x", case, repeats=4, warmup=2, device=torch.device("cpu"))
    assert calls[:4] == ["c", "p", "c", "p"]  # warm-up
    assert calls[4:] == ["c", "p", "p", "c", "c", "p", "p", "c"]  # alternating order
    assert result.median_s == 2.5 and result.peer_median_s == 3.0
    assert result.ratio == pytest.approx(2.5 / 3.0)


def test_vanilla_step_case_runs_both_sides():
    from benchmark.perf_cases import train_step_vanilla

    case = train_step_vanilla(torch.device("cpu"))
    case.candidate()
    case.peer()
