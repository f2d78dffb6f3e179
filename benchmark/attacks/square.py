"""Square Attack, L-inf (Andriushchenko et al., ECCV 2020), with its squares placed inside the region.

A score-based random search: start from vertical stripes of +-eps, then repeatedly redraw one
square window of the perturbation to +-eps per channel and keep it when the margin loss drops.
The window side follows the paper's schedule of p (the fraction of pixels changed). Windows are
centred on pixels of the region, and the perturbation is multiplied by the region, so only
region pixels ever change. `steps` is the query budget per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.attacks import Attack, AttackParams
from benchmark.attacks.regions import boxes
from benchmark.errors import ConfigError
from benchmark.registry import ATTACKS


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """z_y - max_{i != y} z_i: negative once the sample is misclassified."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    return z_y - logits.scatter(1, y[:, None], float("-inf")).max(1).values


def p_schedule(p_init: float, query: int, budget: int) -> float:
    """The paper's piecewise-constant schedule, rescaled to a budget of `budget` queries."""
    it = int(query / budget * 10000)
    halvings = sum(it > t for t in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
    return p_init / 2 ** halvings


@dataclass
class SquareParams(AttackParams):
    steps: int = 5000  # queries
    p_init: float = 0.8  # initial share of the image a square covers

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.p_init <= 1:
            raise ConfigError(f"square's p_init must be in (0, 1], got {self.p_init}")


@ATTACKS.register("square")
class Square(Attack):
    """Square attack (Andriushchenko et al. 2020): random squares of +-eps placed inside the region,
    a change kept when it lowers the margin; no gradients (`steps` = queries)."""

    Params = SquareParams
    params: SquareParams
    norms = ("linf",)

    def __init__(self, model, **settings):
        super().__init__(model, **settings)
        self.p_init = float(self.params.p_init)

    def _sign(self, shape, generator, device) -> Tensor:
        return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(device=device, dtype=torch.float32)

    @torch.no_grad()
    def perturb(self, x: Tensor, y: Tensor, region: Tensor, generator: torch.Generator) -> Tensor:
        b, c, h, w = x.shape
        eps = self.eps
        delta = eps * self._sign((b, c, 1, w), generator, x.device).to(x.dtype) * region
        adv = torch.clamp(x + delta, 0.0, 1.0)
        best = margin(self.model(adv), y)
        # Candidate window centres: the region's pixels, per sample (any channel).
        where = region.amax(1).flatten(1) > 0  # (b, h*w)
        for query in range(1, self.steps):
            todo = (best > 0) & where.any(1)
            if not todo.any():
                break
            idx = todo.nonzero().squeeze(1)
            p = p_schedule(self.p_init, query, self.steps)
            side = max(1, min(h, w, round(math.sqrt(p * h * w))))
            weights = where[idx].float()
            centre = torch.multinomial(weights.cpu(), 1, generator=generator).squeeze(1)
            top = (centre // w - side // 2).clamp(0, h - side).to(x.device)
            left = (centre % w - side // 2).clamp(0, w - side).to(x.device)
            window = boxes(top, left, side, side, h, w)
            values = eps * self._sign((len(idx), c, 1, 1), generator, x.device).to(x.dtype)
            candidate = torch.where(window, values, delta[idx]) * region[idx]
            trial = torch.clamp(x[idx] + candidate, 0.0, 1.0)
            loss = margin(self.model(trial), y[idx])
            better = loss < best[idx]
            keep = idx[better]
            delta[keep], adv[keep], best[keep] = candidate[better], trial[better], loss[better]
        return adv
