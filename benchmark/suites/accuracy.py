"""Clean accuracy per split and eval set, model views as diagnostics, and derived gaps."""

from __future__ import annotations

import time

import torch

from ..evaluate import EvalContext, Suite
from ..registry import SUITES
from ..store import Measurement


@torch.no_grad()
def accuracy(model, ctx: EvalContext, eval_set) -> tuple[float, int]:
    correct = total = 0
    for batch in ctx.batches(eval_set.split, limit=ctx.config.eval.samples):
        correct += int((eval_set.predict(model(batch.x)) == batch.y).sum())
        total += len(batch)
    return correct / max(total, 1), total


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
            value, n = accuracy(ctx.model, ctx, eval_set)
            by_set[eval_set.name] = value
            out.append(Measurement("accuracy", "accuracy", value, n, eval_set=eval_set.name,
                                   duration_s=time.perf_counter() - started))
            for view_name, view in views.items():
                value, n = accuracy(view, ctx, eval_set)
                out.append(Measurement("diagnostics", f"accuracy_{view_name}", value, n, eval_set=eval_set.name))
            ctx.reporter.log(f"  accuracy on {eval_set.name}: {by_set[eval_set.name]:.4f} (n={n})")
        for metric, value in ctx.dataset.derived(by_set).items():
            out.append(Measurement("derived", metric, value, 0, eval_set="derived"))
        return out
