"""Data-parallel helpers: process-group set-up from ``torchrun`` variables and feature gathering.

``torchrun --nproc_per_node N`` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
:func:`init_distributed` reads them (a plain ``python`` run is a world of one and needs nothing).
The backend is NCCL on CUDA and Gloo on CPU, so the same code runs the 2-process CPU test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the data-parallel world."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> the local CUDA device when there is one, else CPU; otherwise the named device."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return device


def init_distributed(device_preference: str = "auto") -> DistributedContext:
    """Join the process group described by the torchrun environment (no-op for a single process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = resolve_device(device_preference, local_rank)
    if world_size <= 1:
        return DistributedContext(device=device)
    initialized_here = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        initialized_here = True
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        device=device,
        initialized_here=initialized_here,
    )


def shutdown_distributed(ctx: DistributedContext) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: DistributedContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_object(ctx: DistributedContext, value: T) -> T:
    """Rank 0's ``value`` on every rank (e.g. a decision taken after validation)."""
    if not ctx.enabled:
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    result: T = box[0]
    return result


def all_reduce_sum(ctx: DistributedContext, value: float) -> float:
    if not ctx.enabled:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64)
    if ctx.device.type == "cuda":
        tensor = tensor.to(ctx.device)
    dist.all_reduce(tensor)
    return float(tensor.item())


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenate a tensor from every rank; backward sums the gradients and keeps this rank's slice.

    Same semantics as ``torch.distributed.nn.functional.all_gather`` (deprecated), always on the
    current default process group.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank = dist.get_rank()
        ctx.size = tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


def gather_features(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    labels: torch.Tensor,
    *,
    rank: int,
    world_size: int,
    gather_with_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate the features (and caption ids) of all ranks, in rank order.

    With ``gather_with_grad`` the gradient flows back to the rank that produced each feature
    (the sum over ranks of the gradient w.r.t. its slice); without it the gathered copies are constants and the
    local slice is swapped back in so that at least the local features receive gradient
    (open_clip's behaviour). Every rank must pass the same batch size.
    """
    if world_size <= 1:
        return image_features, text_features, labels
    if gather_with_grad:
        all_image = _AllGatherWithGrad.apply(image_features)
        all_text = _AllGatherWithGrad.apply(text_features)
    else:
        images = [torch.zeros_like(image_features) for _ in range(world_size)]
        texts = [torch.zeros_like(text_features) for _ in range(world_size)]
        dist.all_gather(images, image_features.detach())
        dist.all_gather(texts, text_features.detach())
        images[rank] = image_features
        texts[rank] = text_features
        all_image = torch.cat(images, dim=0)
        all_text = torch.cat(texts, dim=0)
    gathered_labels = [torch.zeros_like(labels) for _ in range(world_size)]
    dist.all_gather(gathered_labels, labels)
    return all_image, all_text, torch.cat(gathered_labels, dim=0)
