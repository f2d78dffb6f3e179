"""Attack and attribution-metric cases."""

from __future__ import annotations

import torch

from benchmark.errors import BenchmarkError
from benchmark.models import Classifier, create_encoder
from benchmark.perf_cases import CMNIST_INFO, cmnist_batch
from benchmark.perf_cases.harness import PerfCase
from benchmark.registry import PERF_CASES


@PERF_CASES.register("pgd_masked")
def pgd_masked(device: torch.device) -> PerfCase:
    """Masked L-inf PGD on the right half against torchattacks' plain PGD: same model, batch 256, 10 steps."""
    import torchattacks

    from benchmark.attacks.pgd import MaskedPGD

    batch = cmnist_batch(device)
    model = Classifier(create_encoder("lenet3", CMNIST_INFO), CMNIST_INFO.mean, CMNIST_INFO.std).to(device).eval()
    ours = MaskedPGD(model, eps=1.0, steps=10, step_size=0.0156)
    theirs = torchattacks.PGD(model, eps=1.0, alpha=0.0156, steps=10, random_start=True)
    region = 1.0 - batch.mask  # the right half
    generator = torch.Generator().manual_seed(0)
    return PerfCase(lambda: ours(batch.x, batch.y, region, generator), lambda: theirs(batch.x, batch.y),
                    "masked PGD", "torchattacks PGD", "ratio <= 1.1", "LeNet-3, batch 256, 10 steps, eps 1.0")


@PERF_CASES.register("external_pgd")
def external_pgd(device: torch.device) -> PerfCase:
    """Masked PGD on a model wrapped as a model trained elsewhere (`benchmark evaluate`) against the
    same weights as a project model: what the wrapper costs."""
    from benchmark.attacks.pgd import MaskedPGD
    from benchmark.models.third_party import wrap

    batch = cmnist_batch(device)
    model = Classifier(create_encoder("lenet3", CMNIST_INFO), CMNIST_INFO.mean, CMNIST_INFO.std).eval()
    encoder = wrap(model, CMNIST_INFO, (0.0,), (1.0,))
    external = Classifier(encoder, encoder.mean, encoder.std).to(device).eval()
    model.to(device)
    region = 1.0 - batch.mask
    attacks = [MaskedPGD(m, eps=1.0, steps=10, step_size=0.0156) for m in (external, model)]
    generators = [torch.Generator().manual_seed(0) for _ in attacks]
    return PerfCase(lambda: attacks[0](batch.x, batch.y, region, generators[0]),
                    lambda: attacks[1](batch.x, batch.y, region, generators[1]),
                    "external model", "project model", "ratio <= 1.02", "LeNet-3, batch 256, masked PGD, 10 steps")


@PERF_CASES.register("agreement_metrics")
def agreement_metrics(device: torch.device) -> PerfCase:
    """The five agreement metrics Quantus also has, batched in torch, against Quantus 0.6 on the same maps."""
    import warnings

    import numpy as np

    from benchmark.metrics import agreement_scores

    try:
        import quantus
    except ImportError as err:
        raise BenchmarkError("perf case agreement_metrics needs Quantus: pip install quantus==0.6.0") from err
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(256, 1, 64, 64, generator=g)
    masks = torch.rand(256, 1, 64, 64, generator=g) < 0.3
    a, s = maps.flatten(1).to(device), masks.flatten(1).to(device)
    names = {"pointing_game": "PointingGame", "relevance_mass_accuracy": "RelevanceMassAccuracy",
             "relevance_rank_accuracy": "RelevanceRankAccuracy", "top_k_intersection": "TopKIntersection",
             "pixel_auroc": "AUC"}
    kwargs = dict(normalise=False, abs=False, disable_warnings=True)
    metrics = [getattr(quantus, cls)(**kwargs, **({"k": 409} if name == "top_k_intersection" else {}))
               for name, cls in names.items()]
    a_np, s_np = maps.numpy().astype(np.float64), masks.numpy().astype(np.float64)
    x_np, y_np = np.zeros_like(a_np), np.zeros(256, dtype=int)

    def ours() -> None:
        agreement_scores(a, s, list(names), 409)

    def theirs() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for metric in metrics:
                metric(model=None, x_batch=x_np, y_batch=y_np, a_batch=a_np, s_batch=s_np, channel_first=True,
                       batch_size=256)

    return PerfCase(ours, theirs, "batched torch metrics", "Quantus 0.6", "ratio <= 0.02 (50x faster)",
                    "256 maps of 64x64, 5 metrics: pointing game, mass and rank accuracy, top-409, AUROC")




@PERF_CASES.register("mprt_explainers")
def mprt_explainers(device: torch.device) -> PerfCase:
    """The sanity suite's maps (cascading MPRT over LeNet-3's 4 layers and the random logit) of the
    nine default explainers on 32 C-MNIST images, against one map of each (the attribution suite's)."""
    from benchmark.attribution.scoring import pixel_map
    from benchmark.registry import EXPLAINERS
    from benchmark.suites.attribution import BUILTIN_EXPLAINERS, quick_explainer_options
    from benchmark.suites.sanity import other_classes, randomised_cascade, spearman_rows

    batch = cmnist_batch(device, size=32)
    model = Classifier(create_encoder("lenet3", CMNIST_INFO), CMNIST_INFO.mean, CMNIST_INFO.std).to(device).eval()
    options = quick_explainer_options(64)
    others = other_classes(batch.y, 10, torch.Generator().manual_seed(0)).to(device)

    def maps(m, name, target):
        return pixel_map(EXPLAINERS.get(name)(m, **options.get(name, {}))(batch.x, target,
                                                                          torch.Generator().manual_seed(0)))

    def sanity() -> None:
        for name in BUILTIN_EXPLAINERS:
            trained = maps(model, name, batch.y)
            for _, randomised in randomised_cascade(model, 0):
                spearman_rows(trained, maps(randomised, name, batch.y))
            spearman_rows(trained, maps(model, name, others))

    def once() -> None:
        for name in BUILTIN_EXPLAINERS:
            maps(model, name, batch.y)

    return PerfCase(sanity, once, "sanity checks", "one map per explainer", "ratio <= 6.5 (4 layers + logit + 1)",
                    "LeNet-3, 32 images, nine explainers with the quick options")
