"""HOG against VLFeat's vl_hog (libvl.so.1 through ctypes), its gradient, and its errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from preimage.pipeline.checks import ImageInputError
from preimage.pipeline.features import HOG, HogParams, hog, native
from preimage.pipeline.features.hog import _exact_orientation_bins, hog_torch, orientation_bins, render_glyphs
from preimage.pipeline.features.vlfeat import vl_hog

from ...helpers import kernel_equals_torch

# the compiled kernel (CPU, no gradient) and the torch ops (autograd, other devices) must both be VLFeat
IMPLEMENTATIONS = pytest.mark.parametrize("hog", [hog, hog_torch], ids=["kernel", "torch"])


@IMPLEMENTATIONS
def test_matches_vlfeat_on_real_photos(vlfeat, gray_photos, hog):
    sizes = set()
    for image in gray_photos:
        reference = vl_hog(image)
        ours = hog(torch.from_numpy(image)[None])[0].numpy()
        assert ours.shape == reference.shape == HogParams().output_shape(*image.shape)
        np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0, err_msg=f"image {image.shape}")
        sizes.add(image.shape)
    assert any(h % 8 and w % 8 for h, w in sizes), "no size that is not a multiple of 8"
    assert any(h % 2 and w % 2 for h, w in sizes), "no odd size"
    assert any(h < 16 and w < 16 for h, w in sizes), "no image smaller than two cells"


@IMPLEMENTATIONS
def test_batch_equals_images_one_by_one(gray_photos, hog):
    same = [im[:64, :64] for im in gray_photos if min(im.shape) >= 64][:6]
    batch = hog(torch.from_numpy(np.stack(same)))
    for i, image in enumerate(same):
        torch.testing.assert_close(batch[i], hog(torch.from_numpy(image)[None])[0])


@pytest.mark.parametrize("cell_size, orientations", [(4, 9), (6, 7), (16, 12)])
@IMPLEMENTATIONS
def test_other_parameters_match_vlfeat(vlfeat, gray_photos, cell_size, orientations, hog):
    params = HogParams(cell_size, orientations)
    for image in gray_photos[:5]:
        ours = hog(torch.from_numpy(image)[None], params)[0].numpy()
        np.testing.assert_allclose(ours, vl_hog(image, cell_size, orientations), atol=1e-4, rtol=0)


def test_fast_orientation_bins_equal_exact_scoring():
    # integer gradients as from 8-bit images, including exact ties (vertical gradients) and zero gradients
    g = torch.arange(-40, 41, dtype=torch.float32) / 255
    gx, gy = torch.meshgrid(g, g, indexing="ij")
    grad = torch.sqrt(gx * gx + gy * gy)
    fast = orientation_bins(gx, gy, grad, 9)
    exact = _exact_orientation_bins(gx, gy, grad, 9)
    moving = grad > 0
    assert torch.equal(fast[moving], exact[moving])


def test_gradient_float64():
    torch.manual_seed(0)
    image = torch.rand(2, 13, 17, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: hog(x, HogParams(cell_size=4)), (image,), eps=1e-7, atol=1e-5)


def test_gradient_is_finite_on_flat_regions():
    image = torch.zeros(1, 24, 24, dtype=torch.float64)
    image[0, 8:16, 8:16] = 1.0
    image.requires_grad_(True)
    hog(image).sum().backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_module_equals_function(gray_photos):
    x = torch.from_numpy(gray_photos[0])[None]
    torch.testing.assert_close(HOG(HogParams(8, 9))(x), hog(x))


def test_glyph_picture_has_cells_of_glyph_size(gray_photos):
    picture = render_glyphs(hog(torch.from_numpy(gray_photos[0][:64, :80])[None])[0])
    assert picture.shape == (8 * 21, 10 * 21) and picture.max() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(0, 32, 32), "empty"),
        (torch.full((1, 32, 32), float("nan")), "NaN"),
        (torch.zeros(1, 32, 32, dtype=torch.uint8), "floating-point"),
        (torch.zeros(1, 1, 1), "too small"),
        (torch.zeros(32, 32, 3), "one colour image \\(H, W, 3\\); pass a batch"),
        (torch.zeros(2, 32, 32, 4), "4 channels .*RGBA"),
        (torch.zeros(2, 5, 32, 32), "expected colour images"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "floating-point"),
        (torch.zeros(32, 32), "batch"),
        ([[0.0]], "numpy"),
    ],
)
def test_bad_input_is_a_clear_error(bad, message):
    with pytest.raises(ImageInputError, match=message):
        hog(bad)


def test_colour_batches_channels_first_or_last_are_made_gray_as_the_store_does(gray_photos):
    from preimage.pipeline.images import rgb_to_gray

    rgb = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    expected = hog(rgb_to_gray(rgb))
    torch.testing.assert_close(hog(rgb), expected, rtol=0, atol=0)
    torch.testing.assert_close(hog(rgb.permute(0, 2, 3, 1).contiguous()), expected, rtol=0, atol=0)
    assert hog(rgb).shape == (2, 5, 6, 31)


def test_a_tensor_that_needs_a_gradient_raises_no_warning(recwarn):
    x = torch.rand(1, 32, 32, requires_grad=True)
    hog(x).sum().backward()
    assert x.grad is not None and not [w for w in recwarn.list if issubclass(w.category, UserWarning)]


def test_the_torch_path_equals_the_compiled_kernel_on_real_photos(gray_photos):
    """Without VLFeat too: the compiled kernel (what CPU batches run) is the torch ops' peer here, so a sign or a
    bin flipped in either is caught wherever the tests run."""
    assert native.library() is not None, "pip install -e . should have compiled pipeline/features/*_kernel.c"
    kernel_equals_torch(hog, hog_torch, gray_photos, atol=2e-5)
