"""The training loop shared by every method: seeded shuffling and augmentation, Adam, clipping."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass

import torch

from .config import RunConfig
from .data import BenchmarkDataset, first_of_shuffle, iterate
from .errors import BenchmarkError
from .method import Method, TrainState
from .models import Classifier
from .progress import Reporter


@dataclass
class TrainResult:
    history: list[dict[str, float]]  # one record per epoch
    duration_s: float
    trace: list[dict[str, float]]  # the method's own time series (records carry samples_seen)


def train(model: Classifier, method: Method, dataset: BenchmarkDataset, config: RunConfig,
          device: torch.device, reporter: Reporter) -> TrainResult:
    cfg = config.train
    split = dataset.split("train")
    # A fixed subset (same for every method and seed) when train.samples is set.
    indices = first_of_shuffle(len(split), cfg.samples)
    n_train = len(indices) if indices is not None else len(split)
    state = TrainState(
        device=device,
        epochs=cfg.epochs,
        samples_per_epoch=n_train,
        batch_size=cfg.batch_size,
        train_split=split,
        train_indices=indices,
        class_weights=dataset.class_weights().to(device) if cfg.class_balanced else None,
        generator=torch.Generator().manual_seed(config.seed),
    )
    optimizer = method.optimizer(model, cfg)
    started = time.perf_counter()
    method.on_train_start(model, state)
    history = []
    for epoch in range(cfg.epochs):
        model.train()
        state.epoch = epoch
        epoch_start = time.perf_counter()
        sums: dict[str, float] = defaultdict(float)
        correct = seen = 0
        steps = math.ceil(n_train / cfg.batch_size)
        with reporter.task(f"train {method.name} epoch {epoch + 1}/{cfg.epochs}", steps) as update:
            for batch in iterate(split, cfg.batch_size, shuffle=True, generator=state.generator, indices=indices):
                batch = batch.to(device)
                if cfg.augment:
                    batch = dataset.augment(batch, state.generator)
                out = method.training_step(model, batch, state)
                loss = out.loss
                if not torch.isfinite(loss):
                    raise BenchmarkError(
                        f"training diverged: loss is {loss.item()} at epoch {epoch + 1}, step {state.step + 1} "
                        f"(terms {', '.join(out.losses)}); try a lower train.lr"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                state.step += 1
                state.samples_seen += len(batch)
                method.on_step_end(model, batch, out, state)
                b = len(batch)
                seen += b
                correct += int((out.logits.detach().argmax(1) == batch.y).sum())
                sums["loss"] += float(loss.detach()) * b
                for name, term in out.losses.items():
                    sums[f"loss_{name}"] += float(term.detach()) * b
                update(loss=sums["loss"] / seen, acc=correct / seen)
        record = {"epoch": epoch + 1, **{k: v / max(seen, 1) for k, v in sums.items()},
                  "train_accuracy": correct / max(seen, 1)}
        record.update(method.on_epoch_end(model, state))
        record["duration_s"] = time.perf_counter() - epoch_start
        history.append(record)
    method.on_train_end(model, state)
    return TrainResult(history, time.perf_counter() - started, method.trace())
