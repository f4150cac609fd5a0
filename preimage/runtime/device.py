"""The device a job runs on, the cores it may use, and distributed set-up, each chosen in one place (torch is
imported when a device is asked for, so the commands' ``--help`` stays light)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` is the first GPU when torch has one, else the CPU; under torchrun each rank takes the GPU of its
    local rank. An explicit GPU that torch cannot see is an error."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: this torch sees no GPU; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return device


def available_cores() -> int:
    """Cores this process may run on: the local cluster's default number of worker processes."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of ranks training together ((0, 1) without torch.distributed)."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed(device: torch.device | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes (nccl on GPUs, gloo on CPUs), or run alone; returns
    (rank, world). The one place distributed training is set up."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device is not None and device.type == "cuda" else "gloo")
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
