"""Where a reconstruction's error lies: each part given from the truth restores exactly what it names."""

from __future__ import annotations

import torch
from preimage.train.metrics import error_parts, luminance, normalised_error


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
