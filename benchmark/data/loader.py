"""Batches decoded in worker processes: file-backed splits (ImageNet, IN-9, CounterAnimal, any
map-style plugin split) at the speed the accelerator consumes them.

The engine still decides the order: the batches of `order` are handed out in that order, each
decoded whole by one worker (workers take turns, so `workers` batches decode at once) and
prefetched two per worker; they are converted to float on the device they go to. Only the
decoding moves: the same batches come back, in the same order, and the seeded augmentation runs
afterwards as before, so results and resume are unchanged. In-memory splits (TensorSplit) keep
their fast path in this process.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from benchmark.data.device_decode import EncodedBatch
from benchmark.data.split import Batch, Split, StoredBatch, TensorSplit, shuffled
from benchmark.distributed import World


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | None) -> int:
    """`train.workers` / `eval.workers`: None means one worker per core, the cores shared among
    the ranks torchrun started on this machine."""
    if workers is not None:
        return workers
    return max(1, available_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


class _Chunks(Dataset):
    """Item i is the whole batch of the i-th chunk of indices, decoded in a worker: as stored
    (uint8) where the split offers it, so the worker does no float work and sends a quarter of
    the bytes; `on_device` converts it where it goes, with the very operations `batch` uses."""

    def __init__(self, split: Split, chunks: Sequence[torch.Tensor], decoder: str = "pil"):
        self.split, self.chunks = split, chunks
        self.stored = getattr(split, "stored", None)
        self.encoded = getattr(split, "encoded", None) if decoder == "device" else None

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> Batch | StoredBatch | EncodedBatch:
        if self.encoded:
            return self.encoded(self.chunks[i])
        return self.stored(self.chunks[i]) if self.stored else self.split.batch(self.chunks[i])


def _as_is(item: Any) -> Any:
    """The collate function: each item already is a whole Batch."""
    return item


def resolve_decoder(decoder: str, device: torch.device | str) -> str:
    """`train.decoder` / `eval.decoder`: "auto" decodes JPEGs on a CUDA device, with PIL elsewhere."""
    if decoder == "auto":
        return "device" if torch.device(device).type == "cuda" else "pil"
    return decoder


def load_batches(split: Split, order: torch.Tensor, batch_size: int, *,  # noqa: PLR0913 (keyword options)
                 first_batch: int = 0, workers: int = 0, device: torch.device | str = "cpu",
                 world: World | None = None, decoder: str = "pil") -> Iterator[Batch]:
    """The batches of `order` from batch number `first_batch` on (this rank's slice of each when
    `world` has several ranks), decoded by `workers` processes (0, an in-memory split, or a
    platform without fork: here, one after the other) and delivered on `device`. A split that
    stores uint8 batches is copied as stored (pinned first for a GPU) and converted to float on
    the device: the training process does no per-pixel work for an accelerator. With `decoder`
    "device", a file-backed split's JPEGs travel as bytes and are decoded on `device`
    (data/device_decode.py)."""
    world, device = world or World(), torch.device(device)
    chunks = _Chunks(split, [world.shard(order[s:s + batch_size])
                             for s in range(first_batch * batch_size, len(order), batch_size)],
                     resolve_decoder(decoder, device))
    if workers <= 0 or isinstance(split, TensorSplit) or len(chunks) < 2 or not _can_fork():
        items: Iterable[Batch | StoredBatch | EncodedBatch] = (chunks[i] for i in range(len(chunks)))
    else:
        items = DataLoader(chunks, batch_size=None, shuffle=False, num_workers=min(workers, len(chunks)),
                           collate_fn=_as_is, prefetch_factor=2, multiprocessing_context="fork")
    for item in items:
        yield on_device(item, device)


def on_device(item: Batch | StoredBatch | EncodedBatch, device: torch.device) -> Batch:
    """A loaded batch on `device`, decoded there if it came as stored or encoded."""
    if isinstance(item, EncodedBatch):
        return (item.pin_memory() if device.type == "cuda" else item).stored_on(device).decoded()
    if device.type == "cuda":
        item = item.pin_memory().to(device)
    elif device.type != "cpu":
        item = item.to(device)
    return item.decoded() if isinstance(item, StoredBatch) else item


def _can_fork() -> bool:
    """Workers are forked: the split (file lists, mask functions) is shared without pickling."""
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def iterate(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    indices: Tensor | None = None,
    workers: int = 0,
    device: torch.device | str = "cpu",
    decoder: str = "pil",
) -> Iterator[Batch]:
    """Batches of a split on `device`, in order or shuffled by `generator`, optionally over a subset,
    decoded by `workers` processes for file-backed splits (benchmark/data/loader.py), JPEGs on
    the device with `decoder` "device" (or "auto" on CUDA)."""
    order = torch.arange(len(split)) if indices is None else indices
    if shuffle:
        order = shuffled(order, generator)
    yield from load_batches(split, order, batch_size, workers=workers, device=device, decoder=decoder)
