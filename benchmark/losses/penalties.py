"""Sparsity penalties of the paper's baselines, as pure functions of weights or activations.

Definitions follow the H-SPLID code base (docs/METHODS.md): activation penalties are summed over
the batch, not averaged; weight penalties cover convolution and linear weights only (tensors of
two or more dimensions), so biases and BatchNorm scales are never penalised.
"""

from __future__ import annotations

from typing import cast

from torch import Tensor, nn


def penalised_weights(model: nn.Module) -> list[Tensor]:
    """Convolution and linear weight tensors (ndim >= 2); biases and norm layers left out."""
    return [p for name, p in model.named_parameters() if p.ndim >= 2 and name.rsplit(".", 1)[-1] == "weight"]


def l1_weights(model: nn.Module) -> Tensor:
    """sum over weight tensors of ||W||_1."""
    return cast(Tensor, sum(w.abs().sum() for w in penalised_weights(model)))


def group_lasso_weights(model: nn.Module) -> Tensor:
    """sum over weight tensors and output units o of ||W_o||_2 (a conv filter or a linear row)."""
    return cast(Tensor, sum(w.flatten(1).norm(dim=1).sum() for w in penalised_weights(model)))


def l1_activations(a: Tensor) -> Tensor:
    """sum over the batch and units of |a|."""
    return a.abs().sum()


def group_lasso_activations(a: Tensor) -> Tensor:
    """sum over the batch of each sample's ||a_i||_2."""
    return a.flatten(1).norm(dim=1).sum()
