"""Reconstructions along the straight line between the features of two images (the paper's Figure 10)."""

from __future__ import annotations

import torch


def blend(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """The features ``(1 - t) a + t b`` at one point ``t`` in [0, 1] of the line (exactly ``a`` at 0, ``b`` at 1)."""
    if a.shape != b.shape:
        raise ValueError(f"cannot interpolate between features of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if not 0 <= t <= 1:
        raise ValueError(f"t is a point between the two features, in [0, 1]; got {t}")
    return a if t == 0 else b if t == 1 else (1 - t) * a + t * b


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
