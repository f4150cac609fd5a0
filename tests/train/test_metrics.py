"""Where a reconstruction's error lies: each part given from the truth restores exactly what it names."""

from __future__ import annotations

import pytest
import torch

from preimage.train.metrics import error_parts, luminance, means_needed, normalised_error


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
