"""Feature perturbations of the paper's robustness study (Figures 7 and 9), each keeping what it promises.

All act on a batch (N, ...) one feature vector at a time:
- ``binarize``: signs kept, every non-zero set to one magnitude chosen so the L2 norm is unchanged;
- ``dropout``: a random half of the entries zeroed, the rest scaled so the L2 norm is unchanged;
- ``drop_smallest``: the smaller half of the non-zero entries (by magnitude) zeroed, the rest untouched;
- and the two dropouts followed by binarisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EPS = 1e-12


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1)


def _restore_norm(y: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    scale = _rows(reference).norm(dim=1) / _rows(y).norm(dim=1).clamp_min(EPS)
    return y * scale.view(-1, *([1] * (y.ndim - 1)))


def binarize(x: torch.Tensor) -> torch.Tensor:
    """sign(x) times the one magnitude that keeps each vector's L2 norm: ||x|| / sqrt(number of non-zeros)."""
    return _restore_norm(torch.sign(x), x)


def dropout(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each entry with probability ``p`` and rescale the rest so each vector keeps its L2 norm."""
    keep = torch.rand(x.shape, generator=generator) >= p
    return _restore_norm(x * keep.to(x.device), x)


def drop_smallest(x: torch.Tensor, fraction: float = 0.5) -> torch.Tensor:
    """Zero the ``fraction`` of each vector's non-zero entries with the smallest magnitudes (norm not restored:
    the large activations are kept exactly)."""
    flat = _rows(x)
    magnitude = flat.abs()
    nonzero = (magnitude > 0).sum(1)
    drop = (nonzero.double() * fraction).floor().long()
    # rank the non-zeros by magnitude; zeros rank first and are already zero
    ranks = magnitude.argsort(dim=1, stable=True).argsort(dim=1, stable=True)
    zeros = flat.shape[1] - nonzero
    keep = ranks >= (zeros + drop).unsqueeze(1)
    return (flat * keep).view_as(x)


def _channel_axis(x: torch.Tensor, channels_last: bool) -> int:
    return x.ndim - 1 if channels_last or x.ndim == 2 else 1


def keep_channels(x: torch.Tensor, start: float, stop: float, channels_last: bool = False) -> torch.Tensor:
    """Zero every channel outside the fraction ``[start, stop)`` of them (a vector's entries for a vector); the
    channel axis is the last for hand-crafted grids (H, W, C), the first after the batch for CNN maps (C, H, W)."""
    axis = _channel_axis(x, channels_last)
    count = x.shape[axis]
    first, last = round(start * count), max(round(stop * count), round(start * count) + 1)
    keep = torch.zeros(count, dtype=x.dtype, device=x.device)
    keep[first : min(last, count)] = 1
    shape = [1] * x.ndim
    shape[axis] = count
    return x * keep.view(shape)


def keep_window(x: torch.Tensor, top: float, left: float, size: float, channels_last: bool = False) -> torch.Tensor:
    """Zero the features outside a square window of ``size`` times the map's side whose corner is at the fractions
    ``(top, left)`` of it: what the decoder makes of one region's features alone. Spatial maps only."""
    if x.ndim != 4:
        raise ValueError(f"a window needs spatial features (N, H, W, C) or (N, C, H, W); got {tuple(x.shape)}")
    h, w = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    rows = slice(round(top * h), max(round((top + size) * h), round(top * h) + 1))
    cols = slice(round(left * w), max(round((left + size) * w), round(left * w) + 1))
    mask = torch.zeros(h, w, dtype=x.dtype, device=x.device)
    mask[rows, cols] = 1
    return x * (mask.view(1, h, w, 1) if channels_last else mask.view(1, 1, h, w))


PERTURBATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "none": lambda x, g: x,
    "binarize": lambda x, g: binarize(x),
    "dropout50": lambda x, g: dropout(x, 0.5, g),
    "drop-smallest50": lambda x, g: drop_smallest(x, 0.5),
    "dropout50+binarize": lambda x, g: binarize(dropout(x, 0.5, g)),
    "drop-smallest50+binarize": lambda x, g: binarize(drop_smallest(x, 0.5)),
}


def perturb(name: str, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The perturbation called ``name`` (see :data:`PERTURBATIONS`) of a batch, seeded."""
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[name](x, torch.Generator().manual_seed(seed))
