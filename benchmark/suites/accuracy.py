"""Clean accuracy per split and eval set, model views as diagnostics, and derived gaps."""

from __future__ import annotations

import time
from functools import partial

import torch

from benchmark.engine.evaluate import EvalContext, Piece, Suite
from benchmark.registry import SUITES
from benchmark.results.records import Records
from benchmark.results.store import Measurement


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

    def pieces(self, ctx: EvalContext) -> list[Piece]:
        return [partial(self._score, ctx, eval_set) for eval_set in ctx.eval_sets()]

    def combine(self, ctx: EvalContext, rows: list[Measurement]) -> list[Measurement]:
        by_set = {r.eval_set: r.value for r in rows if r.suite == "accuracy" and r.eval_set is not None}
        return rows + [Measurement("derived", metric, value, 0, eval_set="derived")
                       for metric, value in ctx.dataset.derived(by_set).items()]

    @staticmethod
    def _score(ctx: EvalContext, eval_set) -> list[Measurement]:
        """Accuracy on one eval set, and the model's views (diagnostics) on it."""
        started = time.perf_counter()
        records = correctness(ctx.model, ctx, eval_set)
        row = Measurement.of_records("accuracy", "accuracy", records, eval_set=eval_set.name,
                                     duration_s=time.perf_counter() - started)
        out = [row]
        for view_name, view in ctx.model.views().items():
            started = time.perf_counter()
            records = correctness(view, ctx, eval_set)
            out.append(Measurement.of_records("diagnostics", f"accuracy_{view_name}", records,
                                              eval_set=eval_set.name, duration_s=time.perf_counter() - started))
        ctx.reporter.log(f"  accuracy on {eval_set.name}: {row.value:.4f} (n={row.n})")
        return out
