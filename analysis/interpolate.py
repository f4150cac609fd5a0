"""Reconstructions along the straight line between the features of two images (the paper's Figure 10)."""

from __future__ import annotations

import torch


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int = 8) -> torch.Tensor:
    """Features ``(1 - t) a + t b`` for ``steps`` values of t evenly from 0 to 1: (steps, *a.shape); the first
    is exactly ``a`` and the last exactly ``b``."""
    if a.shape != b.shape:
        raise ValueError(f"cannot interpolate between features of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if steps < 2:
        raise ValueError("interpolation needs at least 2 steps (the two ends)")
    t = torch.linspace(0, 1, steps, dtype=a.dtype).view(-1, *([1] * a.ndim))
    path = (1 - t) * a + t * b
    path[0], path[-1] = a, b  # exact ends, whatever the rounding
    return path
