"""LBP against VLFeat's vl_lbp, and its errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from preimage.pipeline.checks import ImageInputError
from preimage.pipeline.features import LBP, LbpParams, lbp, native
from preimage.pipeline.features.lbp import lbp_torch, uniform_mapping
from preimage.pipeline.features.vlfeat import vl_lbp

from ...helpers import kernel_equals_torch

# the compiled kernel (what CPU batches run) and the torch ops (other devices) must both be VLFeat
IMPLEMENTATIONS = pytest.mark.parametrize("lbp", [lbp, lbp_torch], ids=["kernel", "torch"])


def test_the_compiled_kernel_is_built():
    assert native.library() is not None, "pip install -e . should have compiled pipeline/features/*_kernel.c"


@IMPLEMENTATIONS
def test_matches_vlfeat_on_real_photos(vlfeat, gray_photos, lbp):
    checked = 0
    for image in gray_photos:
        if min(image.shape) < 16:
            continue
        reference = vl_lbp(image)
        ours = lbp(torch.from_numpy(image)[None])[0].numpy()
        assert ours.shape == reference.shape == LbpParams().output_shape(*image.shape)
        np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0, err_msg=f"image {image.shape}")
        checked += 1
    assert checked >= 20


@IMPLEMENTATIONS
def test_matches_vlfeat_with_ties_of_8bit_pixels(vlfeat, gray_photos, lbp):
    image = np.round(gray_photos[0] * 255).astype(np.float32) / 255  # many equal neighbours
    np.testing.assert_allclose(lbp(torch.from_numpy(image)[None])[0].numpy(), vl_lbp(image), atol=1e-5, rtol=0)


@IMPLEMENTATIONS
@pytest.mark.parametrize("cell_size", [8, 20])
def test_other_cell_sizes_match_vlfeat(vlfeat, gray_photos, cell_size, lbp):
    image = gray_photos[1]
    ours = lbp(torch.from_numpy(image)[None], LbpParams(cell_size))[0].numpy()
    np.testing.assert_allclose(ours, vl_lbp(image, cell_size), atol=1e-5, rtol=0)


def test_a_batch_split_over_threads_equals_images_one_by_one(gray_photos):
    crops = np.stack([image[:48, :64] for image in gray_photos if min(image.shape) >= 64][:9])
    threads = torch.get_num_threads()
    torch.set_num_threads(3)  # three parts of three images, whatever the machine
    try:
        batch = lbp(crops)
    finally:
        torch.set_num_threads(threads)
    assert len(crops) == 9
    for image, features in zip(crops, batch, strict=True):
        torch.testing.assert_close(features, lbp(image[None])[0], rtol=0, atol=0)


def test_uniform_mapping_has_58_patterns():
    mapping = uniform_mapping()
    assert sorted(set(mapping.tolist())) == list(range(58))
    assert mapping[0] == mapping[255] == 56
    assert (mapping == 57).sum() == 256 - 58


def test_cells_are_unit_norm_histograms(gray_photos):
    features = LBP()(torch.from_numpy(gray_photos[0])[None])
    torch.testing.assert_close((features**2).sum(-1), torch.ones(features.shape[:-1]))


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(0, 32, 32), "empty"),
        (torch.tensor([[[float("inf")] * 32] * 32]), "NaN or infinite"),
        (torch.zeros(1, 32, 32, dtype=torch.int32), "floating-point"),
        (torch.zeros(1, 1, 1), "too small"),
        (torch.zeros(1, 15, 40), "too small"),
        (torch.zeros(32, 32, 3), "one colour image"),
    ],
)
def test_bad_input_is_a_clear_error(bad, message):
    with pytest.raises(ImageInputError, match=message):
        lbp(bad)


def test_the_torch_path_equals_the_compiled_kernel_on_real_photos(gray_photos):
    """Without VLFeat too: the compiled kernel and the torch ops check each other wherever the tests run."""
    kernel_equals_torch(lbp, lbp_torch, gray_photos, atol=1e-5)
