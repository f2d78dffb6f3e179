"""Declarations of the metrics the built-in suites write (what a reader needs to show and rank them)."""

from __future__ import annotations

from benchmark.metrics import Metric
from benchmark.registry import METRICS


@METRICS.register("accuracy")
class Accuracy(Metric):
    """Clean top-1 accuracy on a split or eval set."""

    label = "clean accuracy"


@METRICS.register("clean_accuracy")
class CleanAccuracyOfAttacked(Metric):
    """Clean accuracy on the samples an attack suite attacks."""

    label = "clean accuracy (attacked samples)"


@METRICS.register("robust_accuracy")
class RobustAccuracy(Metric):
    """Robust accuracy: correct both clean and under the attack (RobustBench's rule)."""

    label = "robust accuracy"


@METRICS.register("baseline_accuracy")
class BaselineAccuracy(Metric):
    """Accuracy under a random baseline attack of the same budget (correct clean and perturbed)."""

    label = "accuracy under random noise"
    higher_is_better = None


@METRICS.register("corrupted_accuracy")
class CorruptedAccuracy(Metric):
    """Accuracy under a common corruption confined to a region (correct clean and corrupted)."""

    label = "corrupted accuracy"


@METRICS.register("zero_gradient_fraction")
class ZeroGradientFraction(Metric):
    """Share of samples whose input gradient is exactly zero in the whole attack region."""

    label = "samples with a zero region gradient"
    higher_is_better = None


@METRICS.register("object_area_fraction")
class ObjectArea(Metric):
    """Mean share of the image the object covers: the chance level of the mass metrics."""

    label = "object area (chance mass)"
    higher_is_better = None
    samples = "mean"


@METRICS.register("deletion_auc")
class DeletionAUC(Metric):
    """Deletion AUC (RISE): class probability as the most relevant pixels are removed."""

    label = "deletion AUC"
    unit = "probability"
    higher_is_better = False
    samples = "mean"


@METRICS.register("insertion_auc")
class InsertionAUC(Metric):
    """Insertion AUC (RISE): class probability as the most relevant pixels are revealed."""

    label = "insertion AUC"
    unit = "probability"
    samples = "mean"


@METRICS.register("retained_probability")
class RetainedProbability(Metric):
    """p_c(m x) / p_c(x) for a mask explainer's mask m."""

    label = "retained probability"
    unit = "ratio"
    samples = "mean"


@METRICS.register("cp_pixel")
class CPPixel(Metric):
    """CP-Pixel (Kolek et al. 2023): retained probability per share of the image's L1 mass kept."""

    label = "CP-Pixel"
    unit = "ratio"
    samples = "mean"


@METRICS.register("bg_gap")
class BackgroundGap(Metric):
    """BG-gap (Xiao et al. 2021): accuracy on IN-9 mixed_same minus mixed_rand."""

    label = "BG-gap"
    higher_is_better = False
    samples = "none"


@METRICS.register("bg_gap_9way")
class BackgroundGap9Way(Metric):
    """BG-gap of the Backgrounds Challenge's 9-way protocol (predictions mapped to the nine classes)."""

    label = "BG-gap (9-way)"
    higher_is_better = False
    samples = "none"


@METRICS.register("counter_drop")
class CounterDrop(Metric):
    """CounterAnimal's drop: accuracy on common backgrounds minus counter backgrounds."""

    label = "counter drop"
    higher_is_better = False
    samples = "none"


@METRICS.register("failed")
class Failed(Metric):
    """A suite that failed (value NaN, the reason in extra.error)."""

    label = "failed suite"
    unit = "value"
    higher_is_better = None
    samples = "none"


@METRICS.register("mprt_similarity")
class MPRTSimilarity(Metric):
    """Spearman similarity of an explainer's maps to the trained model's after the model's modules
    were re-initialised from the top down to `extra.layer` (cascading MPRT, Adebayo et al. 2018)."""

    label = "MPRT similarity"
    unit = "value"
    higher_is_better = None
    samples = "mean"


@METRICS.register("model_randomisation_similarity")
class ModelRandomisationSimilarity(Metric):
    """Spearman similarity of an explainer's maps to the trained model's after every module was
    re-initialised: near 1 means the map does not depend on what the model learnt."""

    label = "similarity after full randomisation"
    unit = "value"
    higher_is_better = False
    samples = "mean"


@METRICS.register("random_logit_similarity")
class RandomLogitSimilarity(Metric):
    """Spearman similarity of the map for the explained class and for a random other class
    (Sixt et al. 2020's random-logit test): near 1 means the map ignores the class."""

    label = "random-logit similarity"
    unit = "value"
    higher_is_better = False
    samples = "mean"


@METRICS.register("randomised_model_agreement")
class RandomisedModelAgreement(Metric):
    """An agreement metric (`extra.agreement`) of the fully randomised model's maps: what the
    explainer scores without a trained model."""

    label = "agreement of the randomised model"
    higher_is_better = None
    samples = "mean"


@METRICS.register("agreement_above_random_model")
class AgreementAboveRandomModel(Metric):
    """An agreement metric (`extra.agreement`) of the trained model's maps minus the fully
    randomised model's, per sample: the agreement the trained model adds."""

    label = "agreement above the randomised model"
    samples = "mean"


@METRICS.register("random_map_agreement")
class RandomMapAgreement(Metric):
    """An agreement metric (`extra.agreement`) of uniform random maps: the floor of a map that knows
    nothing (the tie rule puts it at chance)."""

    label = "agreement of a random map"
    higher_is_better = None
    samples = "mean"


@METRICS.register("road")
class ROAD(Metric):
    """ROAD (Rong et al. 2022): accuracy with the least relevant pixels imputed minus with the most
    relevant imputed (noisy linear imputation), averaged over the removed fractions."""

    label = "ROAD (LeRF - MoRF)"
    samples = "mean"


@METRICS.register("road_morf_accuracy")
class ROADMoRF(Metric):
    """Accuracy with the most relevant pixels imputed, averaged over the removed fractions."""

    label = "ROAD MoRF accuracy"
    higher_is_better = False
    samples = "mean"


@METRICS.register("road_lerf_accuracy")
class ROADLeRF(Metric):
    """Accuracy with the least relevant pixels imputed, averaged over the removed fractions."""

    label = "ROAD LeRF accuracy"
    samples = "mean"


@METRICS.register("focus")
class Focus(Metric):
    """Focus (Arias-Duart et al. 2022): the share of positive relevance on the explained class's
    part of a mosaic of classes (chance: 0.5 on C-MNIST's halves, 0.25 on 2x2 mosaics)."""

    label = "Focus"
    samples = "mean"


@METRICS.register("core_accuracy")
class CoreAccuracy(Metric):
    """Core accuracy (Singla & Feizi 2022): accuracy with Gaussian noise on the background only, so
    the object alone must carry the prediction."""

    label = "core accuracy (noise on the background)"


@METRICS.register("spurious_accuracy")
class SpuriousAccuracy(Metric):
    """Spurious accuracy (Singla & Feizi 2022): accuracy with Gaussian noise on the object only; high
    means the background alone carries the prediction."""

    label = "spurious accuracy (noise on the object)"
    higher_is_better = None


@METRICS.register("group_accuracy")
class GroupAccuracy(Metric):
    """Accuracy on one group of samples (`extra.group`), e.g. a (label, background) pair."""

    label = "group accuracy"


@METRICS.register("worst_group_accuracy")
class WorstGroupAccuracy(Metric):
    """The lowest group accuracy (Sagawa et al. 2020): how the model does where the spurious cue misleads."""

    label = "worst-group accuracy"


@METRICS.register("average_group_accuracy")
class AverageGroupAccuracy(Metric):
    """The unweighted mean of the group accuracies (each group counts once, whatever its size)."""

    label = "average group accuracy"
    samples = "mean"


@METRICS.register("challenge_accuracy")
class ChallengeAccuracy(Metric):
    """Backgrounds Challenge accuracy (Xiao et al. 2021): the share of IN-9 foregrounds classified
    right on every background of the `only_bg_t` pool (the worst background per foreground)."""

    label = "challenge accuracy (worst background)"
