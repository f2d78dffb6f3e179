"""A first epoch trained once and shared: methods whose first epoch is plain cross-entropy
training (vanilla; H-SPLID's warm-up epoch) compute exactly the same first epoch from the same
seed, data and settings. The first run to finish that epoch leaves its full training state
(weights, optimiser, both random generators, the epoch's record) in
`checkpoints/shared/<key>.pt`; a later run of the same key continues from it instead of
computing the epoch again, with identical numbers (tests/test_training.py).

The key is everything that determines the first epoch's trajectory: the seed, the whole `train`
section, the model and dataset sections and the code versions of the dataset and encoder. A
method opts in with `Method.plain_epochs`; its state and its model's extra buffers must not change
during those epochs (its `on_epoch_end` still runs after the shared epoch). The file is as large
as a resume checkpoint (weights and optimiser state: about 200 MB for C-MNIST's LeNet-3) and may
be deleted at any time: a run that finds none trains the epoch itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from benchmark.checkpoint import Position, load_resume, save_resume
from benchmark.config import RunConfig, digest
from benchmark.errors import DataError

if TYPE_CHECKING:
    from benchmark.engine.train import Trainer

SHARED_EPOCHS = 1  # the epochs shared: the first one


def shared_path(config: RunConfig, resume_path: Path | None) -> tuple[Path, str] | None:
    """Where this run's shared first epoch lives and its key, or None when nothing is shared
    (no checkpoint folder, a single epoch)."""
    if resume_path is None or config.train.epochs <= SHARED_EPOCHS:
        return None
    data = config.to_dict()
    key = digest({"seed": config.seed, "train": json.loads(json.dumps(asdict(config.train))),
                  "model": data["model"], "dataset": [config.dataset, data["dataset"]],
                  "versions": {k: v for k, v in data["run"]["versions"].items() if k != "method"}})
    return resume_path.parent / "shared" / f"first-epoch-{key}.pt", key


def take(trainer: Trainer, where: tuple[Path, str]) -> Position | None:
    """Continue `trainer` from the shared first epoch when one exists: its state loaded, the
    method's end-of-epoch hook run as it would have been; the position after that epoch."""
    path, key = where
    try:
        saved = load_resume(path, key)
    except DataError:
        return None
    if saved is None:
        return None
    missing, unexpected = trainer.model.load_state_dict(saved["model"], strict=False)
    extra_buffers = {name for name, _ in trainer.model.named_buffers()}
    if not set(missing) <= extra_buffers:  # another architecture under the same key: never
        raise DataError(f"{path}: the shared first epoch lacks parameters {sorted(missing)[:3]} of this model")
    del unexpected  # another method's extra buffers, still at their initial values
    trainer.optimizer.load_state_dict(saved["optimizer"])
    load_generators(saved, trainer.state.generator, trainer.state.device)
    position: Position = saved["position"]
    trainer.state.step, trainer.state.samples_seen = position.step, position.samples_seen
    trainer.state.epoch = SHARED_EPOCHS - 1
    record = dict(position.history[-1])
    duration = record.pop("duration_s")  # keys in the order an epoch writes them
    record.update(trainer.method.on_epoch_end(trainer.model, trainer.state))
    record["duration_s"] = duration
    trainer.reporter.log(f"  epoch {SHARED_EPOCHS} shared: continuing from {path}")
    return Position(SHARED_EPOCHS, 0, position.step, position.samples_seen, history=[record])


def leave(trainer: Trainer, where: tuple[Path, str], record: dict[str, float], started: float) -> None:
    """After the first epoch (before the method's end-of-epoch hook): the state a later run of
    the same key continues from, unless one is there already."""
    path, key = where
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    state = trainer.state
    shared = {**record, "duration_s": time.perf_counter() - started}
    save_resume(path, run_key=key, position=Position(SHARED_EPOCHS, 0, state.step, state.samples_seen,
                                                     history=[shared]),
                model=trainer.model, optimizer=trainer.optimizer, method_state={}, generator=state.generator,
                device=state.device)


def load_generators(saved: dict[str, Any], generator: torch.Generator, device: torch.device) -> None:
    """The data generator and the global (and CUDA) random state of a resume payload."""
    generator.set_state(saved["generator"])
    torch.set_rng_state(saved["global_rng"])
    if saved["cuda_rng"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(saved["cuda_rng"], device)
