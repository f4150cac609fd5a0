"""Sparse SIFT on a grid: keypoints and descriptors arranged as a (ceil(H/d), ceil(W/d), 133) array.

Keypoints come from VLFeat's detector with its default settings (through the ``vlsift`` wheel), as the paper
does; OpenCV's SIFT is available with ``detector="opencv"`` for comparison. A grid cell with a keypoint holds
``(f, x mod d, y mod d, sin a, cos a, log s)`` with f the unit-norm 128-d descriptor; an empty cell is zero;
when keypoints collide in a cell one is chosen at random with a seeded generator, so the result is
reproducible and independent of how images are batched.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..checks import check_gray_batch

DESCRIPTOR = 128
CHANNELS = DESCRIPTOR + 5
DETECTORS = ("vlfeat", "opencv")


@dataclass(frozen=True)
class SiftParams:
    """Grid size ``d``, detector and the seed of the choice among colliding keypoints."""

    grid: int = 4
    detector: str = "vlfeat"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"sift detector must be one of {DETECTORS}, got {self.detector!r}")
        if self.grid < 1:
            raise ValueError(f"sift grid must be a positive number of pixels, got {self.grid}")

    @property
    def channels(self) -> int:
        return CHANNELS

    @property
    def min_size(self) -> int:
        return 8

    def output_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return (math.ceil(height / self.grid), math.ceil(width / self.grid), CHANNELS)

    def as_dict(self) -> dict:
        return asdict(self)


def detect(image: np.ndarray, detector: str = "vlfeat") -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (K, 4) as (x, y, scale, angle in radians) and unit-norm descriptors (K, 128) of one image.

    ``image`` is grayscale in [0, 1]; detectors see it in [0, 255] as MATLAB's ``vl_sift(single(gray))``.
    """
    pixels = np.ascontiguousarray(image, dtype=np.float32) * 255.0
    if detector == "vlfeat":
        from vlsift.sift.sift import sift

        frames, descriptors = sift(pixels, compute_descriptor=True, float_descriptors=True)
        keypoints = frames[:, [1, 0, 2, 3]].astype(np.float32)  # VLFeat gives (y, x, s, angle)
    else:
        import cv2

        found, descriptors = cv2.SIFT_create().detectAndCompute(np.round(pixels).astype(np.uint8), None)
        # OpenCV: size is the diameter (2 sigma), angle in degrees counter-clockwise with y pointing down
        keypoints = np.array(
            [(k.pt[0], k.pt[1], k.size / 2, math.radians((360.0 - k.angle) % 360.0)) for k in found],
            dtype=np.float32,
        ).reshape(-1, 4)
        if descriptors is None:
            descriptors = np.zeros((0, DESCRIPTOR), np.float32)
    descriptors = np.asarray(descriptors, dtype=np.float32)
    norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
    return keypoints, descriptors / np.maximum(norms, 1e-12)


def encode_grid(
    keypoints: np.ndarray, descriptors: np.ndarray, height: int, width: int, params: SiftParams = SiftParams()
) -> np.ndarray:
    """Arrange keypoints on the d x d grid: returns (ceil(H/d), ceil(W/d), 133) float32 (DESIGN.md)."""
    d = params.grid
    rows, cols = params.output_shape(height, width)[:2]
    grid = np.zeros((rows, cols, CHANNELS), dtype=np.float32)
    if len(keypoints) == 0:
        return grid
    x = np.clip(keypoints[:, 0], 0.0, np.nextafter(np.float32(width), 0))
    y = np.clip(keypoints[:, 1], 0.0, np.nextafter(np.float32(height), 0))
    cell = (y // d).astype(np.int64) * cols + (x // d).astype(np.int64)
    priority = np.random.default_rng(params.seed).random(len(keypoints))
    order = np.lexsort((-priority, cell))  # by cell, highest priority first
    first = order[np.unique(cell[order], return_index=True)[1]]  # one keypoint per occupied cell
    values = np.concatenate(
        [
            descriptors[first],
            np.stack(
                [
                    np.mod(x[first], d),
                    np.mod(y[first], d),
                    np.sin(keypoints[first, 3]),
                    np.cos(keypoints[first, 3]),
                    np.log(keypoints[first, 2]),
                ],
                axis=1,
            ),
        ],
        axis=1,
    )
    grid.reshape(rows * cols, CHANNELS)[cell[first]] = values
    return grid


def sift(images: torch.Tensor | np.ndarray, params: SiftParams = SiftParams()) -> torch.Tensor:
    """Sparse SIFT grids of grayscale images (N, H, W) in [0, 1]: returns (N, ceil(H/d), ceil(W/d), 133)."""
    x = check_gray_batch(images, "sift", params.min_size, params.min_size)
    batch = x.detach().cpu().numpy()
    h, w = batch.shape[1:]
    grids = [encode_grid(*detect(image, params.detector), h, w, params) for image in batch]
    return torch.from_numpy(np.stack(grids))


class SparseSIFT(torch.nn.Module):
    """Module form of :func:`sift` holding its parameters (not differentiable: a detector decides)."""

    def __init__(self, params: SiftParams = SiftParams()) -> None:
        super().__init__()
        self.params = params

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return sift(images, self.params)

    def extra_repr(self) -> str:
        return f"grid={self.params.grid}, detector={self.params.detector!r}, seed={self.params.seed}"
