"""Pixel conventions shared by every extractor: RGB uint8 in, float [0, 1] out, MATLAB's gray weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# rgb2gray of MATLAB (ITU-R BT.601), as used with vl_hog / vl_lbp / vl_sift in the paper
GRAY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def rgb_to_gray(images: torch.Tensor) -> torch.Tensor:
    """Gray (N, H, W) from RGB (N, H, W, 3) or (N, 3, H, W) floats, with MATLAB's rgb2gray weights."""
    if images.ndim != 4 or 3 not in (images.shape[1], images.shape[-1]):
        raise ValueError(f"rgb_to_gray: expected RGB images (N, H, W, 3) or (N, 3, H, W), got {tuple(images.shape)}")
    w = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype, device=images.device)
    if images.shape[-1] == 3:
        return (images * w).sum(-1)
    return (images * w.view(1, 3, 1, 1)).sum(1)


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 RGB (N, H, W, 3) as float32 in [0, 1], channels first (N, 3, H, W)."""
    if images.dtype != np.uint8:
        raise ValueError(f"to_float: expected uint8 pixels, got {images.dtype}")
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images (N, 3, H, W) in [0, 1] (clipped) as uint8 RGB (N, H, W, 3): the inverse of :func:`to_float`."""
    return (images.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)


def center_square(image: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to a square and resize to ``size`` x ``size`` (area interpolation when shrinking)."""
    import cv2

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def save_rgb(path: Path, picture: np.ndarray) -> Path:
    """Write an RGB uint8 picture (PNG or JPEG by the suffix), creating the folder; an error when nothing was
    written. The one place pictures are written."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(np.ascontiguousarray(picture), cv2.COLOR_RGB2BGR)
    try:  # encoded here and written by Python: cv2.imwrite crashes on a file name that is not UTF-8
        encoded, data = cv2.imencode(path.suffix.lower() or ".png", bgr)
    except cv2.error:
        encoded = False
    if not encoded:
        raise OSError(f"could not write {path}: no picture format for {path.suffix or 'no suffix'} (use .png or .jpg)")
    path.write_bytes(data.tobytes())
    return path


def sample_photos() -> dict[str, np.ndarray]:
    """The colour photographs that ship inside scikit-image: the embedded default data set."""
    from skimage import data

    names = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "motorcycle_left")
    photos = {}
    for name in names:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        try:
            image = np.asarray(loader())
        except Exception:
            continue
        if image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8:
            photos[name] = image
    return photos
