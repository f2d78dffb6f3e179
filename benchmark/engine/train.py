"""The training loop shared by every method: seeded shuffling and augmentation, Adam, clipping."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F

from benchmark.checkpoint import Position, load_resume, save_resume, to_device
from benchmark.config import RunConfig
from benchmark.data.loader import load_batches, resolve_workers
from benchmark.data.split import first_of_shuffle, shuffled
from benchmark.dataset import BenchmarkDataset
from benchmark.distributed import World
from benchmark.engine.step import Stepper
from benchmark.errors import DataError, DivergedError
from benchmark.method import Method, TrainState
from benchmark.models import Classifier
from benchmark.progress import Reporter

DIVERGENCE_RATIO = 10.0  # a final loss this many times the first one flags the run `diverged`


@dataclass
class TrainResult:
    history: list[dict[str, float]]  # one record per epoch
    duration_s: float
    trace: list[dict[str, float]]  # the method's own time series (records carry samples_seen)
    resumed_from_step: int | None = None  # the step a resume checkpoint continued from
    train_commit: str = ""  # the source commit that trained the weights (today's when trained now)
    init_from: str | None = None  # the run key of the checkpoint training started from (train.init_from)

    @property
    def diverged(self) -> bool:
        """The cross-entropy after the last update is over DIVERGENCE_RATIO times the first step's:
        the weights are finite but training went the wrong way (e.g. a far too large learning rate)."""
        first = self.history[0].get("first_loss_ce") if self.history else None
        last = self.history[-1].get("final_loss_ce") if self.history else None
        return first is not None and last is not None and last > DIVERGENCE_RATIO * max(first, 1e-12)


def non_finite(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or infinity."""
    return [name for name, t in state.items()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]


def check_finite(model: torch.nn.Module, where: str) -> None:
    """Refuse weights that are not finite: they must never be saved, reused or evaluated."""
    bad = non_finite(model.state_dict())
    if bad:
        raise DivergedError(f"training diverged: {len(bad)} weight tensors (first {bad[0]}) are not finite {where}; "
                            "nothing was saved; try a lower train.lr")


@dataclass(frozen=True)
class Checkpointing:
    """Where an unfinished run keeps its resume checkpoint, and how often it is rewritten.

    It is always written at the end of an epoch (but the last); `every_steps` and `every_seconds`
    add more points. Saving never changes the numbers, so none of this is part of the config."""

    path: Path | None = None  # None: no resume checkpoint
    every_steps: int | None = None
    every_seconds: float | None = 600.0

    def due(self, step: int, since_last_s: float) -> bool:
        if self.path is None:
            return False
        return bool((self.every_steps and step % self.every_steps == 0)
                    or (self.every_seconds is not None and since_last_s >= self.every_seconds))


def train(model: Classifier, method: Method, dataset: BenchmarkDataset, config: RunConfig,
          device: torch.device, reporter: Reporter, checkpointing: Checkpointing = Checkpointing(),
          world: World = World()) -> TrainResult:
    """Train `model` in place; continues from `checkpointing.path` when it holds this run's state.
    With several ranks (`world`), each trains on its slice of every batch and only rank 0 saves."""
    cfg = config.train
    split = dataset.split("train")
    # A fixed subset (same for every method and seed) when train.samples is set.
    indices = first_of_shuffle(len(split), cfg.samples)
    order = indices if indices is not None else torch.arange(len(split))
    state = TrainState(
        device=device,
        epochs=cfg.epochs,
        samples_per_epoch=len(order),
        batch_size=cfg.batch_size,
        train_split=split,
        train_indices=indices,
        class_weights=dataset.class_weights().to(device) if cfg.class_balanced else None,
        generator=torch.Generator().manual_seed(config.seed),
        world=world,
        workers=resolve_workers(cfg.workers),
    )
    optimizer = method.optimizer(model, cfg)
    stepper = Stepper(model, method, optimizer, cfg, state)
    method.on_train_start(model, state)
    run_key = config.key()
    position = restore(checkpointing, run_key, model, optimizer, method, state, reporter)
    resumed_from = position.step if position.step or position.epoch else None
    started = time.perf_counter() - position.elapsed_s
    last_save = time.perf_counter()

    def save(at: Position) -> None:
        nonlocal last_save
        assert checkpointing.path is not None, "saving is only due with a resume checkpoint path"
        check_finite(model, f"at step {state.step}")
        at.step, at.samples_seen, at.elapsed_s = state.step, state.samples_seen, time.perf_counter() - started
        if world.main:  # every rank keeps the same cadence; one writes
            save_resume(checkpointing.path, run_key=run_key, position=at, model=model, optimizer=optimizer,
                        method_state=method.state_dict(), generator=state.generator, device=device)
        last_save = time.perf_counter()

    history = position.history
    steps = math.ceil(len(order) / cfg.batch_size)
    last = None  # the last batch trained on
    for epoch in range(position.epoch, cfg.epochs):
        model.train()
        state.epoch = epoch
        epoch_start = time.perf_counter()
        first = position.batch if epoch == position.epoch else 0
        if first:  # redraw this epoch's order, then continue the generator where it stopped
            assert position.epoch_generator is not None, "a mid-epoch position keeps its epoch's generator"
            now = state.generator.get_state()
            state.generator.set_state(position.epoch_generator)
        epoch_generator = state.generator.get_state()
        epoch_order = shuffled(order, state.generator)
        if first:
            state.generator.set_state(now)
        sums: dict[str, float] = defaultdict(float, position.sums if first else {})
        correct, seen = (position.correct, position.seen) if first else (0, 0)
        with reporter.task(f"train {method.name} epoch {epoch + 1}/{cfg.epochs}", steps) as update:
            if first:
                update(advance=first)
            batches = load_batches(split, epoch_order, cfg.batch_size, first_batch=first, workers=state.workers,
                                   device=device, world=world)
            for number, batch in enumerate(batches, first + 1):
                if cfg.augment:
                    batch = dataset.augment(batch, state.generator)
                global_size = min(cfg.batch_size, len(order) - (number - 1) * cfg.batch_size)
                out = stepper(batch, global_size)
                loss = out.loss
                last = batch
                if state.step == 0:  # the yardstick of divergence, in the unit every method shares
                    sums["first_loss_ce"] = world_mean(world, float(F.cross_entropy(out.logits.detach(), batch.y)),
                                                       len(batch))
                state.step += 1
                state.samples_seen += global_size
                method.on_step_end(model, batch, out, state)
                b = len(batch)
                seen += b
                correct += int((out.logits.detach().argmax(1) == batch.y).sum())
                sums["loss"] += float(loss.detach()) * b
                for name, term in out.losses.items():
                    sums[f"loss_{name}"] += float(term.detach()) * b
                update(loss=sums["loss"] / seen, acc=correct / seen)
                if number < steps and checkpointing.due(state.step, time.perf_counter() - last_save):
                    save(Position(epoch, number, epoch_generator=epoch_generator, history=history,
                                  sums=dict(sums), correct=correct, seen=seen))
                    reporter.log(f"  resume checkpoint at step {state.step}")
        if world.size > 1:  # every rank's share of the epoch
            sums = defaultdict(float, {k: v if k == "first_loss_ce" else world.total(v) for k, v in sums.items()})
            correct, seen = int(world.total(correct)), int(world.total(seen))
        record = {"epoch": epoch + 1,
                  **{k: v if k == "first_loss_ce" else v / max(seen, 1) for k, v in sums.items()},
                  "train_accuracy": correct / max(seen, 1)}
        record.update(method.on_epoch_end(model, state))
        record["duration_s"] = time.perf_counter() - epoch_start
        history.append(record)
        if epoch + 1 < cfg.epochs and checkpointing.path is not None:
            save(Position(epoch + 1, 0, history=history))
            reporter.log(f"  resume checkpoint at step {state.step}")
    method.on_train_end(model, state)
    check_finite(model, f"after the last step ({state.step})")
    if last is not None and history:
        history[-1]["final_loss_ce"] = world_mean(world, final_loss(model, last), len(last))
    return TrainResult(history, time.perf_counter() - started, method.trace(), resumed_from)


def world_mean(world: World, value: float, weight: int) -> float:
    """A per-sample mean over every rank's samples (the value itself with one rank)."""
    if world.size == 1:
        return value
    return world.total(value * weight) / world.total(weight)


def final_loss(model: Classifier, batch) -> float:
    """Cross-entropy of the trained model on the last training batch: the loss after the last
    update, which the loop itself never sees. Non-finite means diverged: nothing is saved."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        value = float(F.cross_entropy(model(batch.x), batch.y))
    model.train(was_training)
    if not math.isfinite(value):
        raise DivergedError(f"training diverged: the loss after the last update is {value}; nothing was saved; "
                            "try a lower train.lr")
    return value


def restore(checkpointing: Checkpointing, run_key: str, model: Classifier, optimizer: torch.optim.Optimizer,
            method: Method, state: TrainState, reporter: Reporter) -> Position:
    """Load this run's resume checkpoint into model, optimiser, method, state and the global RNG;
    the position to continue from (the start when there is none)."""
    if checkpointing.path is None:
        return Position()
    try:
        saved = load_resume(checkpointing.path, run_key)
    except DataError as err:
        reporter.log(f"  ignoring an unreadable resume checkpoint ({err}); training from the start")
        return Position()
    if saved is None:
        return Position()
    position: Position = saved["position"]
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    method.load_state_dict(to_device(saved["method_state"], state.device))
    state.generator.set_state(saved["generator"])
    torch.set_rng_state(saved["global_rng"])
    if saved["cuda_rng"] is not None and state.device.type == "cuda":
        torch.cuda.set_rng_state(saved["cuda_rng"], state.device)
    state.step, state.samples_seen = position.step, position.samples_seen
    reporter.log(f"  resuming from {checkpointing.path} (epoch {position.epoch + 1}, step {position.step})")
    return position
