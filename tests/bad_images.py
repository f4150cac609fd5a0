"""A folder of every kind of awkward input the pipeline must survive, built from a real photo."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# file name -> expected outcome: 'read' or a fragment of the failure reason
EXPECTED = {
    "ok/photo.jpg": "read",
    "ok/no_extension": "read",
    "ok/alpha.png": "read",
    "ok/palette.png": "read",
    "ok/palette_transparent.png": "read",
    "ok/sixteen_bit.png": "read",
    "ok/cmyk.jpg": "read",
    "ok/exif_rotated.jpg": "read",
    "ok/gray.jpg": "read",
    "ok/sixteen_bit_rgb.png": "read",
    "ok/sixteen_bit_rgba.png": "read",
    "ok/huge.jpg": "read",
    "bad/truncated.jpg": "truncated",
    "bad/empty.jpg": "empty file",
    "bad/Thumbs.db": "not an image",
    "bad/notes.txt": "not an image",
    "bad/self_loop.jpg": "symbolic link loop",
    "bad/dangling.jpg": "not found",
    "bad/one_pixel.png": "too small: 1x1 pixels",
    "bad/header_only_30000.png": "too large: 30000x30000",
    "bad/sixteen_bit_10000.png": "too large: 10000x10000",
}
SIXTEEN_BIT_RGB = np.array([200, 65000, 32896], np.uint16)  # v / 257 rounded: 1, 253, 128 (the high byte: 0, 253, 128)
NON_UTF8_NAME = b"ok/caf\xe9.jpg"  # Latin-1 bytes: not valid UTF-8


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **kwargs)
    return buffer.getvalue()


def header_only_png(width: int, height: int, rows: int = 4, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` but whose data holds only ``rows`` rows: a few hundred
    bytes that a decoder without a bound would expand to gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    samples = {0: 1, 2: 3, 6: 4}[colour_type] * bit_depth // 8
    data = zlib.compress(b"".join(b"\0" + bytes(width * samples) for _ in range(rows)), 9)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def build(root: Path, photo: np.ndarray) -> Path:
    """Write the folder under ``root`` from an RGB uint8 ``photo``; returns ``root``."""
    (root / "ok").mkdir(parents=True)
    (root / "bad").mkdir()
    rgb = Image.fromarray(photo)
    (root / "ok/photo.jpg").write_bytes(jpeg_bytes(rgb))
    (root / "ok/no_extension").write_bytes(jpeg_bytes(rgb))
    rgba = rgb.convert("RGBA")
    ramp = np.linspace(0, 255, photo.shape[0]).round().astype(np.uint8)  # transparent top row, opaque bottom
    rgba.putalpha(Image.fromarray(np.repeat(ramp[:, None], photo.shape[1], axis=1)))
    rgba.save(root / "ok/alpha.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(root / "ok/palette.png")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.save(root / "ok/palette_transparent.png", transparency=0)
    gray16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(root / "ok/sixteen_bit.png")
    rgb.convert("CMYK").save(root / "ok/cmyk.jpg", "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    (root / "ok/exif_rotated.jpg").write_bytes(jpeg_bytes(rgb, exif=exif))
    rgb.convert("L").save(root / "ok/gray.jpg", "JPEG", quality=90)
    Image.fromarray(photo[:1, :1]).save(root / "bad/one_pixel.png")
    import cv2

    rgb16 = np.broadcast_to(SIXTEEN_BIT_RGB, (24, 32, 3))
    cv2.imwrite(str(root / "ok/sixteen_bit_rgb.png"), np.ascontiguousarray(rgb16[..., ::-1]))
    rgba16 = np.concatenate([rgb16[..., ::-1], np.full((24, 32, 1), 65535, np.uint16)], axis=-1)
    rgba16[0, :, 3] = 0  # a transparent first row: white shows through
    cv2.imwrite(str(root / "ok/sixteen_bit_rgba.png"), rgba16)
    (root / "bad/header_only_30000.png").write_bytes(header_only_png(30000, 30000))
    (root / "bad/sixteen_bit_10000.png").write_bytes(header_only_png(10000, 10000, rows=1, bit_depth=16, colour_type=0))
    Image.new("L", (20000, 20000), 128).save(root / "ok/huge.jpg", "JPEG", quality=50)
    whole = jpeg_bytes(rgb)
    (root / "bad/truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "bad/empty.jpg").write_bytes(b"")
    (root / "bad/Thumbs.db").write_bytes(bytes(range(256)) * 8)
    (root / "bad/notes.txt").write_text("not a picture\n")
    os.symlink("self_loop.jpg", root / "bad/self_loop.jpg")
    os.symlink("missing.jpg", root / "bad/dangling.jpg")
    os.symlink("..", root / "bad/loop_dir")  # a directory loop: walked once
    with open(os.path.join(os.fsencode(root), NON_UTF8_NAME), "wb") as f:
        f.write(jpeg_bytes(rgb))
    return root
