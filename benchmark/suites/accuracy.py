"""Clean accuracy per split and eval set, model views as diagnostics, and derived gaps."""

from __future__ import annotations

import time

import torch

from ..evaluate import EvalContext, Suite
from ..records import Records
from ..registry import SUITES
from ..store import Measurement


@torch.no_grad()
def correctness(model, ctx: EvalContext, eval_set) -> Records:
    """1.0 / 0.0 per scored sample of the set (its index in the set's split)."""
    parts = []
    for batch in ctx.batches(eval_set.split, limit=ctx.config.eval.samples):
        parts.append(Records.of(batch.index, (eval_set.predict(model(batch.x)) == batch.y).float()))
    return Records.concat(parts)


@SUITES.register("accuracy")
class AccuracySuite(Suite):
    """Clean top-1 accuracy on each split and variant; dataset-derived gaps (BG-gap, counter drop)."""

    emits = ("accuracy", "diagnostics", "derived")

    def run(self, ctx: EvalContext) -> list[Measurement]:
        out: list[Measurement] = []
        by_set: dict[str, float] = {}
        views = ctx.model.views()
        for eval_set in ctx.eval_sets():
            started = time.perf_counter()
            records = correctness(ctx.model, ctx, eval_set)
            row = Measurement.of_records("accuracy", "accuracy", records, eval_set=eval_set.name,
                                         duration_s=time.perf_counter() - started)
            by_set[eval_set.name] = row.value
            out.append(row)
            for view_name, view in views.items():
                records = correctness(view, ctx, eval_set)
                out.append(Measurement.of_records("diagnostics", f"accuracy_{view_name}", records,
                                                  eval_set=eval_set.name))
            ctx.reporter.log(f"  accuracy on {eval_set.name}: {row.value:.4f} (n={row.n})")
        for metric, value in ctx.dataset.derived(by_set).items():
            out.append(Measurement("derived", metric, value, 0, eval_set="derived"))
        return out
