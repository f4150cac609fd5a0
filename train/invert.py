"""Reconstruct new images with a trained decoder: the feature is computed exactly as the store computed it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..pipeline.decode import read_images
from ..pipeline.extract import DRAFT_MIN_SIDE, FeatureJob, compute_features
from ..pipeline.images import center_square, to_float
from . import checkpoint
from .metrics import upsample_to
from .trainer import CHECKPOINT, load_decoder


def decoder_job(run: str | os.PathLike, weights: str | None = None) -> tuple[FeatureJob, int, str]:
    """The feature job a decoder was trained on, the stored image size, and the stored dtype."""
    path = Path(run)
    header = checkpoint.read_header(path / CHECKPOINT if path.is_dir() else path)
    fingerprint = header["fingerprint"]
    attrs = fingerprint["feature"]
    return FeatureJob.from_attrs(attrs, weights), int(fingerprint["image_size"]), attrs["dtype"]


def invert_images(
    paths: list[str | os.PathLike], run: str | os.PathLike, weights: str | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(original crop, reconstruction) as uint8 RGB at the stored image size, for each image file."""
    return invert_arrays(read_images(paths, DRAFT_MIN_SIDE), run, weights)


@torch.no_grad()
def invert_arrays(
    images: list[np.ndarray], run: str | os.PathLike, weights: str | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(original crop, reconstruction) as uint8 RGB at the stored image size, for each uint8 RGB image
    (H, W, 3) of any size: centre-cropped and resized, its feature computed, exactly as the store did."""
    job, image_size, dtype = decoder_job(run, weights)
    model = load_decoder(run)
    crops = {size: np.stack([center_square(im, size) for im in images]) for size in {job.input_size, image_size}}
    if getattr(model, "takes", "features") == "images":  # an autoencoder run: its encoder computes the feature
        inputs = to_float(crops[image_size])
    else:
        inputs = torch.from_numpy(compute_features([job], crops)[job.name].astype(dtype)).float()  # rounded as stored
    recon = upsample_to(model(inputs), image_size).clamp(0, 1)
    pictures = (recon.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return list(zip(crops[image_size], pictures, strict=True))
