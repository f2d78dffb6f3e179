"""Normalised HSIC (NOCCO, Fukumizu et al. 2007), the dependence measure of H-SPLID and HBaR.

nHSIC(U, V) = trace(R_U R_V), with R = K~ (K~ + eps * B * I)^-1 and K~ = K H the right-centred
kernel matrix (H = I - 11^T / B). Gaussian kernels use the bandwidth 2 sigma^2 p, p being the
feature dimension of the variable; labels use the linear kernel of their one-hot codes.
Everything stays on the inputs' device; gradients flow through the inverse. Kernels and the
inverse are computed in fp32 even inside an autocast region (train.precision=bf16/fp16): in bf16,
distances between nearby samples round to 0 and the regularised kernel becomes singular.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def squared_distances(u: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances of the rows of u (B, p); differentiable at 0."""
    sq = u.pow(2).sum(dim=1)
    return (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * u @ u.T).clamp_min(0.0)


def gaussian_kernel(u: Tensor, sigma: float = 5.0) -> Tensor:
    """K_ij = exp(-||u_i - u_j||^2 / (2 sigma^2 p)) for u of shape (B, p) (flattened if needed),
    in fp32 (float64 inputs stay float64)."""
    u = u.flatten(1)
    with torch.autocast(u.device.type, enabled=False):
        u = u if u.dtype == torch.float64 else u.float()
        return torch.exp(-squared_distances(u) / (2.0 * sigma**2 * u.shape[1]))


def label_kernel(y: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Linear kernel of one-hot labels: K_ij = 1 if y_i == y_j else 0."""
    onehot = F.one_hot(y, num_classes).to(dtype)
    return onehot @ onehot.T


def subset_kernels(u: Tensor, keep: Tensor, sigma: float = 5.0) -> Tensor:
    """Gaussian kernels of several subsets of u's columns at once: for each 0/1 row of `keep`
    (g, p), the kernel of u[:, keep_g] with its own bandwidth 2 sigma^2 p_g; shape (g, B, B).

    Equal to `gaussian_kernel(u[:, keep_g.bool()])` up to rounding, but one batched product
    for every subset and no boolean indexing (which waits for the device on a GPU)."""
    with torch.autocast(u.device.type, enabled=False):
        u = u if u.dtype == torch.float64 else u.float()
        kept = u.unsqueeze(0) * keep.to(u.dtype).unsqueeze(1)  # zeroed columns add nothing to a distance
        sq = kept.pow(2).sum(dim=2)
        distances = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * kept @ kept.transpose(1, 2)).clamp_min(0.0)
        widths = keep.to(u.dtype).sum(dim=1).clamp_min(1.0)
        return torch.exp(-distances / (2.0 * sigma**2 * widths.view(-1, 1, 1)))


def normalised_operator(kernel: Tensor, eps: float = 1e-5) -> Tensor:
    """R = K H (K H + eps B I)^-1, the normalised cross-covariance operator of one variable;
    for a stack of kernels (n, B, B), one operator each, in one batched solve."""
    b = kernel.shape[-1]
    with torch.autocast(kernel.device.type, enabled=False):
        kernel = kernel if kernel.dtype == torch.float64 else kernel.float()
        centred = kernel - kernel.mean(dim=-1, keepdim=True)  # K H: subtract each row's mean
        eye = torch.eye(b, dtype=kernel.dtype, device=kernel.device)
        return torch.linalg.solve(centred + eps * b * eye, centred, left=False)


def nhsic(kernel_u: Tensor, kernel_v: Tensor, eps: float = 1e-5) -> Tensor:
    """nHSIC(U, V) = trace(R_U R_V) from the two kernel matrices."""
    return nhsic_from_operators(normalised_operator(kernel_u, eps), normalised_operator(kernel_v, eps))


def nhsic_from_operators(r_u: Tensor, r_v: Tensor) -> Tensor:
    """trace(R_U R_V) without forming the product (reuse an operator across terms); for stacks
    of operators, one trace per pair."""
    return (r_u * r_v.transpose(-2, -1)).sum(dim=(-2, -1))
