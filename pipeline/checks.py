"""Validation of image batches handed to extractors: wrong input is a clear error, never silent garbage."""

from __future__ import annotations

import math

import numpy as np
import torch


class ImageInputError(ValueError):
    """An image batch an extractor cannot process, with the reason and what to do instead."""


def as_tensor(images: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """Return ``images`` as a tensor (numpy arrays are wrapped without a copy when possible)."""
    if isinstance(images, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(images))
    if isinstance(images, torch.Tensor):
        return images
    raise ImageInputError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(images).__name__}")


def all_finite(x: torch.Tensor) -> bool:
    """Whether no pixel is NaN or infinite; on CPU one float64 sum (it cannot overflow for image values)."""
    if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16, torch.float32):
        return math.isfinite(x.sum(dtype=torch.float64))
    return bool(torch.isfinite(x).all())


def check_gray_batch(images: torch.Tensor | np.ndarray, name: str, min_height: int, min_width: int) -> torch.Tensor:
    """Check a grayscale float batch (N, H, W) with values in [0, 1] and return it as a tensor."""
    x = as_tensor(images, name)
    if x.ndim == 4 and (x.shape[-1] in (3, 4) or x.shape[1] in (3, 4)):
        raise ImageInputError(
            f"{name}: expected grayscale images (N, H, W), got shape {tuple(x.shape)} that looks like colour; "
            "convert first with preimage.pipeline.images.rgb_to_gray"
        )
    if x.ndim == 2:
        raise ImageInputError(
            f"{name}: expected a batch (N, H, W), got one image of shape {tuple(x.shape)}; pass images[None]"
        )
    if x.ndim != 3:
        raise ImageInputError(f"{name}: expected a batch of grayscale images (N, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ImageInputError(
            f"{name}: expected floating-point pixels in [0, 1], got dtype {x.dtype}; "
            "for uint8 images use images.float() / 255"
        )
    if x.numel() == 0:
        raise ImageInputError(f"{name}: empty batch of shape {tuple(x.shape)}")
    _, h, w = x.shape
    if h < min_height or w < min_width:
        raise ImageInputError(
            f"{name}: images of {h}x{w} pixels are too small; at least {min_height}x{min_width} are needed"
        )
    if not all_finite(x):
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten().tolist()
        raise ImageInputError(f"{name}: images {bad[:10]} contain NaN or infinite pixels")
    return x
