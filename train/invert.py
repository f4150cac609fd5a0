"""Reconstruct new images with a trained decoder (or a HOGgles dictionary): the feature is computed exactly as the
store computed it."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..pipeline.contract import DRAFT_MIN_SIDE, FeatureJob, compute_features, model_weights_sha256
from ..pipeline.decode import read_images
from ..pipeline.identity import relocate, source_model
from ..pipeline.images import center_square, to_float
from .inverters import load_inverter
from .locate import Located, locate
from .metrics import upsample_to

BATCH = 64  # images per forward pass: bounds the memory a long list of photos needs


def decoder_job(
    run: str | os.PathLike | Located,
    weights: str | None = None,
    feature: str | None = None,
    hashes: dict[str, str | None] | None = None,
) -> tuple[FeatureJob, int, str]:
    """The feature job a decoder (a run, a checkpoint, a shipped name or a HOGgles dictionary) was trained on,
    the stored image size, and the stored dtype. ``feature`` says where the decoder's model is here (a source
    model's folder, e.g. for a shipped decoder): its weights must be those the decoder was trained on
    (``hashes``: the weights' hashes already computed, by model, shared by several decoders)."""
    fingerprint = locate(run).fingerprint
    attrs = fingerprint["feature"]
    if feature is not None and source_model((attrs.get("params") or {}).get("backbone")):
        attrs = relocated(attrs, feature, weights, hashes)
    return FeatureJob.from_attrs(attrs, weights), int(fingerprint["image_size"]), attrs["dtype"]


def relocated(
    attrs: dict, feature: str, weights: str | None = None, hashes: dict[str, str | None] | None = None
) -> dict:
    """A source model's feature attributes with the model of ``feature``, checked to be the same layer of the same
    weights (their hash, taken from ``hashes`` or computed into it) as the decoder's."""
    from ..pipeline.features import get_representation

    rep = get_representation(feature)
    trained = attrs["params"]["layer"]
    if rep.layer != trained:
        raise ValueError(f"{feature}: the decoder inverts layer {trained}, not {rep.layer}")
    hashes = {} if hashes is None else hashes
    if rep.backbone not in hashes:
        hashes[rep.backbone] = model_weights_sha256(rep.name, weights)
    sha = hashes[rep.backbone]
    if sha != attrs.get("weights_sha256"):
        raise ValueError(f"{rep.backbone}: its weights (sha256 {str(sha)[:16]}) are not those the decoder was trained "
                         f"on (sha256 {str(attrs.get('weights_sha256'))[:16]}); train a decoder on features of "
                         "this model (preimage train)")  # fmt: skip
    return relocate(attrs, rep.backbone)


def invert_images(
    paths: list[str | os.PathLike], run: str | os.PathLike, weights: str | None = None, feature: str | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(original crop, reconstruction) as uint8 RGB at the stored image size, for each image file."""
    return invert_arrays(read_images(paths, DRAFT_MIN_SIDE), run, weights, feature)


def invert_arrays(
    images: list[np.ndarray], run: str | os.PathLike, weights: str | None = None, feature: str | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(original crop, reconstruction) as uint8 RGB at the stored image size, for each uint8 RGB image
    (H, W, 3) of any size: centre-cropped and resized, its feature computed, exactly as the store did
    (``feature``: where the decoder's model is here, :func:`decoder_job`)."""
    crops, recon = reconstruct_arrays(images, run, weights, feature)
    pictures = (upsample_to(recon, crops.shape[1]).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return list(zip(crops, pictures, strict=True))


def reconstruct_arrays(
    images: list[np.ndarray], run: str | os.PathLike, weights: str | None = None, feature: str | None = None
) -> tuple[np.ndarray, torch.Tensor]:
    """The stored-size crops (N, S, S, 3) uint8 of uint8 RGB images of any size, and their reconstructions
    (N, 3, T, T) in [0, 1] at the decoder's size: each crop's feature computed exactly as the store did, so these
    score as the store's rows would."""
    return reconstruct_each(images, [run], weights, [feature])[0]


@torch.no_grad()
def reconstruct_each(
    images: list[np.ndarray],
    runs: list[str | os.PathLike],
    weights: str | None = None,
    features: list[str | None] | None = None,
) -> list[tuple[np.ndarray, torch.Tensor]]:
    """:func:`reconstruct_arrays` for several decoders at once: each feature computed once for all the decoders
    that take it, and one forward pass per model for all of its layers (a pixel and a perceptual decoder of a
    layer, every layer of a network); ``features[i]`` says where run i's model is here (:func:`decoder_job`)."""
    features = features or [None] * len(runs)
    located = [locate(run) for run in runs]  # one header read for the job and the model
    hashes: dict[str, str | None] = {}  # each model's weights hashed once, however many decoders invert it
    jobs = [decoder_job(where, weights, feature, hashes) for where, feature in zip(located, features, strict=True)]
    models = [load_inverter(where) for where in located]
    distinct: dict[str, FeatureJob] = {}
    for job, _, _ in jobs:
        if distinct.setdefault(job.name, job) != job:
            raise ValueError(f"two decoders take {job.name} computed differently; reconstruct with each alone")
    takes_features = {job.name for (job, _, _), model in zip(jobs, models, strict=True) if model.takes != "images"}
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
        for (job, image_size, dtype), model, out in zip(jobs, models, recon, strict=True):
            if model.takes == "images":  # an autoencoder run: its encoder computes the feature
                inputs = to_float(sized[image_size])
            else:  # rounded to the stored dtype, as the store holds it
                inputs = torch.from_numpy(computed[job.name].astype(dtype)).float()
            out.append(model(inputs).clamp(0, 1).expand(-1, 3, -1, -1))  # HOGgles: gray, shown as it is
    whole = {size: np.concatenate(parts) for size, parts in crops.items()}
    return [(whole[size], torch.cat(out)) for (_, size, _), out in zip(jobs, recon, strict=True)]
