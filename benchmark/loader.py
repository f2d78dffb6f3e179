"""Batches decoded in worker processes: file-backed splits (ImageNet, IN-9, CounterAnimal, any
map-style plugin split) at the speed the accelerator consumes them.

The engine still decides the order: the batches of `order` are handed out in that order, each
decoded whole by one worker (workers take turns, so `workers` batches decode at once), pinned when
asked and prefetched two per worker. Only the decoding moves: the same batches come back, in the
same order, and the seeded augmentation runs afterwards as before, so results and resume are
unchanged. In-memory splits (TensorSplit) keep their fast path in this process.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from .data import Batch, Split, TensorSplit
from .distributed import World


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | None) -> int:
    """`train.workers` / `eval.workers`: None means one worker per core."""
    return available_cores() if workers is None else workers


class _Chunks(Dataset):
    """Item i is the whole batch of the i-th chunk of indices (decoded in a worker)."""

    def __init__(self, split: Split, chunks: Sequence[torch.Tensor]):
        self.split, self.chunks = split, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> Batch:
        batch = self.split.batch(self.chunks[i])
        return Batch(_packed(batch.x), batch.y, _packed(batch.mask), batch.index)


class _Bytes:
    """A float tensor whose values are all k/255 (decoded pixels, 0/1 masks), sent as its bytes k:
    a quarter of the shared memory the float tensor would take between processes."""

    def __init__(self, codes: torch.Tensor):
        self.codes = codes

    def unpacked(self) -> torch.Tensor:
        return self.codes.float().div_(255.0)  # the very operation decoders use: bit-identical


def _packed(t: torch.Tensor) -> Any:
    if t.dtype != torch.float32:
        return t
    codes = t.mul(255.0).round_()
    if codes.min() < 0 or codes.max() > 255:
        return t
    packed = _Bytes(codes.to(torch.uint8))
    return packed if torch.equal(packed.unpacked(), t) else t


def _unpacked(batch: Batch) -> Batch:
    """The Batch of the split, whatever travelled between processes."""
    x, mask = (t.unpacked() if isinstance(t, _Bytes) else t for t in (batch.x, batch.mask))
    return Batch(x, batch.y, mask, batch.index)


def _as_is(item: Any) -> Any:
    """The collate function: each item already is a whole Batch."""
    return item


def load_batches(split: Split, order: torch.Tensor, batch_size: int, *, first_batch: int = 0, workers: int = 0,
                 pin_memory: bool = False, world: World | None = None) -> Iterator[Batch]:
    """The batches of `order` from batch number `first_batch` on (this rank's slice of each when
    `world` has several ranks), decoded by `workers` processes (0, an in-memory split, or a
    platform without fork: here, one after the other)."""
    world = world or World()
    chunks = [world.shard(order[s:s + batch_size]) for s in range(first_batch * batch_size, len(order), batch_size)]
    if workers <= 0 or isinstance(split, TensorSplit) or len(chunks) < 2 or not _can_fork():
        yield from (split.batch(chunk) for chunk in chunks)
        return
    loader = DataLoader(_Chunks(split, chunks), batch_size=None, shuffle=False, num_workers=min(workers, len(chunks)),
                        collate_fn=_as_is, prefetch_factor=2,
                        multiprocessing_context="fork")
    for batch in loader:
        batch = _unpacked(batch)
        yield batch.pin_memory() if pin_memory and torch.cuda.is_available() else batch


def _can_fork() -> bool:
    """Workers are forked: the split (file lists, mask functions) is shared without pickling."""
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()
