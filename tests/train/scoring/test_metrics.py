"""Where a reconstruction's error lies: each part given from the truth restores exactly what it names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from preimage.train.scoring.metrics import (
    checkerboard,
    error_parts,
    image_scores,
    luminance,
    mean_pairwise_distance,
    means_needed,
    normalised_error,
    spread,
)


def test_error_parts_restore_what_they_name():
    torch.manual_seed(0)
    images = torch.rand(6, 3, 16, 16, dtype=torch.float64)
    cast = images + torch.tensor([0.2, -0.1, 0.05], dtype=torch.float64).view(1, 3, 1, 1)  # a colour cast only
    gray = luminance(images).expand(-1, 3, -1, -1)  # the colour lost, the luminance kept
    torch.testing.assert_close(error_parts(cast, images)["true mean per channel"], images)
    torch.testing.assert_close(error_parts(gray, images)["true colour"], images)
    assert normalised_error(error_parts(gray, images)["true luminance"], images) > 0.1  # colour still missing
    noisy = images + 0.1 * torch.randn_like(images)
    parts = error_parts(noisy, images)
    assert parts["as trained"] is noisy
    torch.testing.assert_close(luminance(parts["true luminance"]), luminance(images))
    torch.testing.assert_close(luminance(parts["true colour"]), luminance(noisy))
    torch.testing.assert_close(
        luminance(images)[0, 0, 0, 0], (images[0, :, 0, 0] * images.new_tensor([0.299, 0.587, 0.114])).sum()
    )


def test_means_needed_sizes_the_means_for_a_goal():
    torch.manual_seed(0)
    images = torch.rand(8, 3, 16, 16, dtype=torch.float64)
    casts = 0.2 * torch.randn(8, 3, 1, 1, dtype=torch.float64)  # each image's means wrong, nothing else
    variance = float((images.mean((2, 3)) - images.mean((2, 3)).mean(0)).square().mean())
    now = 1 - float(casts.square().mean()) / variance
    halfway = normalised_error(images + casts / 2, images)  # the means moved half the way to the truth
    r2, needed = means_needed(images + casts, images, goal=halfway)
    assert r2 == pytest.approx(now)
    assert needed == pytest.approx(1 - 0.25 * (1 - now), abs=2e-3)  # half the miss: a quarter of the squares
    assert means_needed(images + casts, images, goal=1.0) == (pytest.approx(now), pytest.approx(now))  # met now
    noisy = images + casts + 0.1 * torch.randn_like(images)  # structure wrong too: true means are not enough
    floor = normalised_error(error_parts(noisy, images)["true mean per channel"], images)  # all the way
    assert means_needed(noisy, images, goal=floor * 0.99)[1] is None
    assert means_needed(noisy, images, goal=floor * 1.01)[1] > means_needed(noisy, images, goal=floor * 1.2)[1]


def test_checkerboard_is_the_share_of_power_that_alternates_every_pixel(photos):
    i = torch.arange(16)
    board = ((i[:, None] + i[None, :]) % 2).double().expand(1, 3, 16, 16)
    assert checkerboard(board) == pytest.approx(1.0)
    stripes = (i[None, :] % 2).double().expand(1, 3, 16, 16)  # alternating columns: the (0, N/2) frequency
    assert checkerboard(stripes) == pytest.approx(1.0)
    wave = torch.cos(2 * torch.pi * torch.arange(16) / 8).double().expand(1, 3, 16, 16)  # period 8
    assert checkerboard(wave) < 1e-12
    noise = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert checkerboard(noise) == pytest.approx(3 / (32 * 32), rel=0.15)  # white noise: 3 of its 1023 frequencies
    photo = torch.from_numpy(photos["astronaut"]).permute(2, 0, 1)[None].float() / 255
    small = torch.nn.functional.interpolate(photo, size=64, mode="area")
    assert checkerboard(small) < 0.01 < checkerboard((small + 0.1 * board.float().repeat(1, 1, 4, 4)).clamp(0, 1))
    with pytest.raises(ValueError, match="even sides"):
        checkerboard(torch.rand(1, 3, 15, 16))


def test_a_zero_fill_up_convolution_draws_a_checkerboard_a_resize_one_does_not(photos):
    from preimage.train.models.decoders import resize_convolution, up_convolution

    torch.manual_seed(0)
    photo = torch.from_numpy(photos["astronaut"]).permute(2, 0, 1)[None].double() / 255
    small = torch.nn.functional.interpolate(photo, size=32, mode="area")
    weight = torch.rand(3, 3, 5, 5, dtype=torch.float64) / 25  # a positive blur-like kernel per channel pair
    filled, resized = up_convolution(small, weight, None), resize_convolution(small, weight, None)
    assert checkerboard(filled) > 20 * checkerboard(resized)


def test_scores_sharing_what_the_images_alone_give_equal_scores_computed_afresh(photos):
    """Many reconstructions of the same images scored with one ``shared`` dict: the same numbers, bit for bit."""
    from preimage.train.scoring.metrics import scores

    images = torch.stack([torch.from_numpy(p[:96, :96]).permute(2, 0, 1).float() / 255 for p in photos.values()])
    generator = torch.Generator().manual_seed(0)
    shared: dict = {}
    for _ in range(2):
        small = images[..., ::2, ::2]
        recon = (small + 0.1 * torch.randn(small.shape, generator=generator)).clamp(0, 1)
        assert scores(recon, images, shared) == scores(recon, images)
    assert set(shared) == {"normaliser", "lpips_features"}


def test_the_normalised_error_on_a_hand_computed_case():
    # three one-pixel images 0, 1, 3 and reconstructions 1, 1, 1: distances 1, 0, 2 (mean 1); distances between the
    # images 1, 3, 2 (mean over the pairs 2, each ordered pair once, i != j): the error is 1 / 2
    images = torch.tensor([0.0, 1.0, 3.0]).reshape(3, 1, 1, 1)
    recon = torch.ones(3, 1, 1, 1)
    assert mean_pairwise_distance(images) == pytest.approx(2.0)  # over n(n-1) pairs; n^2 would give 4/3
    assert normalised_error(recon, images) == pytest.approx(0.5)
    assert normalised_error(recon, images, normaliser=4.0) == pytest.approx(0.25)
    each = image_scores(recon.expand(-1, 3, 64, 64) / 3, images.expand(-1, 3, 64, 64) / 3)  # in [0, 1]
    # per image: distance over the normaliser (whose mean is the error), and PSNR of the MSE
    np.testing.assert_allclose(each["normalised_error"], [0.5, 0.0, 1.0])
    np.testing.assert_allclose(each["psnr"][[0, 2]], [10 * np.log10(9), 10 * np.log10(9 / 4)])
    assert spread(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(
        {"mean": 2.5, "std": 1.118034, "p5": 1.15, "p50": 2.5, "p95": 3.85}
    )
