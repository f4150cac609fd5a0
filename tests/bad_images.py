"""A folder of every kind of awkward input the pipeline must survive, built from a real photo."""

from __future__ import annotations

import io
import os
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
    "ok/one_pixel.png": "read",
    "ok/huge.jpg": "read",
    "bad/truncated.jpg": "truncated",
    "bad/empty.jpg": "empty file",
    "bad/Thumbs.db": "not an image",
    "bad/notes.txt": "not an image",
    "bad/self_loop.jpg": "symbolic link loop",
    "bad/dangling.jpg": "not found",
}
NON_UTF8_NAME = b"ok/caf\xe9.jpg"  # Latin-1 bytes: not valid UTF-8


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **kwargs)
    return buffer.getvalue()


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
    Image.fromarray(photo[:1, :1]).save(root / "ok/one_pixel.png")
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
