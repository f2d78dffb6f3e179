"""Are the saliency maps about the model? Randomisation sanity checks (Adebayo et al. 2018).

For every explainer, on a fixed seeded subset of the eval set:
- model-parameter randomisation (MPRT), cascading from the top: a copy of the model has its
  modules re-initialised one at a time from the logits down (every module with
  `reset_parameters`, in reverse definition order, each from `torch.manual_seed(seed + 1)` inside
  a forked RNG, as Quantus 0.6 does; BatchNorm layers are reset too: running statistics to 0 and
  1, affine weights to 1 and 0). After each step the maps are recomputed and compared with the
  trained model's by Spearman's rank correlation of the absolute maps, per sample;
- random logit: the map for the explained class against the map for a uniformly drawn other class;
- controls: every agreement metric of the fully randomised model's maps, and its paired
  difference to the trained model's (`agreement_above_random_model`), plus the agreement of
  uniform random maps (`random_map_agreement`, explainer `random`).

An explainer whose maps stay similar to the trained model's after full randomisation (mean
similarity above `threshold`) carries the flag `model_insensitive` on those rows: its agreement
with the object says little about the model. The evaluated model is never modified.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Iterator

import numpy as np
import torch
from scipy.stats import rankdata

from benchmark.attribution.scoring import pixel_map
from benchmark.engine.evaluate import EvalContext, Piece, Suite, check_split
from benchmark.errors import ConfigError
from benchmark.metrics import agreement_scores
from benchmark.registry import EXPLAINERS, SUITES
from benchmark.results.records import Records
from benchmark.results.store import Measurement

INSENSITIVE = "model_insensitive"


@dataclass
class SanityParams:
    """Which explainers (default: the attribution suite's, with its options), on how many samples."""

    explainers: tuple[str, ...] | None = None  # None: the attribution section's explainers
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # on top of the attribution section's
    samples: int = 32
    eval_set: str = "test"
    seed: int = 0
    threshold: float = 0.5  # mean Spearman similarity after full randomisation above which: model_insensitive
    metrics: tuple[str, ...] | None = None  # agreement metrics of the controls (None: the attribution suite's)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError("sanity.samples must be >= 1")
        if not -1 <= self.threshold <= 1:
            raise ConfigError(f"sanity.threshold is a Spearman correlation in [-1, 1], got {self.threshold}")
        for name in self.explainers or ():
            EXPLAINERS.get(name)


def resettable(model: torch.nn.Module) -> list[str]:
    """The modules the cascade re-initialises, from the top down (those with `reset_parameters`)."""
    return [name for name, m in model.named_modules() if hasattr(m, "reset_parameters")][::-1]


def randomised_cascade(model: torch.nn.Module, seed: int) -> Iterator[tuple[str, torch.nn.Module]]:
    """A copy of `model` with one more module re-initialised at each step, from the top down
    (Quantus 0.6's `top_down` order and seeding); the generators outside stay untouched."""
    randomised = copy.deepcopy(model)
    modules = [(name, m) for name, m in randomised.named_modules() if hasattr(m, "reset_parameters")]
    devices = sorted({p.device.index for p in randomised.parameters() if p.device.type == "cuda"} - {None})
    for name, module in reversed(modules):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed + 1)
            module.reset_parameters()  # type: ignore[operator]
        yield name, randomised


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman's rho of each row of a with the same row of b (average ranks for ties; nan for a
    constant row)."""
    ra = rankdata(a.detach().cpu().double().numpy(), axis=1)
    rb = rankdata(b.detach().cpu().double().numpy(), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(1) / np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))


def other_classes(labels: torch.Tensor, classes: int, generator: torch.Generator) -> torch.Tensor:
    """For each label, a class drawn uniformly from the others."""
    shift = torch.randint(1, classes, labels.shape, generator=generator)
    return (labels.cpu() + shift) % classes


@dataclass(frozen=True)
class Explained:
    """The samples every explainer of the suite explains: images, labels, the other class each
    random-logit map explains, object masks (B, N), sample ids, the control metrics and top-k."""

    x: torch.Tensor
    labels: torch.Tensor
    others: torch.Tensor
    masks: torch.Tensor
    samples: torch.Tensor
    metrics: tuple[str, ...]
    top_k: int


@SUITES.register("sanity")
class SanitySuite(Suite):
    """Randomisation sanity checks of the explainers (MPRT, random logit) and model-blind controls."""

    Params = SanityParams

    def check(self, dataset) -> None:
        check_split(self.params.eval_set, dataset, "sanity.eval_set")
        if dataset.info.num_classes < 2:
            raise ConfigError("sanity: the random-logit test needs at least two classes")

    def settings(self, ctx: EvalContext) -> tuple[tuple[str, ...], dict[str, dict[str, Any]], tuple[str, ...], float]:
        """Explainers, their options, the control metrics and top-k's share of the pixels: this
        section's, else the attribution section's, so both suites explain and score alike."""
        p: SanityParams = self.params
        attribution = ctx.config.suite("attribution")
        explainers = p.explainers or (attribution.explainers if attribution is not None else ("saliency",))
        base = attribution.options if attribution is not None else {}
        options = {n: {**base.get(n, {}), **p.options.get(n, {})} for n in explainers}
        metrics = p.metrics or (attribution.metrics if attribution is not None else ("relevance_mass_accuracy",))
        top_k_fraction = attribution.top_k_fraction if attribution is not None else 0.1
        return tuple(explainers), options, tuple(metrics), top_k_fraction

    def pieces(self, ctx: EvalContext) -> list[Piece]:
        p: SanityParams = self.params
        explainers, options, metrics, top_k_fraction = self.settings(ctx)
        batches = list(ctx.batches(ctx.split(p.eval_set), limit=p.samples))
        x = torch.cat([b.x for b in batches])
        labels = torch.cat([b.y for b in batches])
        masks = torch.cat([b.mask.flatten(1) > 0.5 for b in batches])
        samples = torch.cat([b.index for b in batches]).cpu()
        others = other_classes(labels, ctx.dataset.info.num_classes, torch.Generator().manual_seed(p.seed)).to(x.device)
        top_k = max(1, round(top_k_fraction * masks.shape[1]))
        shared = Explained(x, labels, others, masks, samples, metrics, top_k)
        out: list[Piece] = [partial(self._random_maps, masks, samples, metrics, top_k)]
        out += [partial(self._explainer, ctx, name, options.get(name, {}), shared) for name in explainers]
        return out

    def _maps(self, model, name, options, x, target) -> torch.Tensor:
        explainer = EXPLAINERS.get(name)(model.eval(), **options)
        return pixel_map(explainer(x, target, torch.Generator().manual_seed(self.params.seed)))

    def _explainer(self, ctx, name, options, explained: Explained) -> list[Measurement]:
        p: SanityParams = self.params
        x, labels, others, samples = explained.x, explained.labels, explained.others, explained.samples
        started = time.perf_counter()
        trained = self._maps(ctx.model, name, options, x, labels)
        rows: list[Measurement] = []
        layers = resettable(ctx.model)
        if not layers:
            ctx.reporter.log(f"  sanity {name}: the model has no module with reset_parameters (e.g. TorchScript); "
                             "random logit only")
        randomised = trained
        with ctx.reporter.task(f"  sanity {name}", len(layers) + 1) as update:
            for depth, (layer, model) in enumerate(randomised_cascade(ctx.model, p.seed), 1):
                randomised = self._maps(model, name, options, x, labels)
                rows.append(self._row("mprt_similarity", spearman_rows(trained, randomised), samples, name,
                                      layer=layer, depth=depth, layers=len(layers)))
                update()
            rows.append(self._row("random_logit_similarity",
                                  spearman_rows(trained, self._maps(ctx.model, name, options, x, others)),
                                  samples, name))
            update()
        if layers:
            full = self._row("model_randomisation_similarity", spearman_rows(trained, randomised), samples, name,
                             layers=len(layers))
            if full.value > p.threshold:
                full.flags = (INSENSITIVE,)
            rows.append(full)
            rows += self._controls(trained, randomised, explained, name, full.flags)
        for row in rows:
            row.duration_s = time.perf_counter() - started
        return rows

    def _controls(self, trained, randomised, explained: Explained, name, flags) -> list[Measurement]:
        """Agreement of the fully randomised model's maps, and the trained model's above it."""
        masks, samples, metrics, top_k = explained.masks, explained.samples, explained.metrics, explained.top_k
        kept = masks.any(dim=1)
        mine = agreement_scores(trained[kept], masks[kept], metrics, top_k)
        blind = agreement_scores(randomised[kept], masks[kept], metrics, top_k)
        rows = []
        for metric in metrics:
            rows.append(self._row("randomised_model_agreement", blind[metric], samples[kept.cpu()], name,
                                  agreement=metric))
            rows.append(self._row("agreement_above_random_model", mine[metric] - blind[metric], samples[kept.cpu()],
                                  name, agreement=metric))
            rows[-1].flags = tuple(flags)
        return rows

    def _random_maps(self, masks, samples, metrics, top_k) -> list[Measurement]:
        """Uniform random maps scored like an explainer's: the agreement of a map that knows nothing."""
        generator = torch.Generator().manual_seed(self.params.seed)
        kept = masks.any(dim=1)
        maps = torch.rand(masks.shape, generator=generator).to(masks.device)
        scores = agreement_scores(maps[kept], masks[kept], metrics, top_k)
        return [self._row("random_map_agreement", scores[m], samples[kept.cpu()], "random", agreement=m)
                for m in metrics]

    def _row(self, metric: str, values, samples: torch.Tensor, explainer: str, **extra: Any) -> Measurement:
        v = torch.as_tensor(np.asarray(values, dtype=np.float64))
        finite = torch.isfinite(v)
        return Measurement.of_records("sanity", metric, Records.of(samples[finite], v[finite]),
                                      eval_set=self.params.eval_set, explainer=explainer,
                                      extra={**extra, "seed": self.params.seed, "constant": int((~finite).sum())})
