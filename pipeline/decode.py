"""Reading any image file into RGB uint8, or a clear reason why it cannot be read.

Conversions, applied in this order (they are recorded in every store as ``DECODE_RECIPE``):
EXIF orientation is applied; 16-bit samples become 8-bit as ``v / 257`` rounded, in every channel layout;
palette images are expanded; alpha (RGBA, LA, palette transparency) is composited onto white; CMYK and YCbCr
become RGB through Pillow; grayscale is replicated to three channels.

Decoding is bounded before it starts: the header's dimensions are read first, and an image whose decoded size
would exceed ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`) or whose shorter side is under :data:`MIN_SIDE`
is refused with the reason, so one hostile file (a 429-byte PNG that declares 30000 x 30000) cannot exhaust a
worker. JPEGs much larger than needed are decoded at a reduced scale by libjpeg (``draft``), and the bound
applies to that reduced size. Decoding takes at most about 16 bytes per pixel, 1 GB at the default bound.
"""

from __future__ import annotations

import errno
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000: above every common camera; about 1 GB to decode
MIN_SIDE = 16  # pixels on the shorter side: below it a centre crop is upscaled from almost nothing
BYTES_PER_PIXEL = 16  # what decoding one pixel may take at its peak (16-bit RGBA with its conversions)
DECODE_RECIPE = {
    "decoder": "Pillow",
    "exif_orientation": "applied",
    "16_bit": "rounded v / 257 to 8 bits",
    "bounds": f"shorter side at least {MIN_SIDE}; larger than --max-pixels when decoded: refused",
    "alpha": "composited onto white",
    "palette, CMYK, YCbCr": "converted to RGB by Pillow",
    "grayscale": "replicated to R, G, B",
    "large_jpeg": "decoded by libjpeg at the largest 1/2^k scale still at least the target size",
}
_OPEN_LOCK = threading.Lock()  # Image.MAX_IMAGE_PIXELS is global: set and restored under a lock


class ImageReadError(Exception):
    """A file that is not a readable image; the message says why, for the store's ``failures``."""


def read_image(path: str | os.PathLike, min_side: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode the image at ``path`` to RGB uint8 (H, W, 3); ``min_side`` lets big JPEGs decode at a smaller scale;
    an image of more than ``max_pixels`` when decoded is refused before it is decoded."""
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
            return _to_rgb(image, path, min_side, max_pixels)
    except UnidentifiedImageError:
        raise ImageReadError("not an image (no decoder recognises its contents)") from None
    except ImageReadError:
        raise
    except OSError as err:
        raise ImageReadError(f"corrupt or truncated image data: {err}") from None
    except (ValueError, SyntaxError, EOFError, MemoryError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"cannot decode: {type(err).__name__}: {err}") from None


def read_images(
    paths: Sequence[str | os.PathLike], min_side: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[np.ndarray]:
    """:func:`read_image` of each path, for commands given files by the user: the error names the file."""
    images = []
    for path in paths:
        try:
            images.append(read_image(path, min_side, max_pixels))
        except ImageReadError as err:
            raise ImageReadError(f"{path}: {err}") from None
    return images


def _os_reason(err: OSError) -> str:

    if err.errno == errno.ELOOP:
        return "symbolic link loop"
    if err.errno == errno.ENOENT:
        return "file not found (or a dangling symbolic link)"
    if err.errno == errno.EACCES:
        return "permission denied"
    return f"cannot read: {err.strerror or err}"


def check_dimensions(width: int, height: int, what: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse, before decoding, an image too small to crop or too large to decode within the bound."""
    if width < 1 or height < 1:
        raise ImageReadError(f"image has no pixels ({width}x{height})")
    if min(width, height) < MIN_SIDE:
        raise ImageReadError(f"{what} is too small: {width}x{height} pixels, at least {MIN_SIDE} on each side")
    if width * height > max_pixels:
        raise ImageReadError(
            f"{what} is too large: {width}x{height} = {width * height:,} pixels when decoded, over the bound of "
            f"{max_pixels:,} (--max-pixels; about {BYTES_PER_PIXEL} bytes a pixel to decode)"
        )


def _to_rgb(image: Image.Image, path: Path, min_side: int, max_pixels: int) -> np.ndarray:
    """Apply the documented conversions to an opened Pillow image, within the bounds."""
    width, height = image.size
    if image.format == "JPEG" and min_side > 0 and min(width, height) >= MIN_SIDE:
        image.draft("RGB", _draft_size(width, height, min_side))
    what = f"{image.format} image"
    if image.size != (width, height):
        what += f" ({width}x{height} on file, decoded at a reduced scale)"
    check_dimensions(*image.size, what, max_pixels)
    if _sixteen_bit_colour(image):
        return _sixteen_bit_rgb(path, image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. Pillow's notes on palette transparency
        image.load()
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image)
        if mode.startswith("I;16") or values.max(initial=0) > 255:
            gray = _from_16_bit(values)
        else:
            gray = np.clip(values, 0, 255).astype(np.uint8)
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


def _from_16_bit(values: np.ndarray) -> np.ndarray:
    """16-bit samples as 8-bit, ``v / 257`` rounded, in integers (4 bytes a sample, not float64's 8)."""
    wide = np.clip(values, 0, 65535).astype(np.uint32)
    return ((wide * 2 + 257) // 514).astype(np.uint8)


def _sixteen_bit_colour(image: Image.Image) -> bool:
    """A 16-bit colour image, which Pillow would truncate to its high byte (its tile reads 'RGB;16B' and such)."""
    if image.mode not in ("RGB", "RGBA", "LA"):
        return False
    return any(";16" in str(tile.args if isinstance(tile.args, str) else tile.args[0]) for tile in image.tile or [])


_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _sixteen_bit_rgb(path: Path, image: Image.Image) -> np.ndarray:
    """A 16-bit colour image read at full depth by OpenCV, oriented as EXIF says, alpha composited onto white, and
    scaled by ``v / 257`` rounded, as 16-bit gray images are."""
    import cv2

    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if values is None or values.dtype != np.uint16 or values.shape[:2] != image.size[::-1]:
        raise ImageReadError("corrupt or truncated 16-bit image data")
    if values.ndim == 2:
        values = values[..., None]
    if values.shape[-1] >= 3:
        values = values[..., [2, 1, 0, *range(3, values.shape[-1])]]  # BGR(A) -> RGB(A)
    if values.shape[-1] in (2, 4):  # composite onto white, in 16 bits
        alpha = values[..., -1:].astype(np.float32) / 65535.0
        values = np.rint(values[..., :-1] * alpha + 65535.0 * (1.0 - alpha)).astype(np.uint16)
    rgb = _from_16_bit(values)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    method = _ORIENTATION.get(image.getexif().get(0x0112, 1))
    if method is not None:
        rgb = np.asarray(Image.fromarray(rgb).transpose(method))
    return np.ascontiguousarray(rgb)


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
