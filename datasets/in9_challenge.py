"""The Backgrounds Challenge (Xiao et al. 2021, `challenge_eval.py` in MadryLab/backgrounds_challenge):
each IN-9 foreground of `original` (its `fg_mask` mask) pasted on every background of the
`only_bg_t` pool; a foreground counts as correct only if the model classifies it right on every
one of them, so the accuracy is the worst background's per foreground. A suite for the `in9`
dataset, beside the IN-9 evaluation source it reads (datasets/in9.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from benchmark.data.split import first_of_shuffle
from benchmark.engine.evaluate import EvalContext, Suite
from benchmark.errors import ConfigError
from benchmark.registry import SUITES
from benchmark.results.records import Records
from benchmark.results.store import Measurement
from benchmark_datasets.imagenet import BG_REPOSITORY
from benchmark_datasets.in9 import ImageNet9


def survives_every_background(model, foreground: torch.Tensor, mask: torch.Tensor, target: torch.Tensor,
                              backgrounds: torch.Tensor, predict=None) -> torch.Tensor:
    """Per foreground (B, C, H, W) with its mask (B, 1, H, W): whether the model gives `target` on
    every background (K, C, H, W) with the foreground pasted in (background * (1 - mask) + image *
    mask, the challenge's composition). (B,) bool."""
    b, k = len(foreground), len(backgrounds)
    combined = backgrounds[None] * (1 - mask[:, None]) + foreground[:, None] * mask[:, None]  # (B, K, C, H, W)
    with torch.no_grad():
        logits = model(combined.flatten(0, 1))
    predicted = (predict(logits) if predict is not None else logits.argmax(1)).view(b, k)
    return (predicted == target[:, None]).all(dim=1)


@dataclass
class ChallengeParams:
    """The Backgrounds Challenge (Xiao et al. 2021): foregrounds of `original` pasted on a pool of
    `only_bg_t` backgrounds; a foreground counts as correct only if it is on every one of them."""

    foregrounds: int | None = None  # a fixed seeded subset of the 4,050 foregrounds; None = all
    pool: int | None = None  # a fixed seeded subset of the backgrounds; None = all (the challenge)
    batch: int = 32  # backgrounds per forward pass

    def __post_init__(self) -> None:
        if (self.foregrounds is not None and self.foregrounds < 1) or (self.pool is not None and self.pool < 1) \
                or self.batch < 1:
            raise ConfigError("challenge.foregrounds and challenge.pool must be >= 1 or none, challenge.batch >= 1")


@SUITES.register("challenge")
class ChallengeSuite(Suite):
    """Challenge accuracy: the share of IN-9 foregrounds the model classifies right on every
    background of the pool (the worst background per foreground), per label protocol."""

    Params = ChallengeParams

    def check(self, dataset) -> None:
        source = challenge_source(dataset)
        source.challenge_parts()
        source.challenge_predictions()

    def run(self, ctx: EvalContext) -> list[Measurement]:
        p: ChallengeParams = self.params
        source = challenge_source(ctx.dataset)
        foregrounds, classes, pool = source.challenge_parts()
        protocols = source.challenge_predictions()
        chosen = first_of_shuffle(len(foregrounds), p.foregrounds)
        fg_index = chosen if chosen is not None else torch.arange(len(foregrounds))
        bg_index = first_of_shuffle(len(pool), p.pool, seed=1)
        bg_index = bg_index if bg_index is not None else torch.arange(len(pool))
        backgrounds = [pool.batch(bg_index[i:i + p.batch]).x.to(ctx.device) for i in range(0, len(bg_index), p.batch)]
        model = ctx.model.eval()
        started = time.perf_counter()
        held = {name: [] for name in protocols}
        with ctx.reporter.task(f"  challenge: {len(fg_index)} foregrounds x {len(bg_index)} backgrounds",
                               len(fg_index)) as update:
            for k in fg_index.tolist():
                one = foregrounds.batch(torch.tensor([k]))
                x, mask = one.x.to(ctx.device), one.mask.to(ctx.device)
                targets = {"synset": one.y.to(ctx.device), "in9": torch.tensor([classes[k]], device=ctx.device)}
                for name, predict in protocols.items():
                    ok = all(bool(survives_every_background(model, x, mask, targets[name], bg, predict))
                             for bg in backgrounds)
                    held[name].append(float(ok))
                update()
        rows = []
        for name, values in held.items():
            rows.append(Measurement.of_records(
                "challenge", "challenge_accuracy", Records.of(fg_index, torch.tensor(values)),
                eval_set="in9_challenge" if name == "synset" else "in9_challenge_9way",
                extra={"labels": name, "pool": len(bg_index), "foregrounds": len(fg_index)},
                duration_s=time.perf_counter() - started))
        return rows


def challenge_source(dataset) -> ImageNet9:
    """The IN-9 evaluation source of a dataset, or a one-line error naming what is missing."""
    sources = [s for s in getattr(dataset, "sources", lambda: [])() if isinstance(s, ImageNet9)]
    if not sources:
        raise ConfigError(f"challenge: dataset {dataset.name!r} has no IN-9 source; the Backgrounds Challenge needs "
                          f"bg_challenge/ (original, only_bg_t, fg_mask) from {BG_REPOSITORY} under the data root")
    return sources[0]
