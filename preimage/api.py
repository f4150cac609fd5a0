"""The one-call functions of ``import preimage``: reconstruct images with a trained decoder or by optimisation.

Both take the images themselves (files, or batches in any layout docs/python.md lists) and compute the
representation exactly as a store would, so what comes back is what the command line writes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .pipeline.checks import ImageInputError, as_tensor, unbatched
from .pipeline.contract import DRAFT_MIN_SIDE
from .pipeline.decode import read_images
from .pipeline.features.extractor import as_rgb_batch
from .pipeline.images import center_square, to_float
from .train.inversion.invert import invert_arrays
from .train.inversion.optimize import Inversion, OptimizeConfig, differentiable_target, with_defaults
from .train.inversion.optimize import optimize as _optimize
from .train.models.locate import locate

Images = str | os.PathLike | Sequence[str | os.PathLike] | torch.Tensor | np.ndarray


def _uint8_images(images: Images, name: str) -> list[np.ndarray]:
    """Image files, or a batch (float in [0, 1] or uint8; (N, 3, H, W), (N, H, W, 3) or gray (N, H, W)), as
    uint8 RGB arrays (H, W, 3): the form a store's recipe starts from."""
    if isinstance(images, str | os.PathLike):
        images = [images]
    if isinstance(images, Sequence) and all(isinstance(p, str | os.PathLike) for p in images):
        return read_images([Path(p) for p in images], DRAFT_MIN_SIDE)
    x = as_tensor(images, name)
    if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] in (3, 4)):  # (H, W, 3): never gray images three pixels wide
        raise unbatched(x, name)
    if x.ndim == 3:  # gray, replicated as the store replicates gray photos
        x = x.unsqueeze(-1).expand(-1, -1, -1, 3)
    if x.dtype == torch.uint8:
        if x.ndim != 4 or 3 not in (x.shape[1], x.shape[-1]):
            raise ImageInputError(f"{name}: expected (N, 3, H, W), (N, H, W, 3) or (N, H, W), got {tuple(x.shape)}")
        x = x if x.shape[-1] == 3 else x.permute(0, 2, 3, 1)
    else:
        x = (as_rgb_batch(x, name).detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    return list(x.cpu().contiguous().numpy())


def invert(
    images: Images,
    decoder: str | os.PathLike,
    weights: str | None = None,
    *,
    models: Sequence[str] = (),
    zoos: Sequence[str | os.PathLike] = (),
) -> torch.Tensor:
    """Reconstructions (N, 3, S, S) in [0, 1] of ``images`` by the decoder of a run folder, or the one that ships
    for a representation (``decoder="alexnet:conv5"``; ``preimage zoo`` lists them): each image is
    centre-cropped and resized as the decoder's store did (S is its ``--size``), its feature computed exactly
    as there, and decoded. ``weights``: a backbone weights file, for CNN layers; ``models``: folders where the
    decoder's model from a source is now (found by its weights' hash); ``zoos``: folders of built decoders, looked up
    by name before those that ship (as the environment variable PREIMAGE_ZOO's are)."""
    located = locate(decoder, weights, zoos)
    pairs = invert_arrays(_uint8_images(images, "invert"), located, weights, models=models)
    return to_float(np.stack([recon for _, recon in pairs]))


def optimize(
    images: Images,
    feature: str,
    size: int | None = None,
    weights: str | None = None,
    device: str | torch.device | None = None,
    **settings,
) -> Inversion:
    """Mahendran & Vedaldi's inversion: pixels found by gradient descent so that their ``feature`` (``hog`` or
    a CNN layer) matches the images' own. ``settings`` are :class:`~preimage.train.inversion.optimize.OptimizeConfig`
    fields (``steps``, ``restarts``, ``lambda_tv``, ``window``, ...). Returns the pre-images
    (``.images``: N, restarts, C, S, S) with each one's relative feature error."""
    target = differentiable_target(feature, size, weights, device)
    crops = np.stack([center_square(image, target.size) for image in _uint8_images(images, "optimize")])
    prepared = target.prepare(to_float(crops))
    with torch.no_grad():
        phi0 = target.phi(prepared.to(target.device))
    return _optimize(target, phi0, with_defaults(OptimizeConfig(), **settings))
