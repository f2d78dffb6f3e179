"""H-SPLID's closed-form split of an embedding into salient and non-salient dimensions: pure
functions of embeddings, labels and running centres, and the classifier whose head sees only the
salient dimensions (Miklautz et al., NeurIPS 2025; the formulas and where paper and public code
differ: docs/METHODS.md)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from benchmark.losses.hsic import (
    gaussian_kernel,
    label_kernel,
    nhsic_from_operators,
    normalised_operator,
    subset_kernels,
)
from benchmark.models import Classifier, Encoder


def scatter(z: Tensor, y: Tensor, centres: Tensor, global_centre: Tensor) -> tuple[Tensor, Tensor]:
    """Per dimension: a = sum_i (z_i - c_{y_i})^2 (within class), b = sum_i (z_i - c_0)^2 (global)."""
    return (z - centres[y]).pow(2).sum(0), (z - global_centre).pow(2).sum(0)


def deviations(z: Tensor, y: Tensor, centres: Tensor, global_centre: Tensor) -> tuple[Tensor, Tensor]:
    """Per sample and dimension, in fp32: (z_i - c_{y_i})^2 and (z_i - c_0)^2. Summed over the
    batch they are `scatter`'s a and b; weighted by beta they are the compactness terms, so one
    step computes them once for both."""
    z = z.float()
    return (z - centres[y]).pow(2), (z - global_centre).pow(2)


def beta_reference(a: Tensor, b: Tensor) -> Tensor:
    """b^2 / (a^2 + b^2): the public code's form, minimiser of beta^2 a^2 + (1 - beta)^2 b^2."""
    return torch.nan_to_num(b.pow(2) / (a.pow(2) + b.pow(2)), nan=1e-12)


def beta_paper(a: Tensor, b: Tensor, lambda_s: float, lambda_n: float) -> Tensor:
    """lambda_n b / (lambda_s a + lambda_n b): minimiser of lambda_s beta^2 a + lambda_n (1 - beta)^2 b."""
    return torch.nan_to_num(lambda_n * b / (lambda_s * a + lambda_n * b), nan=1e-12)


def salient_mask(beta: Tensor, offset: float) -> Tensor:
    """The hard split: dimension d is salient iff beta_d >= 0.5 + v."""
    return beta >= 0.5 + offset


def has_split(mask: Tensor) -> bool:
    """A hard split needs more than one dimension in each subspace; otherwise use soft weights."""
    n = int(mask.sum())
    return n > 1 and mask.numel() - n > 1


def class_compactness(z: Tensor, y: Tensor, centres: Tensor, beta: Tensor, num_classes: int) -> Tensor:
    """L_s = 1/(B K) sum_i sum_d beta_d^2 (z_id - c_{y_i,d})^2 (as the reference code)."""
    return (beta.pow(2) * (z - centres[y]).pow(2)).sum() / (len(z) * num_classes)


def global_compactness(z: Tensor, global_centre: Tensor, beta: Tensor) -> Tensor:
    """L_n = 1/B sum_i sum_d (1 - beta_d)^2 (z_id - c_0d)^2."""
    return ((1 - beta).pow(2) * (z - global_centre).pow(2)).sum() / len(z)


def hsic_terms(x: Tensor, z: Tensor, y: Tensor, salient: Tensor, weights: dict[str, float],  # noqa: PLR0913
               num_classes: int, sigma: float, eps: float) -> dict[str, Tensor]:
    """H-SPLID's weighted "hsic_x_salient" = w nHSIC(X, Z_s) and "hsic_y_nonsalient" = w
    nHSIC(Y, Z_n), each only when its weight in `weights` is set: the subspace kernels in one
    batched product (`subset_kernels`), the operators in two batched solves (the inputs' and the
    labels' without gradients)."""
    names = [name for name in ("hsic_x_salient", "hsic_y_nonsalient") if weights.get(name)]
    if not names:
        return {}
    gate = salient.to(z.dtype if z.is_floating_point() else torch.float32)
    keep = torch.stack([gate if name == "hsic_x_salient" else 1 - gate for name in names])
    subspaces = normalised_operator(subset_kernels(z, keep, sigma), eps)
    with torch.no_grad():
        given = [gaussian_kernel(x, sigma) if name == "hsic_x_salient" else label_kernel(y, num_classes)
                 for name in names]
        fixed = normalised_operator(torch.stack(given), eps)
    traces = nhsic_from_operators(fixed, subspaces)
    return {name: weights[name] * traces[k] for k, name in enumerate(names)}


def update_centres(centres: Tensor, counts: Tensor, global_centre: Tensor, z: Tensor, y: Tensor
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """One batch of the running centres: cnt_k <- (cnt_k + n_k)/2, eta = 1/(cnt_k + 1),
    c_k <- (1 - eta) c_k + eta mean_k for classes present; c_0 <- (c_0 + mean z)/2."""
    k = centres.shape[0]
    n = torch.bincount(y, minlength=k).to(z.dtype)
    sums = torch.zeros_like(centres).index_add_(0, y, z)
    present = n > 0
    new_counts = torch.where(present, 0.5 * counts + 0.5 * n, counts)
    eta = (1.0 / (new_counts + 1.0)).unsqueeze(1)
    means = sums / n.clamp_min(1).unsqueeze(1)
    new_centres = torch.where(present.unsqueeze(1), (1 - eta) * centres + eta * means, centres)
    return new_centres, new_counts, 0.5 * global_centre + 0.5 * z.mean(0)


@dataclass
class ScatterSums:
    """Streaming per-class sums of z and z^2 (float64), enough for exact means and scatters."""

    n: Tensor
    s1: Tensor
    s2: Tensor

    @classmethod
    def empty(cls, k: int, m: int, device) -> "ScatterSums":
        f64 = dict(dtype=torch.float64, device=device)
        return cls(torch.zeros(k, **f64), torch.zeros(k, m, **f64), torch.zeros(k, m, **f64))

    def add(self, z: Tensor, y: Tensor) -> None:
        z = z.double()
        self.n.index_add_(0, y, torch.ones_like(y, dtype=torch.float64))
        self.s1.index_add_(0, y, z)
        self.s2.index_add_(0, y, z * z)

    def class_means(self) -> Tensor:
        return self.s1 / self.n.clamp_min(1).unsqueeze(1)

    def scatter(self, global_centre: Tensor) -> tuple[Tensor, Tensor]:
        """a and b of `scatter` around the exact class means and the given global centre."""
        means = self.class_means()
        a = (self.s2 - self.n.unsqueeze(1) * means.pow(2)).sum(0).clamp_min(0)
        c0 = global_centre.double()
        total, s1 = self.n.sum(), self.s1.sum(0)
        b = (self.s2.sum(0) - 2 * c0 * s1 + total * c0.pow(2)).clamp_min(0)
        return a, b


class HSplidClassifier(Classifier):
    """The head sees z * m_s (the salient dimensions); with no hard split yet, z * beta."""

    beta: Tensor
    salient: Tensor

    def __init__(self, encoder: Encoder, mean, std):
        super().__init__(encoder, mean, std)
        m = encoder.embed_dim
        self.register_buffer("beta", torch.ones(m))
        self.register_buffer("salient", torch.ones(m, dtype=torch.bool))

    def gates(self, split: bool | None = None) -> tuple[Tensor, Tensor]:
        """(salient gate, non-salient gate): hard masks when a split exists, else beta and 1 - beta.
        `split`: whether one exists, when the caller knows (saves reading the mask from the device)."""
        if has_split(self.salient) if split is None else split:
            s = self.salient.to(self.beta.dtype)
            return s, 1 - s
        return self.beta, 1 - self.beta

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x) * self.gates()[0])

    def views(self) -> dict[str, nn.Module]:
        return {"salient_subspace": SubspaceView(self, 0), "nonsalient_subspace": SubspaceView(self, 1)}


class SubspaceView(nn.Module):
    """The trained head applied to one subspace only (the paper's Figure 1 diagnostics)."""

    def __init__(self, model: HSplidClassifier, which: int):
        super().__init__()
        self.model, self.which = model, which

    def forward(self, x: Tensor) -> Tensor:
        return self.model.head(self.model.embed(x) * self.model.gates()[self.which])
