"""Per-group and worst-group accuracy (Sagawa et al. 2020, group DRO; WILDS and SubpopBench report
the same): the dataset names a group for every sample of a split (`BenchmarkDataset.groups`, e.g.
C-MNIST's "right digit = label" and "right digit != label"), and the suite reports the accuracy
of each group, the worst of them and their unweighted mean, each with per-sample records.

The average over groups weighs each group equally whatever its size: its records carry each
sample's correctness times n / (G * n_g), so that their mean is the row's value. The worst group
is chosen on the same samples it is measured on, so its value is biased low (the minimum of noisy
estimates); its interval is that group's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from benchmark.engine.evaluate import EvalContext, Suite, check_split
from benchmark.errors import ConfigError
from benchmark.registry import SUITES
from benchmark.results.records import Records
from benchmark.results.store import Measurement


@dataclass
class GroupParams:
    eval_set: str = "test"
    samples: int | None = None  # a fixed seeded subset of the split; None = all of it


@SUITES.register("group_accuracy")
class GroupAccuracySuite(Suite):
    """Accuracy per group of the dataset, the worst group's and the mean over groups."""

    Params = GroupParams

    def check(self, dataset) -> None:
        groups = dataset.groups(self.params.eval_set)
        if groups is None or groups.split is None:
            check_split(self.params.eval_set, dataset, "group_accuracy.eval_set")
        if groups is None:
            raise ConfigError(f"group_accuracy: dataset {dataset.name!r} defines no groups of its "
                              f"{self.params.eval_set!r} split")

    def run(self, ctx: EvalContext) -> list[Measurement]:
        p: GroupParams = self.params
        groups = ctx.dataset.groups(p.eval_set)
        if groups is None:
            raise ConfigError(f"group_accuracy: dataset {ctx.dataset.name!r} defines no groups for {p.eval_set!r}")
        started = time.perf_counter()
        samples, correct = [], []
        with torch.no_grad():
            split = groups.split if groups.split is not None else ctx.split(p.eval_set)
            for batch in ctx.batches(split, limit=p.samples):
                samples.append(batch.index.cpu())
                correct.append((ctx.model(batch.x).argmax(1) == batch.y).float().cpu())
        return group_rows(torch.cat(samples), torch.cat(correct), groups.ids, groups.names, p.eval_set,
                          {"groups": list(groups.names), "defined_by": groups.defined_by},
                          time.perf_counter() - started)


def group_rows(samples: torch.Tensor, correct: torch.Tensor, group_of: torch.Tensor, names: tuple[str, ...],
               eval_set: str, extra: dict, duration_s: float) -> list[Measurement]:
    """Rows of per-group accuracy (groups with samples only), the worst group and the average over groups."""
    ids = group_of[samples]
    present = [g for g in range(len(names)) if bool((ids == g).any())]
    rows = [Measurement.of_records("group_accuracy", "group_accuracy", Records.of(samples[ids == g], correct[ids == g]),
                                   eval_set=eval_set, extra={**extra, "group": names[g]}, duration_s=duration_s)
            for g in present]
    if not rows:
        return rows
    worst = min(rows, key=lambda r: r.value)
    rows.append(Measurement.of_records("group_accuracy", "worst_group_accuracy", worst.records,  # type: ignore[arg-type]
                                       eval_set=eval_set, extra={**extra, "group": worst.extra["group"]},
                                       duration_s=duration_s))
    sizes = torch.stack([(ids == g).sum() for g in present]).double()
    weight = torch.zeros(len(names), dtype=torch.float64)
    weight[present] = len(samples) / (len(present) * sizes)
    rows.append(Measurement.of_records("group_accuracy", "average_group_accuracy",
                                       Records.of(samples, correct.double() * weight[ids]), eval_set=eval_set,
                                       extra=extra, duration_s=duration_s))
    return rows
