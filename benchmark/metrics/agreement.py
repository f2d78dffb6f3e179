"""The built-in agreement metrics (docs/METRICS.md): each a registered declaration calling its
pure function in benchmark/attribution/scoring.py."""

from __future__ import annotations

from benchmark.attribution import scoring
from benchmark.metrics import AgreementMetric
from benchmark.registry import METRICS


@METRICS.register("pointing_game")
class PointingGame(AgreementMetric):
    """Pointing game (Zhang et al. 2018): 1 if a maximal pixel lies on the object (ties: in expectation)."""

    label = "pointing game"

    def score(self, a, s, *, ranked, top_k):
        return scoring.pointing_game(a, s)


@METRICS.register("relevance_mass_accuracy")
class RelevanceMass(AgreementMetric):
    """Relevance mass accuracy (Arras et al. 2022): the share of the relevance on the object."""

    label = "relevance mass on the object"

    def score(self, a, s, *, ranked, top_k):
        return scoring.relevance_mass_accuracy(a, s)


@METRICS.register("relevance_rank_accuracy")
class RelevanceRank(AgreementMetric):
    """Relevance rank accuracy (Arras et al. 2022): the share of the object among the |S| top pixels."""

    label = "relevance rank accuracy"
    rank_based = True

    def score(self, a, s, *, ranked, top_k):
        return scoring.relevance_rank_accuracy(a, s, ranked)


@METRICS.register("top_k_intersection")
class TopKIntersection(AgreementMetric):
    """Top-k intersection (Theiner et al. 2021): the precision of the k most relevant pixels."""

    label = "top-k intersection"
    rank_based = True

    def score(self, a, s, *, ranked, top_k):
        return scoring.top_k_intersection(a, s, top_k, ranked)


@METRICS.register("pixel_auroc")
class PixelAUROC(AgreementMetric):
    """Pixel AUROC: the relevance as a detector of object pixels (ties count one half)."""

    label = "pixel AUROC"
    rank_based = True

    def score(self, a, s, *, ranked, top_k):
        return scoring.pixel_auroc(a, s, ranked)


@METRICS.register("iou_at_mask_size")
class IoUAtMaskSize(AgreementMetric):
    """IoU of the |S| most relevant pixels with the object S (no threshold to choose)."""

    label = "IoU at mask size"
    rank_based = True

    def score(self, a, s, *, ranked, top_k):
        return scoring.iou_at_mask_size(a, s, ranked)


@METRICS.register("energy_pointing_game")
class EnergyPointingGame(AgreementMetric):
    """Energy pointing game (Score-CAM 2020): the object's share of the min-max normalised map."""

    label = "energy pointing game"

    def score(self, a, s, *, ranked, top_k):
        return scoring.energy_pointing_game(a, s)
