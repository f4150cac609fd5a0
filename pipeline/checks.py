"""Validation of image batches handed to extractors: wrong input is a clear error, never silent garbage.

The accepted channel layouts are listed once, in docs/python.md ("Channel layouts").
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .images import rgb_to_gray


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
        return math.isfinite(x.detach().sum(dtype=torch.float64))
    return bool(torch.isfinite(x).all())


def unbatched(x: torch.Tensor, name: str) -> ImageInputError:
    """The error for one image given where a batch is wanted: colour (H, W, 3 or 4) or gray (H, W)."""
    if x.ndim == 3:
        return ImageInputError(
            f"{name}: got shape {tuple(x.shape)}, which looks like one colour image (H, W, {x.shape[-1]}); pass a "
            f"batch: images[None] (N, H, W, 3), or (N, 3, H, W), or gray (N, H, W)"
        )
    return ImageInputError(
        f"{name}: expected a batch (N, H, W), got one image of shape {tuple(x.shape)}; pass images[None]"
    )


def check_gray_batch(images: torch.Tensor | np.ndarray, name: str, min_height: int, min_width: int) -> torch.Tensor:
    """Check a float batch for a gray representation and return it as gray (N, H, W) in [0, 1]: gray batches as
    they are, colour batches (N, 3, H, W) or (N, H, W, 3) through MATLAB's ``rgb2gray`` weights, as the store
    does (docs/python.md, "Channel layouts")."""
    x = as_tensor(images, name)
    if x.ndim == 4:
        x = _colour_to_gray(x, name)
    elif x.ndim == 3 and x.shape[-1] in (3, 4) and x.shape[0] >= min_height and x.shape[1] >= min_width:
        raise unbatched(x, name)
    if x.ndim == 2:
        raise unbatched(x, name)
    if x.ndim != 3:
        raise ImageInputError(
            f"{name}: expected a batch of gray (N, H, W) or colour (N, 3, H, W) / (N, H, W, 3) images, got shape "
            f"{tuple(x.shape)}"
        )
    _check_float(x, name)
    _, h, w = x.shape
    if x.numel() == 0:
        raise ImageInputError(f"{name}: empty batch of shape {tuple(x.shape)}")
    if h < min_height or w < min_width:
        raise ImageInputError(
            f"{name}: images of {h}x{w} pixels are too small; at least {min_height}x{min_width} are needed"
        )
    if not all_finite(x):
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten().tolist()
        raise ImageInputError(f"{name}: images {bad[:10]} contain NaN or infinite pixels")
    return x


def _colour_to_gray(x: torch.Tensor, name: str) -> torch.Tensor:
    """A colour batch, channels first or last, as gray (N, H, W); a clear error for anything else in 4-D."""

    channels_first, channels_last = x.shape[1], x.shape[-1]
    if 4 in (channels_first, channels_last) and 3 not in (channels_first, channels_last):
        raise ImageInputError(
            f"{name}: got 4 channels in shape {tuple(x.shape)} (RGBA?); composite the alpha or drop it first: "
            "images[..., :3] or images[:, :3]"
        )
    if 3 not in (channels_first, channels_last):
        raise ImageInputError(
            f"{name}: expected colour images (N, 3, H, W) or (N, H, W, 3), or gray (N, H, W); got shape "
            f"{tuple(x.shape)}"
        )
    _check_float(x, name)
    return rgb_to_gray(x.movedim(1, -1) if channels_first == 3 else x)


def _check_float(x: torch.Tensor, name: str) -> None:
    if not x.is_floating_point():
        raise ImageInputError(
            f"{name}: expected floating-point pixels in [0, 1], got dtype {x.dtype}; "
            "for uint8 images use images.float() / 255"
        )
