"""The seeds of one configuration trained as one model: their parameters stacked along a new
first dimension and one vmapped step (torch.func) for all of them.

A LeNet-3 step leaves most of a GPU idle; S seeds in one step fill it S times better. Each seed
keeps what it has alone: its initialisation (built under its own seed), its data order and
augmentation (its own generator), its Adam state (Adam works elementwise on the stacked
tensors) and its gradient clipping (one norm per seed). What differs is rounding: a vmapped
convolution sums in another order, so losses agree to about 1e-6, not to the last bit
(tests/test_stacked.py: 20 steps within 1e-5). Each seed's finished checkpoint is written where
its own run writes it, so `benchmark run` then evaluates each seed as usual. Stacked training
writes no resume checkpoint: an interrupted stack trains again from the start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import defaultdict
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from benchmark import provenance
from benchmark.config import RunConfig
from benchmark.data.loader import load_batches
from benchmark.data.split import Batch
from benchmark.engine.step import _Forward
from benchmark.engine.train import Checkpointing, Totals, Trainer, TrainResult
from benchmark.engine.trained import seeded
from benchmark.engine.weights import Built, Training, Workspace, save_trained
from benchmark.errors import ConfigError, DivergedError
from benchmark.method import Method, StepOutput, TrainState
from benchmark.models import Classifier
from benchmark.progress import Reporter


def why_not_stacked(configs: Sequence[RunConfig]) -> str | None:
    """Why these configurations cannot train as one stack (None: they can)."""
    from benchmark.registry import METHODS

    first = configs[0]
    if not METHODS.get(first.method).stackable:
        return f"method {first.method_name} is not stackable (its step or hooks depend on the model's state)"
    if any(dataclasses.replace(c, seed=first.seed) != first for c in configs):
        return "the configurations differ in more than the seed"
    if first.train.precision != "fp32":
        return f"train.precision={first.train.precision}: stacked seeds train in fp32 only"
    if first.train.init_from is not None:
        return "train.init_from is set: each seed starts from its own checkpoint"
    return None


def clip_per_seed(grads: Sequence[Tensor], max_norm: float) -> None:
    """`clip_grad_norm_` of each seed on stacked gradients (seed first): the total norm over
    every parameter of that seed, scaled down to `max_norm` when above it."""
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)  # (S,)
    factor = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(factor.view(-1, *([1] * (g.dim() - 1))))


def stacked_optimizer(template: torch.optim.Optimizer, model: torch.nn.Module,
                      stacked: dict[str, Tensor]) -> torch.optim.Optimizer:
    """The template's optimiser class and settings (group by group) over the stacked parameters."""
    names = {id(p): name for name, p in model.named_parameters()}
    groups = [{**{k: v for k, v in group.items() if k != "params"},
               "params": [stacked[names[id(p)]] for p in group["params"]]} for group in template.param_groups]
    return type(template)(groups, **template.defaults)


class StackedStep:
    """One optimiser step of S seeds at once: vmapped forward, one backward, clipping per seed."""

    def __init__(self, models: Sequence[Classifier], method: Method, state: TrainState,
                 optimizer: torch.optim.Optimizer, grad_clip: float | None, seeds: Sequence[int]):
        """`models`: one per seed, each as its own run initialised it; `optimizer`: the first
        model's, whose class and settings the stack uses; `seeds` name the seeds in errors."""
        self.models, self.grad_clip, self.seeds = list(models), grad_clip, list(seeds)
        self.forward = _Forward(models[0], method, state)
        self.params, self.buffers = stack_module_state(self.models)
        self.optimizer = stacked_optimizer(optimizer, models[0], self.params)

        def one(params, buffers, x, y, mask, index):
            named = ({f"model.{k}": v for k, v in params.items()}, {f"model.{k}": v for k, v in buffers.items()})
            out = functional_call(self.forward, named, (Batch(x, y, mask, index),))
            return out.losses, out.logits

        self.vmapped = vmap(one, randomness="error")

    def __call__(self, batches: Sequence[Batch]) -> list[StepOutput]:
        fields = [torch.stack([getattr(b, f) for b in batches]) for f in ("x", "y", "mask", "index")]
        losses, logits = self.vmapped(self.params, self.buffers, *fields)
        total = sum(losses.values())  # (S,): each seed's loss
        finite = torch.isfinite(total)
        if not bool(finite.all()):
            seed = self.seeds[int((~finite).nonzero()[0])]
            raise DivergedError(f"training diverged: the loss of seed {seed} is not finite; nothing was saved; "
                                "try a lower train.lr")
        self.optimizer.zero_grad(set_to_none=True)
        total.sum().backward()  # the seeds share no parameter: each gets its own gradient
        if self.grad_clip is not None:
            clip_per_seed([p.grad for p in self.params.values() if p.grad is not None], self.grad_clip)
        self.optimizer.step()
        return [StepOutput({name: term[k] for name, term in losses.items()}, logits[k]) for k in range(len(batches))]

    @torch.no_grad()
    def unstack(self) -> None:
        """Copy each seed's slice back into its own model."""
        for k, model in enumerate(self.models):
            for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
                tensor.copy_((self.params if name in self.params else self.buffers)[name][k])


def train_stacked(trainers: Sequence[Trainer], reporter: Reporter) -> list[TrainResult]:
    """Train every trainer's model in lockstep as one stack; each seed's result as `train` gives
    it, with `duration_s` its share of the time and `stacked_seeds` in every epoch's record."""
    first, count = trainers[0], len(trainers)
    step = StackedStep([t.model for t in trainers], first.method, first.state, first.optimizer, first.cfg.grad_clip,
                       [t.state.generator.initial_seed() for t in trainers])
    histories: list[list[dict[str, float]]] = [[] for _ in trainers]
    started = time.perf_counter()
    for epoch in range(first.cfg.epochs):
        epoch_start = time.perf_counter()
        totals = [Totals(defaultdict(float)) for _ in trainers]
        loaders = []
        for t in trainers:
            t.model.train()
            t.state.epoch = epoch
            loaders.append(load_batches(t.split, t.epoch_order(None)[0], t.cfg.batch_size, workers=t.state.workers,
                                        device=t.device, decoder=t.state.decoder))
        title = f"train {first.method.name} epoch {epoch + 1}/{first.cfg.epochs}, {count} seeds stacked"
        with reporter.task(title, first.steps) as update:
            for number, batches in enumerate(zip(*loaders), 1):
                batches = tuple(t.prepared(b) for t, b in zip(trainers, batches))
                for t, batch, out, sums in zip(trainers, batches, step(batches), totals):
                    t.account(batch, out, t.global_size(number), sums)
                update(loss=sum(s.sums["loss"] / s.seen for s in totals) / count)
        step.unstack()
        share = (time.perf_counter() - epoch_start) / count
        for t, sums, history in zip(trainers, totals, histories):
            record = sums.record(epoch, t.world)
            record.update(t.method.on_epoch_end(t.model, t.state))
            record.update(duration_s=share, stacked_seeds=float(count))
            history.append(record)
    results = [t.finish(history, resumed_from=None) for t, history in zip(trainers, histories)]
    for result in results:
        result.duration_s = (time.perf_counter() - started) / count
    return results


def stack_seeds(method: str, dataset: str, *, profile: str, seeds: Sequence[int],
                overrides: Sequence[str] | Mapping[str, Mapping[str, Any]], workspace: Workspace) -> str:
    """`--stack-seeds`: train the seeds of (method, dataset, profile, overrides) as one stack when
    the method allows it; a one-line note of what was done. Each seed's own run then finds its
    finished checkpoint and evaluates it."""
    from benchmark.config import resolve

    configs = [resolve(method, dataset, profile=profile, seed=seed, overrides=overrides) for seed in seeds]
    name = configs[0].method_name
    reason = why_not_stacked(configs)
    if reason is not None:
        return f"{name}: its seeds train one at a time ({reason})"
    trained = train_seeds_together(configs, workspace)
    if not trained:
        return f"{name}: nothing to stack (at most one seed without a finished checkpoint)"
    note = " (on a CPU that is slower than one at a time: docs/PERFORMANCE.md)" \
        if provenance.resolve_device(workspace.device).type == "cpu" else ""
    return f"{name}: seeds {', '.join(map(str, trained))} trained as one stacked model{note}"


def train_seeds_together(configs: Sequence[RunConfig], workspace: Workspace) -> list[int]:
    """Train the seeds of one configuration that have no finished checkpoint as one stack and
    write each seed's checkpoint where its own run would (under each run's lock). The seeds
    trained; none when fewer than two needed training (a lone seed trains in its own run)."""
    from benchmark.engine.run import build_run, placed

    reason = why_not_stacked(configs)
    if reason is not None:
        raise ConfigError(f"cannot stack seeds: {reason}")
    device, world, reporter = placed(workspace)
    if world.size > 1:
        raise ConfigError("cannot stack seeds under torchrun: stacked seeds train in one process")
    with contextlib.ExitStack() as locks:
        members: list[Built] = []
        for config in configs:
            files = workspace.files(config)
            locks.enter_context(files.claimed(config.key(), reporter))
            if not files.checkpoint.is_file():  # its name holds the config key: a finished run of this config
                with seeded(config.seed, device):  # the same initial weights as the run alone
                    members.append(build_run(config, Training(), workspace, device, world, reporter))
        if len(members) < 2:
            return []
        trainers = []
        for built in members:
            built.model.to(device)
            trainers.append(Trainer(built.model, built.method, built.dataset, built.config, device, reporter,
                                    Checkpointing(share=False), world))
        for built, result in zip(members, train_stacked(trainers, reporter)):
            result.train_commit = provenance.git_commit()
            save_trained(built, result)
            built.files.resume.unlink(missing_ok=True)
    return [b.config.seed for b in members]
