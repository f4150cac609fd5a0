"""Reading any image file into RGB uint8, or a clear reason why it cannot be read.

Conversions, applied in this order (they are recorded in every store as ``DECODE_RECIPE``):
EXIF orientation is applied; 16-bit samples keep their high byte (rounded ``v / 257``); palette images are
expanded; alpha (RGBA, LA, palette transparency) is composited onto white; CMYK and YCbCr become RGB through
Pillow; grayscale is replicated to three channels. JPEGs much larger than needed are decoded at a reduced
scale by libjpeg (``draft``), so a 20000 x 20000 photo costs little; other formats above ``MAX_PIXELS`` are
refused rather than exhausting memory.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 1 << 30  # 1.07 G pixels (3.2 GB as RGB): larger non-JPEG images are refused
DECODE_RECIPE = {
    "decoder": "Pillow",
    "exif_orientation": "applied",
    "16_bit": "rounded v / 257 to 8 bits",
    "alpha": "composited onto white",
    "palette, CMYK, YCbCr": "converted to RGB by Pillow",
    "grayscale": "replicated to R, G, B",
    "large_jpeg": "decoded by libjpeg at the largest 1/2^k scale still at least the target size",
}
_OPEN_LOCK = threading.Lock()  # Image.MAX_IMAGE_PIXELS is global: set and restored under a lock


class ImageReadError(Exception):
    """A file that is not a readable image; the message says why, for the store's ``failures``."""


def read_image(path: str | os.PathLike, min_side: int = 0) -> np.ndarray:
    """Decode the image at ``path`` to RGB uint8 (H, W, 3); ``min_side`` lets big JPEGs decode at a smaller scale."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ImageReadError(_os_reason(err)) from None
    if not path.is_file():
        raise ImageReadError("not a regular file")
    if size == 0:
        raise ImageReadError("empty file (0 bytes)")
    try:
        with _OPEN_LOCK:
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we check the size ourselves below
            try:
                image = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = limit
        with image:
            return _to_rgb(image, min_side)
    except UnidentifiedImageError:
        raise ImageReadError("not an image (no decoder recognises its contents)") from None
    except ImageReadError:
        raise
    except OSError as err:
        raise ImageReadError(f"corrupt or truncated image data: {err}") from None
    except (ValueError, SyntaxError, EOFError, MemoryError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"cannot decode: {type(err).__name__}: {err}") from None


def read_images(paths: Sequence[str | os.PathLike], min_side: int = 0) -> list[np.ndarray]:
    """:func:`read_image` of each path, for commands given files by the user: the error names the file."""
    images = []
    for path in paths:
        try:
            images.append(read_image(path, min_side))
        except ImageReadError as err:
            raise ImageReadError(f"{path}: {err}") from None
    return images


def _os_reason(err: OSError) -> str:
    import errno

    if err.errno == errno.ELOOP:
        return "symbolic link loop"
    if err.errno == errno.ENOENT:
        return "file not found (or a dangling symbolic link)"
    if err.errno == errno.EACCES:
        return "permission denied"
    return f"cannot read: {err.strerror or err}"


def _to_rgb(image: Image.Image, min_side: int) -> np.ndarray:
    """Apply the documented conversions to an opened Pillow image."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageReadError(f"image has no pixels ({width}x{height})")
    if image.format == "JPEG" and min_side > 0:
        image.draft("RGB", _draft_size(width, height, min_side))
    elif width * height > MAX_PIXELS:
        raise ImageReadError(
            f"{width}x{height} {image.format} image is too large to decode safely (over {MAX_PIXELS:,} pixels)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. Pillow's notes on palette transparency
        image.load()
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        gray = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("1", "L"):
        image = image.convert("L")
    elif mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    if image.mode == "L":
        gray = np.asarray(image, dtype=np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def _draft_size(width: int, height: int, min_side: int) -> tuple[int, int]:
    """The size to ask ``draft`` for, so that the shorter side stays at least ``min_side`` after reduction."""
    scale = max(1.0, min(width, height) / max(min_side, 1))
    return max(1, int(width / scale)), max(1, int(height / scale))


def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """An image array from a container (HDF5) as RGB uint8 (H, W, 3): gray, RGBA, 16-bit and float in [0, 1]."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channels first
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)) or min(a.shape[:2]) < 1:
        raise ImageReadError(f"not an image array: shape {a.shape}")
    if a.dtype == np.uint8:
        out = a
    elif a.dtype == np.uint16:
        out = np.rint(a / 257.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageReadError("image array contains NaN or infinite values")
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        out = np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        out = np.clip(a, 0, 255).astype(np.uint8)
    else:
        raise ImageReadError(f"unsupported pixel type {a.dtype}")
    if out.ndim == 2:
        return np.repeat(out[..., None], 3, axis=-1)
    if out.shape[-1] == 4:
        alpha = out[..., 3:].astype(np.float32) / 255.0
        out = np.rint(out[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(out)
