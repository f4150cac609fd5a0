"""Reading awkward image files: every readable one as RGB uint8 with the documented conversions, the rest a reason."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from preimage.pipeline.decode import ImageReadError, read_image, to_rgb_uint8

from ..bad_images import EXPECTED, NON_UTF8_NAME, SIXTEEN_BIT_RGB


@pytest.mark.parametrize("name, expected", sorted(EXPECTED.items()))
def test_each_awkward_file_is_read_or_refused_with_its_reason(bad_folder, name, expected):
    if expected == "read":
        image = read_image(bad_folder / name, min_side=256)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    else:
        with pytest.raises(ImageReadError, match=expected):
            read_image(bad_folder / name)


def test_non_utf8_file_name_is_read(bad_folder):
    path = os.path.join(os.fsencode(bad_folder), NON_UTF8_NAME)
    assert read_image(os.fsdecode(path)).shape == (100, 128, 3)


def test_exif_orientation_is_applied(bad_folder, awkward_photo):
    upright = read_image(bad_folder / "ok/exif_rotated.jpg")
    assert upright.shape == (128, 100, 3)  # rotated 90 degrees clockwise, as a viewer shows it
    rotated = np.rot90(awkward_photo, k=-1)
    assert np.abs(upright.astype(int) - rotated).mean() < 6  # JPEG noise only


def test_modes_convert_as_documented(bad_folder, awkward_photo):
    photo = awkward_photo.astype(int)
    gray = np.asarray(awkward_photo @ np.array([0.299, 0.587, 0.114]), dtype=float)
    sixteen = read_image(bad_folder / "ok/sixteen_bit.png").astype(int)
    assert np.abs(sixteen[..., 0] - np.round(gray)).max() <= 1  # high byte of v * 257 is v
    assert (sixteen[..., 0] == sixteen[..., 2]).all()
    assert np.abs(read_image(bad_folder / "ok/cmyk.jpg").astype(int) - photo).mean() < 8
    assert np.abs(read_image(bad_folder / "ok/palette.png").astype(int) - photo).mean() < 10
    alpha = read_image(bad_folder / "ok/alpha.png").astype(int)
    assert (alpha[0] == 255).all()  # alpha 0 on the first row: white shows through
    assert np.abs(alpha[-1] - photo[-1]).max() <= 2  # alpha 255 on the last: the photo


def test_sixteen_bit_colour_is_scaled_by_v_over_257_in_every_layout(bad_folder):
    expected = np.rint(SIXTEEN_BIT_RGB / 257).astype(np.uint8)  # 1, 253, 128: not the high byte 0, 253, 128
    rgb = read_image(bad_folder / "ok/sixteen_bit_rgb.png")
    assert rgb.shape == (24, 32, 3) and (rgb == expected).all()
    rgba = read_image(bad_folder / "ok/sixteen_bit_rgba.png")
    assert (rgba[0] == 255).all() and (rgba[1:] == expected).all()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bad/header_only_30000.png", "too large: 30000x30000 = 900,000,000 pixels"),
        ("bad/sixteen_bit_10000.png", "too large: 10000x10000"),
        ("bad/one_pixel.png", "too small: 1x1 pixels"),
    ],
)
def test_hostile_dimensions_are_refused_before_decoding_in_bounded_memory(bad_folder, name, reason):
    """Each refusal costs a header read: a fresh process stays far under the bound's 1 GB and answers at once."""
    code = (
        "import sys; from preimage.pipeline.decode import read_image, ImageReadError\n"
        "try:\n    read_image(sys.argv[1])\nexcept ImageReadError as err:\n    print(err)\n"
        "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(bad_folder / name)], capture_output=True, text=True)
    message, peak_kb = out.stdout.splitlines()
    assert reason in message
    assert int(peak_kb) < 200_000  # KB, this process's peak: the interpreter, numpy and Pillow, nothing decoded


def test_huge_jpeg_decodes_at_a_reduced_scale(bad_folder):
    image = read_image(bad_folder / "ok/huge.jpg", min_side=1024)
    assert 1024 <= image.shape[0] < 20000 and image.shape[0] == image.shape[1]
    assert (image == 128).all()


def test_images_over_the_pixel_limit_are_refused(bad_folder):
    with pytest.raises(ImageReadError, match=r"too large.*--max-pixels"):
        read_image(bad_folder / "ok/alpha.png", max_pixels=99 * 99)


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.full((4, 5), 65535, np.uint16), 255),
        (np.full((4, 5, 3), 0.5, np.float32), 128),
        (np.full((3, 4, 5), 7, np.uint8), 7),  # channels first
        (np.dstack([np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), np.uint8)]), 255),  # transparent: white
    ],
)
def test_arrays_from_containers_become_rgb_uint8(array, expected):
    out = to_rgb_uint8(array)
    assert out.dtype == np.uint8 and out.shape[-1] == 3 and (out == expected).all()


@pytest.mark.parametrize("array", [np.zeros((4,)), np.zeros((6, 5, 7)), np.full((4, 5), np.nan)])
def test_arrays_that_are_not_images_are_refused(array):
    with pytest.raises(ImageReadError):
        to_rgb_uint8(array)
