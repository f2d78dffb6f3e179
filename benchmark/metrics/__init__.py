"""What a result row's `metric` means, declared once: label, unit, direction, and how it
aggregates over samples and over training seeds. Readers (`benchmark results`, the leaderboard,
its ranking and intervals) ask the declaration, never a label's text.

Every metric is a class registered in METRICS. `AgreementMetric`s also score attribution maps
against object masks; the attribution suite runs every registered one whose `default` is set.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal, Sequence, cast

from torch import Tensor

from benchmark.attribution.scoring import Ranked, rank_rows
from benchmark.registry import METRICS

Samples = Literal["proportion", "mean", "none"]


class Metric:
    """The meaning of one metric name in result rows.

    `samples`: how a row aggregates its samples: `proportion` (each sample 0 or 1: Wilson interval),
    `mean` (a mean of per-sample values: bootstrap interval), `none` (not an average over samples,
    e.g. a difference of accuracies or a duration). Over training seeds every metric is averaged
    (mean, standard deviation and a t-interval)."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    unit: ClassVar[str] = "fraction"  # fraction (shown in %), probability, ratio, seconds, count, value
    higher_is_better: ClassVar[bool | None] = True  # None: a diagnostic, never ranked
    samples: ClassVar[Samples] = "proportion"

    @classmethod
    def percent(cls) -> bool:
        return cls.unit == "fraction"


class AgreementMetric(Metric, ABC):
    """Agreement between a map and the object mask, per sample.

    `score(a, s, ranked=..., top_k=...)`: a (B, N) non-negative relevance, s (B, N) bool object mask
    with at least one object pixel per row; returns (B,). `rank_based` metrics receive the shared
    sort of each row (`ranked`). `default`: run by the attribution suite unless it names others."""

    unit = "fraction"
    samples = "mean"
    rank_based: ClassVar[bool] = False
    default: ClassVar[bool] = True

    @abstractmethod
    def score(self, a: Tensor, s: Tensor, *, ranked: Ranked | None, top_k: int) -> Tensor:
        """One score per row."""


def metric_of(name: str) -> type[Metric]:
    """The declaration of a metric name; a name no plugin declares (a foreign file's) gets a
    neutral one: its own name as label, never ranked, no interval."""
    if name in METRICS:
        return METRICS.get(name)
    return type(f"Undeclared_{name}", (Metric,), {"name": name, "label": name, "unit": "value",
                                                 "higher_is_better": None, "samples": "none"})


def agreement_metrics(names: Sequence[str] | None = None) -> list[type[AgreementMetric]]:
    """The named agreement metrics (default: every registered one marked `default`), in order."""
    if names is None:
        return [e.obj for e in METRICS.entries() if issubclass(e.obj, AgreementMetric) and e.obj.default]
    return [cast("type[AgreementMetric]", METRICS.get(n)) for n in names]  # resolution checked the kind


def agreement_scores(a: Tensor, s: Tensor, names: Sequence[str], top_k: int) -> dict[str, Tensor]:
    """Several agreement metrics at once; the rank-based ones share one sort of each row."""
    metrics = agreement_metrics(names)
    ranked = rank_rows(a, s) if any(m.rank_based for m in metrics) else None
    return {m.name: m().score(a, s, ranked=ranked, top_k=top_k) for m in metrics}
