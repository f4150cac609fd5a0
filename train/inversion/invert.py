"""Reconstruct new images with a trained decoder (or a HOGgles dictionary): the feature is computed exactly as the
store computed it."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from ...pipeline.contract import DRAFT_MIN_SIDE, FeatureJob, compute_features
from ...pipeline.decode import read_images
from ...pipeline.features import get_representation
from ...pipeline.identity import IdentityError
from ...pipeline.images import center_square, to_float
from ...pipeline.lookup import find_model
from ...pipeline.names import layer_of
from ..models.locate import Located, locate
from ..scoring.metrics import upsample_to
from .inverters import load_inverter

BATCH = 64  # images per forward pass: bounds the memory a long list of photos needs


def decoder_job(
    run: str | os.PathLike | Located,
    weights: str | None = None,
    feature: str | None = None,
    hashes: dict[str, str | None] | None = None,
    *,
    models: Sequence[str] = (),
) -> tuple[FeatureJob, int, str]:
    """The feature job a decoder (a run, a checkpoint, a shipped name or a HOGgles dictionary) was trained on,
    the stored image size, and the stored dtype. A model from a source is found where the user says it is
    (``models``: folders, ``--model``; ``feature``: ``hf:FOLDER:LAYER``, the same layer), by its weights' hash
    (``identity.find_model``; ``hashes``: those already computed, shared by several decoders)."""
    located = locate(run)
    trained = located.identity
    if located.model is not None:  # the name it was found by said where its model is
        models = [located.model, *models]
    if feature is not None and trained.from_source:
        rep = get_representation(feature)
        if rep.layers != trained.layers:
            raise IdentityError(f"{feature}: the decoder inverts layer {trained.layer}, not {layer_of(rep.name)}")
        models = [rep.backbone, *models]
    here = find_model(trained, models, weights, hashes)
    return FeatureJob.from_attrs(dict(here.attrs), weights), here.image_size, here.dtype


def invert_images(
    paths: list[str | os.PathLike],
    run: str | os.PathLike | Located,
    weights: str | None = None,
    feature: str | None = None,
    *,
    models: Sequence[str] = (),
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(original crop, reconstruction) as uint8 RGB at the stored image size, for each image file."""
    return invert_arrays(read_images(paths, DRAFT_MIN_SIDE), run, weights, feature, models=models)


def invert_arrays(
    images: list[np.ndarray],
    run: str | os.PathLike | Located,
    weights: str | None = None,
    feature: str | None = None,
    *,
    models: Sequence[str] = (),
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(original crop, reconstruction) as uint8 RGB at the stored image size, for each uint8 RGB image
    (H, W, 3) of any size: centre-cropped and resized, its feature computed, exactly as the store did
    (``feature``, ``models``: where the decoder's model is here, :func:`decoder_job`)."""
    crops, recon = reconstruct_arrays(images, run, weights, feature, models=models)
    pictures = (upsample_to(recon, crops.shape[1]).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return list(zip(crops, pictures, strict=True))


def reconstruct_arrays(
    images: list[np.ndarray],
    run: str | os.PathLike | Located,
    weights: str | None = None,
    feature: str | None = None,
    *,
    models: Sequence[str] = (),
) -> tuple[np.ndarray, torch.Tensor]:
    """The stored-size crops (N, S, S, 3) uint8 of uint8 RGB images of any size, and their reconstructions
    (N, 3, T, T) in [0, 1] at the decoder's size: each crop's feature computed exactly as the store did, so these
    score as the store's rows would."""
    return reconstruct_each(images, [run], weights, [feature], models=models)[0]


@torch.no_grad()
def reconstruct_each(
    images: list[np.ndarray],
    runs: list[str | os.PathLike | Located],
    weights: str | None = None,
    features: list[str | None] | None = None,
    *,
    models: Sequence[str] = (),
) -> list[tuple[np.ndarray, torch.Tensor]]:
    """:func:`reconstruct_arrays` for several decoders at once: each feature computed once for all the decoders
    that take it, and one forward pass per model for all of its layers (a pixel and a perceptual decoder of a
    layer, every layer of a network); ``features[i]`` says where run i's model is here, as ``models`` does for all
    (:func:`decoder_job`)."""
    features = features or [None] * len(runs)
    located = [locate(run, weights) for run in runs]  # one header read for the job and the model
    hashes: dict[str, str | None] = {}  # each model's weights hashed once, however many decoders invert it
    pairs = zip(located, features, strict=True)
    jobs = [decoder_job(where, weights, feature, hashes, models=models) for where, feature in pairs]
    inverters = [load_inverter(where) for where in located]
    distinct: dict[str, FeatureJob] = {}
    for job, _, _ in jobs:
        if distinct.setdefault(job.name, job) != job:
            raise ValueError(f"two decoders take {job.name} computed differently; reconstruct with each alone")
    takes_features = {job.name for (job, _, _), model in zip(jobs, inverters, strict=True) if model.takes != "images"}
    wanted = [distinct[name] for name in sorted(takes_features)]
    sizes = {job.input_size for job, _, _ in jobs} | {size for _, size, _ in jobs}
    crops: dict[int, list[np.ndarray]] = {size: [] for _, size, _ in jobs}
    recon: list[list[torch.Tensor]] = [[] for _ in runs]
    for start in range(0, len(images), BATCH):
        part = images[start : start + BATCH]
        sized = {size: np.stack([center_square(im, size) for im in part]) for size in sizes}
        computed = compute_features(wanted, sized) if wanted else {}
        for size in crops:
            crops[size].append(sized[size])
        for (job, image_size, dtype), model, out in zip(jobs, inverters, recon, strict=True):
            if model.takes == "images":  # an autoencoder run: its encoder computes the feature
                inputs = to_float(sized[image_size])
            else:  # rounded to the stored dtype, as the store holds it
                inputs = torch.from_numpy(computed[job.name].astype(dtype)).float()
            out.append(model(inputs).clamp(0, 1).expand(-1, 3, -1, -1))  # HOGgles: gray, shown as it is
    whole = {size: np.concatenate(parts) for size, parts in crops.items()}
    return [(whole[size], torch.cat(out)) for (_, size, _), out in zip(jobs, recon, strict=True)]
