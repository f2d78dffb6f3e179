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
from benchmark.engine import shared_start
from benchmark.engine.step import Stepper
from benchmark.errors import DataError, DivergedError
from benchmark.method import Method, StepOutput, TrainState
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
    add more points. With `share`, a first epoch another method's run left beside it is taken
    (engine/shared_start.py). None of this changes the numbers, so none of it is in the config."""

    path: Path | None = None  # None: no resume checkpoint
    every_steps: int | None = None
    every_seconds: float | None = 600.0
    share: bool = True

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
    trainer = Trainer(model, method, dataset, config, device, reporter, checkpointing, world)
    position = trainer.restore()
    resumed_from = position.step if position.step or position.epoch else None
    if resumed_from is None and trainer.sharing:
        position = shared_start.take(trainer, trainer.sharing) or position
    history = position.history
    for epoch in range(position.epoch, config.train.epochs):
        history.append(trainer.epoch(epoch, position if epoch == position.epoch else None, history))
        if epoch + 1 < config.train.epochs and checkpointing.path is not None:
            trainer.save(Position(epoch + 1, 0, history=history))
    return trainer.finish(history, resumed_from=resumed_from)


@dataclass
class Totals:
    """An epoch's running sums (per-sample weighted), correct predictions and samples seen."""

    sums: defaultdict
    correct: int = 0
    seen: int = 0

    @classmethod
    def resumed(cls, position: Position | None) -> "Totals":
        if position is None or not position.batch:
            return cls(defaultdict(float))
        return cls(defaultdict(float, position.sums), position.correct, position.seen)

    def record(self, epoch: int, world: World) -> dict[str, float]:
        """The epoch's record over every rank's share (first_loss_ce is already a global mean)."""
        sums, correct, seen = self.sums, self.correct, self.seen
        if world.size > 1:
            sums = defaultdict(float, {k: v if k == "first_loss_ce" else world.total(v) for k, v in sums.items()})
            correct, seen = int(world.total(correct)), int(world.total(seen))
        return {"epoch": epoch + 1, **{k: v if k == "first_loss_ce" else v / max(seen, 1) for k, v in sums.items()},
                "train_accuracy": correct / max(seen, 1)}


class Trainer:
    """One run's training, in named phases: set up the state, restore a resume checkpoint, run
    epochs (each in the seeded order, resumable mid-epoch), save, finish."""

    def __init__(self, model: Classifier, method: Method, dataset: BenchmarkDataset, config: RunConfig,
                 device: torch.device, reporter: Reporter, checkpointing: Checkpointing, world: World):
        self.model, self.method, self.dataset, self.cfg = model, method, dataset, config.train
        self.device, self.reporter, self.checkpointing, self.world = device, reporter, checkpointing, world
        self.run_key = config.key()
        self.split = dataset.split("train")
        # A fixed subset (same for every method and seed) when train.samples is set.
        indices = first_of_shuffle(len(self.split), self.cfg.samples)
        self.order = indices if indices is not None else torch.arange(len(self.split))
        self.steps = math.ceil(len(self.order) / self.cfg.batch_size)
        self.state = TrainState(
            device=device, epochs=self.cfg.epochs, samples_per_epoch=len(self.order),
            batch_size=self.cfg.batch_size, train_split=self.split, train_indices=indices,
            class_weights=dataset.class_weights().to(device) if self.cfg.class_balanced else None,
            generator=torch.Generator().manual_seed(config.seed), world=world,
            workers=resolve_workers(self.cfg.workers), decoder=self.cfg.decoder)
        self.optimizer = method.optimizer(model, self.cfg)
        self.stepper = Stepper(model, method, self.optimizer, self.cfg, self.state)
        method.on_train_start(model, self.state)
        # the first epoch shared with other methods' runs of the same seed and settings (shared_start.py)
        self.sharing = shared_start.shared_path(config, checkpointing.path) if checkpointing.share \
            and world.size == 1 and method.plain_epochs() >= shared_start.SHARED_EPOCHS else None
        self.last = None  # the last batch trained on
        self.started = self.last_save = time.perf_counter()

    def restore(self) -> Position:
        """Where training continues: a resume checkpoint of this run, or the start."""
        position = restore(self.checkpointing, self.run_key, self.model, self.optimizer, self.method, self.state,
                           self.reporter)
        self.started = time.perf_counter() - position.elapsed_s
        return position

    def save(self, at: Position) -> None:
        assert self.checkpointing.path is not None, "saving is only due with a resume checkpoint path"
        check_finite(self.model, f"at step {self.state.step}")
        at.step, at.samples_seen = self.state.step, self.state.samples_seen
        at.elapsed_s = time.perf_counter() - self.started
        if self.world.main:  # every rank keeps the same cadence; one writes
            save_resume(self.checkpointing.path, run_key=self.run_key, position=at, model=self.model,
                        optimizer=self.optimizer, method_state=self.method.state_dict(),
                        generator=self.state.generator, device=self.device)
        self.last_save = time.perf_counter()
        self.reporter.log(f"  resume checkpoint at step {self.state.step}")

    def epoch_order(self, position: Position | None) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's sample order and the generator state it was drawn from; mid-epoch, the
        order is drawn again from the saved state and the generator continues where it stopped."""
        generator = self.state.generator
        if position is None or not position.batch:
            drawn_from = generator.get_state()
            return shuffled(self.order, generator), drawn_from
        assert position.epoch_generator is not None, "a mid-epoch position keeps its epoch's generator"
        now = generator.get_state()
        generator.set_state(position.epoch_generator)
        order = shuffled(self.order, generator)
        generator.set_state(now)
        return order, position.epoch_generator

    def epoch(self, epoch: int, position: Position | None, history: list[dict[str, float]]) -> dict[str, float]:
        """One epoch (from `position`'s batch when it resumes mid-epoch); its record."""
        self.model.train()
        self.state.epoch = epoch
        epoch_start = time.perf_counter()
        first = position.batch if position is not None else 0
        order, drawn_from = self.epoch_order(position)
        totals = Totals.resumed(position)
        with self.reporter.task(f"train {self.method.name} epoch {epoch + 1}/{self.cfg.epochs}", self.steps) as update:
            if first:
                update(advance=first)
            batches = load_batches(self.split, order, self.cfg.batch_size, first_batch=first,
                                   workers=self.state.workers, device=self.device, world=self.world,
                                   decoder=self.state.decoder)
            for number, batch in enumerate(batches, first + 1):
                self.step(batch, number, totals)
                update(loss=totals.sums["loss"] / totals.seen, acc=totals.correct / totals.seen)
                if number < self.steps and self.checkpointing.due(self.state.step,
                                                                  time.perf_counter() - self.last_save):
                    self.save(Position(epoch, number, epoch_generator=drawn_from, history=history,
                                       sums=dict(totals.sums), correct=totals.correct, seen=totals.seen))
        record = totals.record(epoch, self.world)
        if self.sharing and epoch + 1 == shared_start.SHARED_EPOCHS:
            shared_start.leave(self, self.sharing, record, epoch_start)
        record.update(self.method.on_epoch_end(self.model, self.state))
        record["duration_s"] = time.perf_counter() - epoch_start
        return record

    def step(self, batch, number: int, totals: Totals) -> None:
        """One optimisation step on batch `number` of the epoch, added to the epoch's totals."""
        batch = self.prepared(batch)
        global_size = self.global_size(number)
        self.account(batch, self.stepper(batch, global_size), global_size, totals)

    def prepared(self, batch):
        """The batch as the step sees it: augmented with this run's generator when configured."""
        return self.dataset.augment(batch, self.state.generator) if self.cfg.augment else batch

    def global_size(self, number: int) -> int:
        """Samples in batch `number` of the epoch over every rank (the last batch may be short)."""
        return min(self.cfg.batch_size, len(self.order) - (number - 1) * self.cfg.batch_size)

    def account(self, batch, out: StepOutput, global_size: int, totals: Totals) -> None:
        """After the optimiser step on `batch`: the position, the method's hook, the epoch's sums."""
        self.last = batch
        if self.state.step == 0:  # the yardstick of divergence, in the unit every method shares
            totals.sums["first_loss_ce"] = world_mean(
                self.world, float(F.cross_entropy(out.logits.detach(), batch.y)), len(batch))
        self.state.step += 1
        self.state.samples_seen += global_size
        self.method.on_step_end(self.model, batch, out, self.state)
        b = len(batch)
        totals.seen += b
        totals.correct += int((out.logits.detach().argmax(1) == batch.y).sum())
        totals.sums["loss"] += float(out.loss.detach()) * b
        for name, term in out.losses.items():
            totals.sums[f"loss_{name}"] += float(term.detach()) * b

    def finish(self, history: list[dict[str, float]], resumed_from: int | None) -> TrainResult:
        """The method's last hook, the finiteness check and the loss after the last update."""
        self.method.on_train_end(self.model, self.state)
        check_finite(self.model, f"after the last step ({self.state.step})")
        if self.last is not None and history:
            history[-1]["final_loss_ce"] = world_mean(self.world, final_loss(self.model, self.last), len(self.last))
        return TrainResult(history, time.perf_counter() - self.started, self.method.trace(), resumed_from)


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
    shared_start.load_generators(saved, state.generator, state.device)
    state.step, state.samples_seen = position.step, position.samples_seen
    reporter.log(f"  resuming from {checkpointing.path} (epoch {position.epoch + 1}, step {position.step})")
    return position
