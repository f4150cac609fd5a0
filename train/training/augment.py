"""Training-time augmentation: new images made from the stored ones, their features computed afresh.

A decoder learns E[x | phi] from a few thousand photos and soon learns those photos: on the shared photos a
HOG decoder trained longer reaches 0.35 on its training rows and stays at 0.38 on held-out ones. Mirrored and
re-cropped images are new pairs (image, feature) of the same kind: the feature is computed from the augmented
image by the very extractor that filled the store (same function, same uint8 input convention), so it is
exactly what the store would hold for such a photo. That is possible for the features computed from the
stored image itself (HOG, LBP, SIFT); CNN layers see a larger crop of the source than the store keeps.
"""

from __future__ import annotations

import cv2
import numpy as np

from ...pipeline.contract import FeatureJob, compute_features

AUGMENTS = ("none", "flip", "crop")
MIN_CROP = 0.7  # crops keep 70-100% of the side


def check_augment(mode: str) -> None:
    """Raise a clear error unless ``mode`` is one of :data:`AUGMENTS`."""
    if mode not in AUGMENTS:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENTS)}, got {mode!r}")


def augment_images(images: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB images (N, S, S, 3) -> new ones of the same size: ``flip`` mirrors half of them; ``crop`` also
    takes a random square of 70-100% of the side at a random place and resizes it back (bicubic, as the store's
    recipe enlarges)."""
    check_augment(mode)
    if mode == "none":
        return images
    n, size = len(images), images.shape[1]
    mirror = rng.random(n) < 0.5
    out = np.where(mirror[:, None, None, None], images[:, :, ::-1], images)
    if mode == "crop":
        sides = np.round(rng.uniform(MIN_CROP, 1.0, n) * size).astype(int)
        corners = rng.random((n, 2))
        for i, side in enumerate(sides):
            top, left = (corners[i] * (size - side + 1)).astype(int)
            if side < size:
                crop = out[i, top : top + side, left : left + side]
                out[i] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(out)


def recompute(job: FeatureJob, images: np.ndarray) -> np.ndarray:
    """The feature of uint8 RGB images, computed as the store computed it (rows in the store's layout)."""
    return compute_features([job], {job.input_size: images})[job.name]


def augmentable(job: FeatureJob, image_size: int) -> None:
    """Raise a clear error unless ``job``'s feature is computed from the stored image itself."""
    if job.backbone is not None or job.input_size != image_size:
        raise ValueError(
            f"augmentation computes {job.name} afresh from the stored {image_size}x{image_size} images, but "
            f"{job.name} is computed from {job.input_size}x{job.input_size} crops of the source photo; "
            "augmentation serves the features of the stored image (hog, lbp, sift)"
        )
