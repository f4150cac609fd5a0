"""Timing helpers shared by the benchmark scripts (run as ``python bench/NAME.py``, so this imports as ``timing``)."""

from __future__ import annotations

import time

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that wall-clock times cover it (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def milliseconds_per_image(model: torch.nn.Module, x: torch.Tensor, repeats: int, device: torch.device) -> float:
    """Inference time of ``model`` on the batch ``x`` per image, after three warm-up passes."""
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
        synchronize(device)
    return (time.perf_counter() - start) / repeats / len(x) * 1000
