"""Attribution agreement: how much of each saliency map falls on the object mask.

For every explainer: its maps on a fixed seeded subset of the eval set, reduced to one
non-negative value per pixel (sum over channels of |a|), scored by every agreement metric per
sample and averaged; samples whose object mask is empty are excluded and counted. Deletion and
insertion AUCs (no mask needed) and, for mask explainers, retained probability and CP-Pixel are
recorded beside them. A few example heatmaps are written as PNG next to the results. With
`mask_comparison`, PixelMask's three initialisations are compared after the listed iterations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from ..attribution.metrics import AGREEMENT, agreement_scores, cp_pixel, deletion_insertion, pixel_map
from ..attribution.pixel_mask import INITS, optimise_masks
from ..config import check_buildable
from ..errors import ConfigError
from ..evaluate import EvalContext, Suite, check_split
from ..registry import EXPLAINERS, SUITES
from ..store import Measurement

ALL_EXPLAINERS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "guided_backprop",
                  "grad_cam", "deeplift", "occlusion", "pixel_mask")


def quick_explainer_options(image_side: int) -> dict[str, dict[str, Any]]:
    """Lighter explainer settings for the quick profiles (CPU minutes): 8 IG steps and SmoothGrad
    samples, an occlusion window of a quarter of the image side, 10 PixelMask steps of 2 draws."""
    return {"integrated_gradients": {"n_steps": 8}, "smoothgrad": {"samples": 8},
            "occlusion": {"window": image_side // 4, "stride": image_side // 8},
            "pixel_mask": {"iterations": 10, "noise_draws": 2}}


@dataclass
class AttributionParams:
    explainers: tuple[str, ...] = ALL_EXPLAINERS
    metrics: tuple[str, ...] = tuple(AGREEMENT)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per explainer, e.g. {"occlusion": {"window": 14}}
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

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in AGREEMENT]
        if unknown:
            raise ConfigError(f"attribution.metrics: unknown metric {unknown[0]!r}; expected some of "
                              f"{', '.join(AGREEMENT)}")
        check_buildable("attribution.explainers / options", [*self.explainers, *self.options],
                        lambda name: EXPLAINERS.get(name)(**self.options.get(name, {})))
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


@SUITES.register("attribution")
class AttributionSuite(Suite):
    """Agreement of saliency maps with object masks, faithfulness, and the mask-initialisation comparison."""

    Params = AttributionParams

    def check(self, dataset) -> None:
        check_split(self.params.eval_set, dataset, "attribution.eval_set")

    def run(self, ctx: EvalContext) -> list[Measurement]:
        p: AttributionParams = self.params
        model = ctx.model.eval()
        batches = list(ctx.batches(ctx.split(p.eval_set), limit=p.samples))
        targets = [self._targets(model, b) for b in batches]
        masks = torch.cat([b.mask.flatten(1) > 0.5 for b in batches])
        kept = masks.any(dim=1)
        n_pixels = masks.shape[1]
        top_k = max(1, round(p.top_k_fraction * n_pixels))
        common = {"target": p.target, "reduction": "sum_abs", "excluded_empty_masks": int((~kept).sum())}
        out = [Measurement("attribution", "object_area_fraction", float(masks[kept].float().mean()), int(kept.sum()),
                           eval_set=p.eval_set, extra=common)]
        for name in p.explainers:
            out.extend(self._explain(ctx, name, batches, targets, masks, kept, top_k, common))
        if p.mask_comparison:
            out.extend(self._compare_inits(ctx, batches, targets))
        return out

    def _targets(self, model, batch) -> torch.Tensor:
        if self.params.target == "label":
            return batch.y
        with torch.no_grad():
            return model(batch.x).argmax(1)

    def _explain(self, ctx, name, batches, targets, masks, kept, top_k, common) -> list[Measurement]:
        p: AttributionParams = self.params
        options = p.options.get(name, {})
        explainer = EXPLAINERS.get(name)(**options)
        generator = torch.Generator().manual_seed(p.seed)
        maps, raw, deletion, insertion, retained, cp = [], [], [], [], [], []
        started = time.perf_counter()
        with ctx.reporter.task(f"  attribution {name}", len(batches)) as update:
            for batch, target in zip(batches, targets):
                attribution = explainer(ctx.model, batch.x, target, generator)
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
                if name == "pixel_mask":
                    r, c = cp_pixel(ctx.model, batch.x, attribution, target)
                    retained.append(r)
                    cp.append(c)
                update()
        elapsed = time.perf_counter() - started
        a, s = torch.cat(maps)[kept], masks[kept]
        extra = {**common, **options}
        rows = []
        for metric, scores in agreement_scores(a, s, p.metrics, top_k).items():
            finite = torch.isfinite(scores)
            rows.append(Measurement("attribution", metric, float(scores[finite].double().mean()), int(finite.sum()),
                                    eval_set=p.eval_set, explainer=name,
                                    extra={**extra, "top_k": top_k} if metric == "top_k_intersection" else extra,
                                    duration_s=elapsed))
        for metric, values in (("deletion_auc", deletion), ("insertion_auc", insertion),
                               ("retained_probability", retained), ("cp_pixel", cp)):
            if values:
                values = torch.cat(values)
                rows.append(Measurement("attribution", metric, float(values.double().mean()), len(values),
                                        eval_set=p.eval_set, explainer=name, extra=extra, duration_s=elapsed))
        if raw and ctx.artifacts_dir is not None:
            save_heatmaps(ctx.artifacts_dir / "attribution" / f"{name}.png", batches, raw, p.heatmaps)
        return rows

    def _compare_inits(self, ctx, batches, targets) -> list[Measurement]:
        """Retained probability and CP-Pixel of PixelMask after each listed iteration count, per init."""
        p: AttributionParams = self.params
        x = torch.cat([b.x for b in batches])[: p.comparison_samples]
        target = torch.cat(targets)[: p.comparison_samples]
        o = {"noise_draws": 16, "lambda_l1": 1.0, "lambda_tv": 2.0, "lr": 0.1} | {
            k: v for k, v in p.options.get("pixel_mask", {}).items() if k in ("noise_draws", "lambda_l1", "lambda_tv", "lr")}
        rows = []
        for init in INITS:
            started = time.perf_counter()
            generator = torch.Generator().manual_seed(p.seed)
            _, recorded = optimise_masks(ctx.model, x, target, generator, init=init,
                                         iterations=max(p.mask_comparison), record_at=p.mask_comparison, **o)
            for iterations, mask in sorted(recorded.items()):
                retained, cp = cp_pixel(ctx.model, x, mask, target)
                extra = {"init": init, "iterations": iterations, "comparison": True, **o}
                for metric, values in (("retained_probability", retained), ("cp_pixel", cp)):
                    rows.append(Measurement("attribution", metric, float(values.double().mean()), len(x),
                                            eval_set=p.eval_set, explainer="pixel_mask", extra=extra,
                                            duration_s=time.perf_counter() - started))
        return rows


def save_heatmaps(path: Path, batches, raw: list[torch.Tensor], count: int) -> None:
    """A PNG of `count` examples: the images on top, their maps (scaled to each map's maximum) below."""
    images = torch.cat([b.x for b in batches])[:count].mean(dim=1, keepdim=True).cpu()
    maps = torch.cat(raw)[:count].abs().sum(dim=1, keepdim=True).cpu().float()
    maps = maps / maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    grid = tile(torch.cat([images, maps])[:, 0], columns=len(images))
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (grid.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(pixels).save(path, format="PNG")  # a 2-D uint8 array is a greyscale image


def tile(images: torch.Tensor, columns: int, padding: int = 2, fill: float = 1.0) -> torch.Tensor:
    """(N, H, W) grey images laid out row by row, `columns` per row, with `padding` lines of `fill`."""
    n, h, w = images.shape
    rows = -(-n // columns)
    grid = torch.full((padding + rows * (h + padding), padding + columns * (w + padding)), fill)
    for k, image in enumerate(images):
        top, left = padding + (k // columns) * (h + padding), padding + (k % columns) * (w + padding)
        grid[top:top + h, left:left + w] = image
    return grid

