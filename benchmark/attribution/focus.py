"""Focus (Arias-Duart et al. 2022, "Focus! Rating XAI Methods and Finding Biases"): on a mosaic of
images of different classes, the share of a map's positive relevance on the part that holds the
explained class. A map that follows the class scores 1; one spread evenly scores the part's share.
"""

from __future__ import annotations

import torch


def focus(attribution: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """Focus (Arias-Duart et al. 2022): positive relevance (summed over channels) on `part`, a
    (B, H*W) bool mask of the explained class's share of the mosaic, over all positive relevance;
    nan for a map without positive relevance."""
    positive = attribution.sum(dim=1).flatten(1).clamp_min(0)
    total = positive.sum(1)
    on_part = (positive * part).sum(1)
    return torch.where(total > 0, on_part / total.clamp_min(1e-30), torch.full_like(total, float("nan")))


def class_mosaics(x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image, a 2x2 mosaic of it and three images of other classes from the batch (each
    halved by 2x2 average pooling), the image in a seeded random quadrant; and the (B, H*W) mask
    of its quadrant. An image whose class fills the batch gets other images of its class."""
    b, c, h, w = x.shape
    small = torch.nn.functional.avg_pool2d(x, 2)
    mosaics = torch.empty(b, c, 2 * (h // 2), 2 * (w // 2), dtype=x.dtype, device=x.device)
    parts = torch.zeros(b, 1, 2 * (h // 2), 2 * (w // 2), dtype=torch.bool, device=x.device)
    for i in range(b):
        others = (labels != labels[i]).nonzero().flatten().cpu()
        pool = others if len(others) else torch.tensor([j for j in range(b) if j != i] or [i])
        picks = pool[torch.randint(len(pool), (3,), generator=generator)].tolist()
        quadrant = int(torch.randint(4, (1,), generator=generator))
        tiles = picks[:quadrant] + [i] + picks[quadrant:]
        for q, j in enumerate(tiles):
            top, left = (q // 2) * (h // 2), (q % 2) * (w // 2)
            mosaics[i, :, top:top + h // 2, left:left + w // 2] = small[j]
        top, left = (quadrant // 2) * (h // 2), (quadrant % 2) * (w // 2)
        parts[i, :, top:top + h // 2, left:left + w // 2] = True
    if mosaics.shape[-2:] != x.shape[-2:]:  # odd sides: back to the model's input size
        mosaics = torch.nn.functional.interpolate(mosaics, size=(h, w), mode="bilinear", align_corners=False)
        parts = torch.nn.functional.interpolate(parts.float(), size=(h, w), mode="nearest") > 0.5
    return mosaics, parts.flatten(1)
