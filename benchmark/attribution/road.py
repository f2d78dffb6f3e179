"""ROAD (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for Attribution
Methods"): remove pixels in the order a map ranks them and watch the model's accuracy, but fill
the removed pixels by noisy linear imputation instead of a constant, so that the shape of what was
removed does not itself tell the model which pixels mattered (the class leakage of zero-filling).

Noisy linear imputation: every removed pixel takes the weighted mean of its eight neighbours
(weights 1/6 for the four sharing an edge, 1/12 for the diagonals; neighbours outside the image
drop out), which for a set of removed pixels is one sparse linear system, solved per image for all
channels at once; then Gaussian noise of sd `noise` is added to the imputed values.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.sparse import coo_matrix, diags
from scipy.sparse.linalg import spsolve
from torch import Tensor

NEIGHBOURS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6),
              (0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))  # (row, column, weight)


def impute(image: np.ndarray, removed: np.ndarray, noise: float = 0.0,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """`image` (C, H, W) with the pixels at flat positions `removed` replaced by the weighted mean of
    their neighbours (removed neighbours solved for jointly), plus N(0, noise^2) on those pixels."""
    channels, height, width = image.shape
    flat = image.reshape(channels, -1).astype(np.float64)
    removed = np.asarray(removed, dtype=np.int64)
    k = len(removed)
    out = flat.copy()
    if k == 0:
        return out.reshape(image.shape)
    known = np.ones(height * width, dtype=bool)
    known[removed] = False
    unknown_id = np.full(height * width, -1, dtype=np.int64)
    unknown_id[removed] = np.arange(k)
    row, col = removed // width, removed % width
    weight_sum, rhs = np.zeros(k), np.zeros((k, channels))
    a_rows, a_cols, a_vals = [], [], []
    for dr, dc, w in NEIGHBOURS:
        r, c = row + dr, col + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        ids, neighbour = np.flatnonzero(inside), r[inside] * width + c[inside]
        weight_sum[ids] += w
        given = known[neighbour]
        rhs[ids[given]] += w * flat[:, neighbour[given]].T
        a_rows.append(ids[~given])
        a_cols.append(unknown_id[neighbour[~given]])
        a_vals.append(np.full(int((~given).sum()), w))
    # weight_sum * x_i - sum over removed neighbours w * x_j = sum over known neighbours w * v
    a = diags(weight_sum) - coo_matrix((np.concatenate(a_vals), (np.concatenate(a_rows), np.concatenate(a_cols))),
                                       shape=(k, k))
    solved = np.asarray(spsolve(a.tocsc(), rhs)).reshape(k, channels)
    if noise:
        solved = solved + noise * (rng or np.random.default_rng()).standard_normal(solved.shape)
    out[:, removed] = solved.T
    return out.reshape(image.shape)


def road_curves(model: torch.nn.Module, x: Tensor, relevance: Tensor, target: Tensor, fractions: Sequence[float],
                noise: float, seed: int) -> tuple[Tensor, Tensor]:
    """Per sample and fraction, whether the model still predicts `target` after the most relevant
    (MoRF) or the least relevant (LeRF) share of pixels is imputed: two (B, F) 0/1 tensors.
    `relevance` is (B, H*W); ties keep pixel order (a stable sort)."""
    images = x.detach().cpu().double().numpy()
    order = torch.sort(relevance.detach().cpu(), dim=1, descending=True, stable=True).indices.numpy()
    pixels = order.shape[1]
    rng = np.random.default_rng(seed)
    curves = []
    for most_relevant_first in (True, False):
        ranked = order if most_relevant_first else order[:, ::-1]
        columns = []
        for fraction in fractions:
            count = int(pixels * fraction)
            filled = np.stack([impute(image, ranked[i, :count], noise, rng) for i, image in enumerate(images)])
            with torch.no_grad():
                predicted = model(torch.as_tensor(filled, dtype=x.dtype, device=x.device)).argmax(1)
            columns.append((predicted == target).float().cpu())
        curves.append(torch.stack(columns, dim=1))
    return curves[0], curves[1]
