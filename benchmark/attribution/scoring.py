"""Agreement between attribution maps and object masks, and faithfulness without masks: the maths.

Every agreement score is a pure, batched torch function of
    a: (B, N) non-negative pixel relevance (one value per pixel, channels already reduced),
    s: (B, N) bool object mask (True = object), with at least one object pixel per row,
and returns one score per sample (B,). Ties in `a` are never broken by pixel order: top-k
based metrics count tied pixels in expectation over random tie-breaking, the pointing game
counts any tied maximum on the object as a hit, the pixel AUROC uses average ranks. Definitions
and sources: docs/METRICS.md; the registered metrics that call them: benchmark/metrics/.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pixel_map(attribution: Tensor) -> Tensor:
    """(B, C, H, W) attributions -> (B, H*W) relevance: sum over channels of |a|.

    The sign is dropped on purpose: a pixel that pushes the class down is still a pixel the model
    looks at, which is what agreement with the object measures."""
    return attribution.abs().sum(dim=1).flatten(1)


def descending_ranks(a: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """0 for the most relevant pixel of each row; ties broken at random with `generator`, else by
    pixel index."""
    if generator is None:
        order = torch.sort(a, dim=1, descending=True, stable=True).indices
    else:
        shuffle = torch.randperm(a.shape[1], generator=generator).to(a.device)
        order = shuffle[torch.sort(a[:, shuffle], dim=1, descending=True, stable=True).indices]
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(a.shape[1], device=a.device).expand_as(order))
    return ranks


@dataclass
class Ranked:
    """Rows of a map in ascending order, computed once and shared by the rank-based metrics.

    `keys` are order-preserving integers of the values (equal values, equal keys); `sorted_keys`
    and `sorted_object` are the keys in ascending order and whether each is an object pixel."""

    keys: Tensor
    sorted_keys: Tensor
    sorted_object: Tensor


def ordered_keys(a: Tensor) -> Tensor:
    """int64 keys with the order of the float values of `a` (exact; -0.0 counts as 0.0)."""
    if a.dtype == torch.float64:
        bits, low = a.view(torch.int64), torch.iinfo(torch.int64).min
    else:
        bits, low = a.float().view(torch.int32), torch.iinfo(torch.int32).min
    if bool((bits < 0).any()):  # negative values (or -0.0): flip them into order
        bits = (a + 0.0).view(bits.dtype)
        bits = torch.where(bits >= 0, bits.to(torch.int64), torch.bitwise_not(bits.to(torch.int64)) + low)
    return bits.to(torch.int64)


def sort_rows(keys: Tensor) -> Tensor:
    """Each row ascending. On the CPU numpy's vectorised sort is about 3x faster than torch.sort
    (docs/PERFORMANCE.md); elsewhere torch.sort."""
    if keys.device.type == "cpu":
        return torch.from_numpy(np.sort(keys.numpy(), axis=1))
    return torch.sort(keys, dim=1).values


def rank_rows(a: Tensor, s: Tensor) -> Ranked:
    """Sort each row once, background before object pixels among equal values. For 32-bit (or
    narrower) maps the object flag rides in the lowest bit of a 64-bit key, so only values are
    sorted, never indices."""
    keys = ordered_keys(a)
    if a.element_size() <= 4:
        packed = sort_rows((keys << 1) | s.to(torch.int64))
        return Ranked(keys, packed >> 1, (packed & 1).bool())
    # 64-bit keys leave no spare bit: sort by the flag, then stably by key (background first in ties).
    by_flag = torch.sort(s.to(torch.uint8), dim=1, stable=True).indices
    sorted_keys, order = torch.sort(keys.gather(1, by_flag), dim=1, stable=True)
    return Ranked(keys, sorted_keys, s.gather(1, by_flag.gather(1, order)))


def expected_hits(a: Tensor, s: Tensor, k: Tensor, ranked: Ranked | None = None) -> Tensor:
    """Expected number of object pixels among the k_b most relevant of each row, over random
    tie-breaking: pixels above the k-th largest value count fully, those tied with it share the
    remaining places. (Maps with flat areas, such as zero gradients on a black background, would
    otherwise be scored by pixel order.)"""
    r = ranked or rank_rows(a, s)
    n = a.shape[1]
    kth = r.sorted_keys.gather(1, (n - k.clamp(1, n)).view(-1, 1))
    above, tied = r.keys > kth, r.keys == kth
    places = k.view(-1, 1) - above.sum(1, keepdim=True)
    share = places.to(a.dtype) / tied.sum(1, keepdim=True).to(a.dtype)
    return (above & s).sum(1).to(a.dtype) + (tied & s).sum(1).to(a.dtype) * share.squeeze(1)


def pointing_game(a: Tensor, s: Tensor) -> Tensor:
    """Whether the most relevant pixel lies on the object: 1 or 0, and with tied maxima the chance
    that a maximum picked at random does (the share of maximal pixels on the object), so a
    constant map scores the object's area, its chance level."""
    peak = a == a.amax(dim=1, keepdim=True)
    return (peak & s).sum(dim=1).to(a.dtype) / peak.sum(dim=1).to(a.dtype)


def relevance_mass_accuracy(a: Tensor, s: Tensor) -> Tensor:
    """Share of the total relevance that falls on the object: sum_S a / sum a. An all-zero map
    carries no preference and scores the object's area (as any constant map does)."""
    total = a.sum(dim=1)
    area = s.to(a.dtype).mean(dim=1)
    return torch.where(total > 0, (a * s).sum(dim=1) / total.clamp_min(torch.finfo(a.dtype).tiny), area)


def relevance_rank_accuracy(a: Tensor, s: Tensor, ranked: Ranked | None = None) -> Tensor:
    """|top_|S|(a) ∩ S| / |S|: how much of the object the |S| most relevant pixels cover."""
    size = s.sum(dim=1)
    return expected_hits(a, s, size, ranked) / size


def top_k_intersection(a: Tensor, s: Tensor, k: int, ranked: Ranked | None = None) -> Tensor:
    """|top_k(a) ∩ S| / k: precision of the k most relevant pixels."""
    return expected_hits(a, s, torch.full((a.shape[0],), k, device=a.device), ranked) / k


def iou_at_mask_size(a: Tensor, s: Tensor, ranked: Ranked | None = None) -> Tensor:
    """IoU of the |S| most relevant pixels with S: hits / (2|S| - hits), no threshold to choose."""
    size = s.sum(dim=1)
    hits = expected_hits(a, s, size, ranked)
    return hits / (2 * size - hits)


def tie_bounds(sorted_values: Tensor) -> tuple[Tensor, Tensor]:
    """For rows sorted ascending: the first and last position of each element's run of equal values."""
    n = sorted_values.shape[1]
    pos = torch.arange(n, device=sorted_values.device).expand(sorted_values.shape)
    change = sorted_values[:, 1:] != sorted_values[:, :-1]
    edge = torch.ones_like(change[:, :1])
    first = torch.where(torch.cat([edge, change], 1), pos, 0).cummax(dim=1).values
    last = torch.where(torch.cat([change, edge], 1), pos, n).flip(1).cummin(dim=1).values.flip(1)
    return first, last


def average_ranks(a: Tensor) -> Tensor:
    """1-based ranks in ascending order, tied values sharing their average rank (per row)."""
    values, order = torch.sort(a, dim=1)
    first, last = tie_bounds(values)
    ranks = torch.empty(a.shape, dtype=torch.float64, device=a.device)
    ranks.scatter_(1, order, (first + last).to(torch.float64) / 2 + 1)
    return ranks


def pixel_auroc(a: Tensor, s: Tensor, ranked: Ranked | None = None) -> Tensor:
    """ROC-AUC of a as a detector of object pixels: the probability that an object pixel outranks a
    background pixel, ties counting one half (Mann-Whitney U). NaN where the mask covers the whole
    image (no negatives)."""
    r = ranked or rank_rows(a, s)
    positive = r.sorted_object
    background = ~positive
    background_upto = background.cumsum(dim=1)  # background pixels at or below each position
    # Twice each object pixel's credit, in integers. Within a run of equal values the background
    # pixels come first (rank_rows guarantees it), so background_upto at an object pixel is the
    # background strictly below its run plus all of the run's background: credit = below + run / 2.
    change = r.sorted_keys[:, 1:] != r.sorted_keys[:, :-1]
    if not bool(change.all()):
        starts = torch.cat([torch.ones_like(change[:, :1]), change], dim=1)
        below = torch.where(starts, background_upto - background.to(background_upto.dtype), 0).cummax(dim=1).values
        twice_credit = below + background_upto
    else:  # no ties: an object pixel outranks exactly the background pixels below it
        twice_credit = 2 * background_upto
    pos = positive.sum(dim=1).to(torch.float64)
    neg = s.shape[1] - pos
    auc = (twice_credit * positive).sum(dim=1).to(torch.float64) / (2 * pos * neg)
    return torch.where(neg > 0, auc, torch.nan).to(a.dtype)


def energy_pointing_game(a: Tensor, s: Tensor) -> Tensor:
    """sum_S L / sum L for the min-max normalised map L = (a - min) / (max - min); a flat map
    scores the object's area, its chance level."""
    low, high = a.amin(dim=1, keepdim=True), a.amax(dim=1, keepdim=True)
    span = high - low
    scaled = torch.where(span > 0, (a - low) / span.clamp_min(torch.finfo(a.dtype).tiny), 0.0)
    return relevance_mass_accuracy(scaled, s)


# -- faithfulness without masks ----------------------------------------------------------------
def class_probability(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    with torch.no_grad():
        return F.softmax(model(x), dim=1).gather(1, target.view(-1, 1)).squeeze(1)


def gaussian_blur(x: Tensor, kernel: int, sigma: float) -> Tensor:
    """Per-channel Gaussian blur with reflect padding (torchvision's `gaussian_blur`, without
    importing torchvision on the evaluation path: it pulls in torch._dynamo, seconds per process)."""
    half = (kernel - 1) / 2
    weights = torch.exp(-0.5 * (torch.linspace(-half, half, kernel, dtype=x.dtype, device=x.device) / sigma) ** 2)
    weights = weights / weights.sum()
    c = x.shape[1]
    padded = F.pad(x, [kernel // 2] * 4, mode="reflect")
    rows = F.conv2d(padded, weights.view(1, 1, kernel, 1).expand(c, 1, kernel, 1), groups=c)
    return F.conv2d(rows, weights.view(1, 1, 1, kernel).expand(c, 1, 1, kernel), groups=c)


def trapezoid(values: Tensor) -> Tensor:
    """Area under values sampled at evenly spaced points of [0, 1] (last dim)."""
    return torch.trapezoid(values, dx=1.0 / (values.shape[-1] - 1), dim=-1)


def deletion_insertion(model: nn.Module, x: Tensor, a: Tensor, target: Tensor, steps: int = 16,
                       generator: torch.Generator | None = None, blur_kernel: int = 11,
                       blur_sigma: float = 5.0) -> tuple[Tensor, Tensor]:
    """RISE deletion and insertion AUCs (Petsiuk et al. 2018), per sample.

    Pixels are taken in order of relevance `a` (B, H*W), `steps` equal chunks at a time. Deletion
    sets them to 0 and should make the class probability fall fast (lower is better); insertion
    reveals them over a blurred copy and should make it rise fast (higher is better). Tied pixels
    are taken in a random order drawn from `generator`."""
    b, _, h, w = x.shape
    ranks = descending_ranks(a, generator or torch.Generator().manual_seed(0)).view(b, 1, h, w)
    blurred = gaussian_blur(x, blur_kernel, blur_sigma)
    deleted, inserted = [], []
    for t in range(steps + 1):
        shown = (ranks < round(t / steps * h * w)).to(x.dtype)
        deleted.append(class_probability(model, x * (1 - shown), target))
        inserted.append(class_probability(model, blurred * (1 - shown) + x * shown, target))
    return trapezoid(torch.stack(deleted, -1)), trapezoid(torch.stack(inserted, -1))


def cp_pixel(model: nn.Module, x: Tensor, mask: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(retained class probability p_c(m*x) / p_c(x), CP-Pixel = retained / (||m*x||_1 / ||x||_1)).

    Kolek et al.'s conciseness-preciseness score of a mask explanation; higher is better."""
    explanation = mask * x
    retained = class_probability(model, explanation, target) / class_probability(model, x, target)
    share = explanation.abs().flatten(1).sum(1) / x.abs().flatten(1).sum(1).clamp_min(1e-12)
    return retained, retained / share.clamp_min(1e-12)
