"""torch.distributed helpers: one code path for a single process and for ``torchrun`` (DDP).

``torchrun --nproc_per_node=N -m signclip.cli train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK;
:func:`init_distributed` reads them and starts a process group (NCCL on GPU, gloo on CPU). Without
them everything is a no-op and the process is rank 0 of a world of 1.
"""
from __future__ import annotations

import atexit
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistEnv:
    """Where this process sits: rank among world_size processes, local_rank on its node, device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` -> this process's GPU (``cuda:LOCAL_RANK`` under torchrun) when there is one, else CPU."""
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init_distributed(device: str = "auto", timeout_s: float = 1800) -> DistEnv:
    """Start the process group when launched by torchrun (idempotent); return this process's place."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if env_world_size() > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        atexit.register(cleanup)
    return DistEnv(get_rank(), get_world_size(), local_rank, dev)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_initialized() and get_world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    """Tear down the process group if this process started one."""
    if is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank."""
    if not is_initialized() or get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not is_initialized() or get_world_size() == 1:
        return [obj]
    out: list = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradients of every rank's loss w.r.t. this rank's slice.

    Forward: every rank's (B, ...) tensor -> (world*B, ...), this rank's own tensor put back in its
    slot. Backward: all-reduce(sum) of the incoming gradient, then this rank's slice. Every rank
    computes the loss over the whole gathered batch, so after DDP averages parameter gradients over
    ranks they equal the single-process gradient of the global-batch loss (open_clip's
    ``gather_with_grad=True`` semantics, without its 1/world factor of the local-only variant).
    """

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
        parts[rank] = t
        ctx.rank, ctx.b = rank, t.shape[0]
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.b: (ctx.rank + 1) * ctx.b]


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """(B, ...) per rank -> (world*B, ...) in rank order, gradients flowing back to each rank's part.

    Every rank must pass the same B (training splits each global batch into equal parts). Integer
    tensors (text ids) are gathered without gradient. In a single process this is the identity."""
    if not is_initialized() or get_world_size() == 1:
        return t
    if not t.requires_grad:
        parts = [torch.empty_like(t) for _ in range(get_world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, 0)
    return _GatherWithGrad.apply(t)
