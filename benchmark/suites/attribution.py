"""Attribution agreement: how much of each saliency map falls on the object mask.

For every explainer: its maps on a fixed seeded subset of the eval set, reduced to one
non-negative value per pixel (sum over channels of |a|), scored by every agreement metric per
sample and averaged; samples whose object mask is empty are excluded and counted. Deletion and
insertion AUCs (no mask needed) and, for mask explainers, retained probability and CP-Pixel are
recorded beside them. A few example heatmaps are written as PNG next to the results. With
`mask_comparison`, PixelMask's three initialisations are compared after the listed iterations.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import torch
from PIL import Image

from benchmark.attribution import options_of
from benchmark.attribution.focus import class_mosaics, focus
from benchmark.attribution.pixel_mask import INITS, PixelMaskParams, optimise_masks
from benchmark.attribution.road import road_curves
from benchmark.attribution.scoring import cp_pixel, deletion_insertion, pixel_map
from benchmark.config.values import plain
from benchmark.engine.evaluate import EvalContext, Piece, Suite, check_split
from benchmark.errors import ConfigError
from benchmark.metrics import AgreementMetric, agreement_metrics, agreement_scores
from benchmark.registry import EXPLAINERS, METRICS, SUITES
from benchmark.results.records import Records
from benchmark.results.store import Measurement

# The built-in explainers in the order the suite runs them (plugins marked `default` follow).
BUILTIN_EXPLAINERS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "guided_backprop",
                      "grad_cam", "deeplift", "occlusion", "pixel_mask")


def default_explainers() -> tuple[str, ...]:
    """Every registered explainer marked `default`: the built-ins in their order, then plugins."""
    marked = [e.name for e in EXPLAINERS.entries() if e.obj.default]
    return tuple([n for n in BUILTIN_EXPLAINERS if n in marked] + [n for n in marked if n not in BUILTIN_EXPLAINERS])


def default_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in agreement_metrics())


def quick_explainer_options(image_side: int) -> dict[str, dict[str, Any]]:
    """Lighter explainer settings for the quick profiles (CPU minutes): 8 IG steps and SmoothGrad
    samples, an occlusion window of a quarter of the image side, 10 PixelMask steps of 2 draws."""
    return {"integrated_gradients": {"n_steps": 8}, "smoothgrad": {"samples": 8},
            "occlusion": {"window": image_side // 4, "stride": image_side // 8},
            "pixel_mask": {"iterations": 10, "noise_draws": 2}}


@dataclass
class AttributionParams:
    explainers: tuple[str, ...] = field(default_factory=default_explainers)
    metrics: tuple[str, ...] = field(default_factory=default_metrics)
    # per explainer, e.g. {"occlusion": {"window": 14}}
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: int | None = 256  # a fixed seeded subset of the eval set; None = all of it
    eval_set: str = "test"
    target: Literal["label", "predicted"] = "label"  # the class explained
    top_k_fraction: float = 0.1  # k of top-k intersection, as a share of the image's pixels
    faithfulness: bool = True  # deletion / insertion AUCs
    faithfulness_steps: int = 16
    faithfulness_samples: int | None = None  # the first n scored samples get deletion / insertion; None = all
    heatmaps: int = 4  # example maps saved per explainer (0 = none)
    seed: int = 0  # seeds the explainers' randomness (SmoothGrad noise, mask initialisation and noise)
    mask_comparison: tuple[int, ...] = ()  # PixelMask init comparison after these iteration counts, e.g. 0,10,300
    comparison_samples: int = 32
    road: bool = False  # ROAD (MoRF and LeRF with noisy linear imputation) on the first road_samples samples
    road_fractions: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    road_samples: int = 16
    road_noise: float = 0.01
    focus: bool = False  # Focus on class mosaics (the dataset's halves, or 2x2 mosaics)

    def __post_init__(self) -> None:
        agreement = [m.name for m in agreement_metrics()]
        for name in self.metrics:
            if name not in METRICS or not issubclass(METRICS.get(name), AgreementMetric):
                raise ConfigError(f"attribution.metrics: unknown metric {name!r}; expected some of "
                                  f"{', '.join(agreement)}")
        for name in [*self.explainers, *(n for n in self.options if n not in self.explainers)]:
            options_of(EXPLAINERS.get(name), self.options.get(name, {}), f"attribution.options.{name}")
        if not 0 < self.top_k_fraction <= 1:
            raise ConfigError(f"attribution.top_k_fraction must be in (0, 1], got {self.top_k_fraction}")
        if self.samples is not None and self.samples < 1:
            raise ConfigError("attribution.samples must be >= 1 or none")
        if self.faithfulness_samples is not None and self.faithfulness_samples < 1:
            raise ConfigError("attribution.faithfulness_samples must be >= 1 or none")
        if self.faithfulness_steps < 1 or self.heatmaps < 0 or self.comparison_samples < 1:
            raise ConfigError("attribution.faithfulness_steps and comparison_samples must be >= 1, heatmaps >= 0")
        if any(i < 0 for i in self.mask_comparison):
            raise ConfigError("attribution.mask_comparison lists iteration counts >= 0")
        if not self.road_fractions or any(not 0 < f < 1 for f in self.road_fractions) or self.road_samples < 1 \
                or self.road_noise < 0:
            raise ConfigError("attribution.road_fractions must lie in (0, 1), road_samples >= 1, road_noise >= 0")


@dataclass(frozen=True)
class Explained:
    """The samples every explainer explains: batches with their explained classes, object masks
    (B, N), sample ids, which samples have an object (scored), top-k and the rows' common extra."""

    batches: list[Any]
    targets: list[torch.Tensor]
    masks: torch.Tensor
    samples: torch.Tensor
    kept: torch.Tensor
    top_k: int
    common: dict[str, Any]


@SUITES.register("attribution")
class AttributionSuite(Suite):
    """Agreement of saliency maps with object masks, faithfulness, and the mask-initialisation comparison."""

    Params = AttributionParams

    def check(self, dataset) -> None:
        check_split(self.params.eval_set, dataset, "attribution.eval_set")

    def pieces(self, ctx: EvalContext) -> list[Piece]:
        """The object-area row, one piece per explainer (each seeds its own generator), then the
        PixelMask initialisation comparison."""
        p: AttributionParams = self.params
        model = ctx.model.eval()
        batches = list(ctx.batches(ctx.split(p.eval_set), limit=p.samples))
        targets = [self._targets(model, b) for b in batches]
        masks = torch.cat([b.mask.flatten(1) > 0.5 for b in batches])
        samples = torch.cat([b.index for b in batches])
        kept = masks.any(dim=1)
        n_pixels = masks.shape[1]
        top_k = max(1, round(p.top_k_fraction * n_pixels))
        common = {"target": p.target, "reduction": "sum_abs", "excluded_empty_masks": int((~kept).sum())}
        area = Records.of(samples[kept], masks[kept].float().mean(1))
        area_row = Measurement.of_records("attribution", "object_area_fraction", area, eval_set=p.eval_set,
                                          extra=common)
        out: list[Piece] = [lambda: [area_row]]
        explained = Explained(batches, targets, masks, samples, kept, top_k, common)
        out += [partial(self._explain, ctx, name, explained) for name in p.explainers]
        if p.mask_comparison:
            out.append(partial(self._compare_inits, ctx, batches, targets))
        return out

    def _targets(self, model, batch) -> torch.Tensor:
        if self.params.target == "label":
            return batch.y
        with torch.no_grad():
            return model(batch.x).argmax(1)

    def _explain(self, ctx, name, explained: Explained) -> list[Measurement]:
        p: AttributionParams = self.params
        batches, targets, masks, samples, kept, top_k, common = (
            explained.batches, explained.targets, explained.masks, explained.samples, explained.kept, explained.top_k,
            explained.common)
        explainer = EXPLAINERS.get(name)(ctx.model, **p.options.get(name, {}))
        generator = torch.Generator().manual_seed(p.seed)
        maps: list[torch.Tensor] = []
        raw: list[torch.Tensor] = []
        deletion: list[torch.Tensor] = []
        insertion: list[torch.Tensor] = []
        retained: list[torch.Tensor] = []
        cp: list[torch.Tensor] = []
        started = time.perf_counter()
        with ctx.reporter.task(f"  attribution {name}", len(batches)) as update:
            for batch, target in zip(batches, targets):
                attribution = explainer(batch.x, target, generator)
                a = pixel_map(attribution)
                maps.append(a)
                if len(raw) < p.heatmaps:
                    raw.append(attribution)
                done = sum(len(d) for d in deletion)
                room = len(batch) if p.faithfulness_samples is None else max(0, p.faithfulness_samples - done)
                if p.faithfulness and room:
                    d, i = deletion_insertion(ctx.model, batch.x[:room], a[:room], target[:room],
                                              p.faithfulness_steps, generator)
                    deletion.append(d)
                    insertion.append(i)
                if explainer.mask:
                    r, c = cp_pixel(ctx.model, batch.x, attribution, target)
                    retained.append(r)
                    cp.append(c)
                update()
        elapsed = time.perf_counter() - started
        a, s, ids = torch.cat(maps)[kept], masks[kept], samples[kept]
        # Every setting of the explainer (its defaults included) and how many maps carried no ranking.
        extra = {**common, **plain(explainer.params), "constant_maps": int(constant_maps(a))}
        rows = []
        for metric, scores in agreement_scores(a, s, p.metrics, top_k).items():
            finite = torch.isfinite(scores)
            rows.append(Measurement.of_records(
                "attribution", metric, Records.of(ids[finite], scores[finite]), eval_set=p.eval_set, explainer=name,
                extra={**extra, "top_k": top_k} if metric == "top_k_intersection" else extra, duration_s=elapsed))
        for metric, parts in (("deletion_auc", deletion), ("insertion_auc", insertion),
                              ("retained_probability", retained), ("cp_pixel", cp)):
            if parts:
                values = torch.cat(parts)
                rows.append(Measurement.of_records("attribution", metric, Records.of(samples[:len(values)], values),
                                                   eval_set=p.eval_set, explainer=name, extra=extra,
                                                   duration_s=elapsed))
        rows += self._road(ctx, name, batches, targets, torch.cat(maps), samples, extra) if p.road else []
        rows += self._focus(ctx, name, explainer, batches, targets, samples, extra) if p.focus else []
        if raw:
            ctx.save_artifact(f"attribution/{name}.png", heatmaps_png(batches, raw, p.heatmaps))
        return rows

    def _road(self, ctx, name, batches, targets, maps, samples, extra) -> list[Measurement]:
        """ROAD on the first `road_samples` samples: per sample the mean over the fractions of the
        accuracy with the most (MoRF) and the least (LeRF) relevant pixels imputed, and LeRF - MoRF."""
        p: AttributionParams = self.params
        n = min(p.road_samples, len(maps))
        x, target = torch.cat([b.x for b in batches])[:n], torch.cat(targets)[:n]
        morf, lerf = road_curves(ctx.model, x, maps[:n], target, p.road_fractions, p.road_noise, p.seed)
        settings = {**extra, "fractions": list(p.road_fractions), "noise": p.road_noise,
                    "morf_curve": morf.mean(0).tolist(), "lerf_curve": lerf.mean(0).tolist()}
        ids = samples[:n]
        return [Measurement.of_records("attribution", metric, Records.of(ids, values), eval_set=p.eval_set,
                                       explainer=name, extra=settings)
                for metric, values in (("road", (lerf - morf).mean(1)), ("road_morf_accuracy", morf.mean(1)),
                                       ("road_lerf_accuracy", lerf.mean(1)))]

    def _focus(self, ctx, name, explainer, batches, targets, samples, extra) -> list[Measurement]:
        """Focus: the share of positive relevance on the explained class's part of a class mosaic."""
        p: AttributionParams = self.params
        x, target = torch.cat([b.x for b in batches]), torch.cat(targets)
        if ctx.dataset.focus == "halves":
            images, part = x, torch.cat([b.mask.flatten(1) > 0.5 for b in batches])
        else:
            images, part = class_mosaics(x, target, torch.Generator().manual_seed(p.seed))
        values = focus(explainer(images, target, torch.Generator().manual_seed(p.seed)), part)
        finite = torch.isfinite(values)
        return [Measurement.of_records("attribution", "focus", Records.of(samples[finite.cpu()], values[finite]),
                                       eval_set=p.eval_set, explainer=name,
                                       extra={**extra, "mosaic": ctx.dataset.focus,
                                              "chance": 0.5 if ctx.dataset.focus == "halves" else 0.25})]

    def _compare_inits(self, ctx, batches, targets) -> list[Measurement]:
        """Retained probability and CP-Pixel of PixelMask after each listed iteration count, per init."""
        p: AttributionParams = self.params
        x = torch.cat([b.x for b in batches])[: p.comparison_samples]
        ids = torch.cat([b.index for b in batches])[: p.comparison_samples]
        target = torch.cat(targets)[: p.comparison_samples]
        shared = ("noise_draws", "lambda_l1", "lambda_tv", "lr")
        o = {"noise_draws": 16, "lambda_l1": 1.0, "lambda_tv": 2.0, "lr": 0.1} | {
            k: v for k, v in p.options.get("pixel_mask", {}).items() if k in shared}
        rows = []
        for init in INITS:
            started = time.perf_counter()
            generator = torch.Generator().manual_seed(p.seed)
            params = PixelMaskParams(init=init, iterations=max(p.mask_comparison), **o)
            _, recorded = optimise_masks(ctx.model, x, target, generator, params, record_at=p.mask_comparison)
            for iterations, mask in sorted(recorded.items()):
                retained, cp = cp_pixel(ctx.model, x, mask, target)
                extra = {"init": init, "iterations": iterations, "comparison": True, **o}
                for metric, values in (("retained_probability", retained), ("cp_pixel", cp)):
                    rows.append(Measurement.of_records("attribution", metric, Records.of(ids, values),
                                                       eval_set=p.eval_set, explainer="pixel_mask", extra=extra,
                                                       duration_s=time.perf_counter() - started))
        return rows


def constant_maps(a: torch.Tensor) -> torch.Tensor:
    """How many maps (rows) are constant, all-zero ones included: they rank no pixel above another."""
    return (a.amax(dim=1) == a.amin(dim=1)).sum()


def heatmaps_png(batches, raw: list[torch.Tensor], count: int) -> bytes:
    """A PNG of `count` examples: the images on top, their maps (scaled to each map's maximum) below."""
    images = torch.cat([b.x for b in batches])[:count].mean(dim=1, keepdim=True).cpu()
    maps = torch.cat(raw)[:count].abs().sum(dim=1, keepdim=True).cpu().float()
    maps = maps / maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    grid = tile(torch.cat([images, maps])[:, 0], columns=len(images))
    pixels = (grid.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # a 2-D uint8 array is a greyscale image
    return buffer.getvalue()


def tile(images: torch.Tensor, columns: int, padding: int = 2, fill: float = 1.0) -> torch.Tensor:
    """(N, H, W) grey images laid out row by row, `columns` per row, with `padding` lines of `fill`."""
    n, h, w = images.shape
    rows = -(-n // columns)
    grid = torch.full((padding + rows * (h + padding), padding + columns * (w + padding)), fill)
    for k, image in enumerate(images):
        top, left = padding + (k // columns) * (h + padding), padding + (k % columns) * (w + padding)
        grid[top:top + h, left:left + w] = image
    return grid

