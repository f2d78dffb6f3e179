"""Several processes, one training: `torchrun --nproc_per_node=N -m benchmark run ...`.

torchrun starts one process per GPU (or per CPU slot with gloo) and sets RANK, WORLD_SIZE and the
rendezvous address; `World.from_env` joins that group. Training is PyTorch's
DistributedDataParallel: every rank trains on its slice of each global batch (`train.batch_size`
is the global batch, so a run's config and key do not depend on how many processes train it),
gradients are averaged by DDP's all-reduce, and only rank 0 writes checkpoints and results.
Evaluation is shared out too: each suite's independent pieces (an attack setting, an explainer, an
eval set) go round robin to the ranks and their rows are gathered on rank 0, which writes them.

Methods whose loss depends on the whole batch (H-SPLID's closed-form statistics and centres, its
HSIC terms) gather what they need with `World.gather`, which is differentiable: the gradient
of a gathered tensor is summed over the ranks and handed back to the rank that produced it. A
method that computes its loss on the gathered global batch returns `StepOutput(scope="global")`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class World:
    """This process's place among the processes training one run (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> "World":
        """The torchrun group this process belongs to (joined on first use), or a world of one."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            if device.type == "cuda":  # NCCL's object collectives use the current device
                torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local_rank)

    def shard(self, indices: Tensor) -> Tensor:
        """This rank's contiguous slice of a global batch (sizes differ by at most one)."""
        if self.size == 1:
            return indices
        return torch.tensor_split(indices, self.size)[self.rank]

    def sum(self, tensor: Tensor) -> Tensor:
        """The element-wise sum over the ranks (not differentiable)."""
        if self.size == 1:
            return tensor
        out = tensor.detach().clone()
        dist.all_reduce(out)
        return out

    def total(self, value: float) -> float:
        return float(self.sum(torch.tensor([value], dtype=torch.float64))[0]) if self.size > 1 else value

    def sizes(self, n: int) -> list[int]:
        """Every rank's count, given this rank's."""
        if self.size == 1:
            return [n]
        return [int(s) for s in self.sum(torch.nn.functional.one_hot(torch.tensor(self.rank), self.size) * n)]

    def span(self, n: int) -> tuple[int, int]:
        """Where this rank's `n` rows sit in a `gather` of every rank's rows."""
        sizes = self.sizes(n)
        start = sum(sizes[:self.rank])
        return start, start + n

    def gather(self, tensor: Tensor) -> Tensor:
        """Every rank's tensor concatenated along dim 0 in rank order (sizes may differ),
        differentiable with respect to this rank's part."""
        if self.size == 1:
            return tensor
        return _Gather.apply(tensor, self)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def share(self, obj: Any) -> list[Any]:
        """Every rank's picklable `obj`, in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def decide(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (what only rank 0 can know, e.g. what its files hold)."""
        if self.size == 1:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mine(self, count: int) -> list[int]:
        """The positions of `count` independent pieces of work this rank does (round robin)."""
        return list(range(self.rank, count, self.size))


def leave() -> None:
    """Leave the torchrun group this process joined, if any, once every rank has come to leave it
    and while the interpreter is still whole: a rank that tears its connections down while another
    still uses the group, or leaves them to interpreter shutdown, can abort in gloo's threads
    (SIGABRT, "terminate called without an active exception") after its work is done."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


class _Gather(torch.autograd.Function):
    """all_gather forward; backward sums the gradient over the ranks and keeps this rank's rows
    (an all-reduce, which every backend has, instead of a reduce-scatter, which gloo lacks)."""

    @staticmethod
    def forward(ctx, tensor: Tensor, world: World) -> Tensor:  # type: ignore[override]
        sizes = world.sizes(len(tensor))
        longest = max(sizes)
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[:len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in range(world.size)]
        dist.all_gather(parts, padded.contiguous())
        ctx.world, ctx.sizes = world, sizes
        return torch.cat([part[:n] for part, n in zip(parts, ctx.sizes)])

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        start = sum(ctx.sizes[:ctx.world.rank])
        return total[start:start + ctx.sizes[ctx.world.rank]], None
