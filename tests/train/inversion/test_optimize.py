"""Mahendran & Vedaldi's optimisation: the prior terms by hand, float64 gradients, a real inversion, the options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from preimage.pipeline.backbones import WeightsUnavailable, get_config
from preimage.pipeline.images import center_square, rgb_to_gray, to_float
from preimage.train.inversion.optimize import (
    OptimizeConfig,
    Target,
    alpha_norm,
    differentiable_target,
    feature_mask,
    inversion_objective,
    optimize,
    paper_lambda_tv,
    schedule,
    tv_norm,
)


def test_alpha_norm_by_hand():
    u = torch.tensor([[[[1.0, -2.0], [0.5, 0.0]]]])
    assert alpha_norm(u, 6).item() == pytest.approx(1 + 64 + 0.5**6)
    assert alpha_norm(u, 2).item() == pytest.approx(1 + 4 + 0.25)


def test_tv_norm_by_hand():
    u = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]]])
    # forward differences, last column and row repeated (difference 0):
    # dx = [[1, 2, 0], [0, 0, 0]], dy = [[2, 1, -1], [0, 0, 0]]
    squared = torch.tensor([1 + 4, 4 + 1, 0 + 1, 0, 0, 0.0])
    assert tv_norm(u, 2).item() == pytest.approx(float(squared.sum()))
    assert tv_norm(u, 1).item() == pytest.approx(float(squared.sqrt().sum()), rel=1e-5)
    assert tv_norm(torch.ones(2, 3, 5, 5), 2).tolist() == [0.0, 0.0]  # a constant image has no variation


@pytest.mark.parametrize("beta", [2.0, 1.5])
def test_prior_gradients_in_float64(beta):
    u = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: alpha_norm(x, 6.0), (u,))
    assert torch.autograd.gradcheck(lambda x: tv_norm(x, beta), (u,))


def test_objective_gradient_in_float64():
    """The whole objective (data term through a network, both priors, the normalisations) in float64."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Tanh()).double()
    phi0 = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    mean = torch.tensor([0.4, 0.5, 0.6], dtype=torch.float64).view(1, 3, 1, 1)
    mask = feature_mask((4, 4, 4), False, OptimizeConfig(window=2, channels=(1, 3))).double()
    u = (40 * torch.randn(2, 3, 6, 6, dtype=torch.float64)).requires_grad_(True)

    def total(x):
        return inversion_objective(
            x, net, phi0=phi0, mean=mean, sigma=300.0, config=OptimizeConfig(), lambda_tv=10.0, mask=mask
        )[0]

    assert torch.autograd.gradcheck(total, (u,))


def test_data_term_is_the_relative_feature_error():
    phi0 = torch.tensor([[3.0, 4.0]])
    mean = torch.zeros(1, 1, 1, 1)
    u = torch.zeros(1, 1, 1, 1)
    _, data, _ = inversion_objective(
        u, lambda x: torch.tensor([[3.0, 0.0]]), phi0=phi0, mean=mean, sigma=1.0, config=OptimizeConfig(), lambda_tv=0
    )
    assert data.item() == pytest.approx(16 / 25)


def test_schedule_is_the_authors_step_decay():
    cnn = schedule(400, 0.004, hog=False)
    assert len(cnn) == 400 and cnn[0] == cnn[99] == 0.004
    assert cnn[100] == cnn[299] == pytest.approx(0.0004) and cnn[300] == cnn[399] == pytest.approx(0.00004)
    hog = schedule(800, 0.004, hog=True)
    assert len(hog) == 800 and sorted(set(hog), reverse=True) == pytest.approx([0.004, 4e-4, 4e-5, 4e-6])
    assert len(schedule(37, 0.004, hog=False)) == 37


def test_lambda_tv_grows_with_depth_as_in_the_paper():
    layers = get_config("alexnet").layers
    assert [paper_lambda_tv(layers, name) for name in layers] == [1, 10, 10, 10, 100, 100, 100, 100]


def test_masks_keep_a_central_window_and_a_channel_range():
    conv = feature_mask((8, 6, 6), False, OptimizeConfig(window=2))
    assert conv.sum() == 8 * 2 * 2 and conv[:, 2:4, 2:4].all()
    hog = feature_mask((6, 6, 31), True, OptimizeConfig(channels=(0, 18)))
    assert hog[..., :18].all() and not hog[..., 18:].any()
    assert feature_mask((8, 6, 6), False, OptimizeConfig()) is None
    with pytest.raises(ValueError, match="outside"):
        feature_mask((8, 6, 6), False, OptimizeConfig(channels=(4, 9)))
    with pytest.raises(ValueError, match="convolutional"):
        feature_mask((10,), False, OptimizeConfig(window=2))


@pytest.mark.parametrize("spec", ["lbp", "sift"])
def test_non_differentiable_representations_point_to_the_decoder(spec):
    with pytest.raises(ValueError, match="train a decoder"):
        differentiable_target(spec)


def _gray_photo(photos, size: int) -> torch.Tensor:
    crop = center_square(photos["astronaut"], size)
    return rgb_to_gray(to_float(crop[None])).unsqueeze(1)


def test_hog_inversion_lowers_the_feature_error_by_a_large_factor_and_is_seeded(photos):
    target = differentiable_target("hog", 64, device="cpu")
    phi0 = target.phi(_gray_photo(photos, 64))
    config = OptimizeConfig(steps=400, restarts=2, seed=3)
    result = optimize(target, phi0, config)
    start = optimize(target, phi0, OptimizeConfig(steps=1, seed=3))  # one step from the same noise
    assert result.images.shape == (1, 2, 1, 64, 64)
    assert float(result.relative_error.max()) < float(start.relative_error.max()) / 8
    assert result.history[-1] < result.history[0] / 5
    again = optimize(target, phi0, config)  # the same seed: the same pre-images, bit for bit
    torch.testing.assert_close(again.images, result.images, rtol=0, atol=0)
    assert not torch.equal(result.images[0, 0], result.images[0, 1])  # two restarts, two pre-images
    other = optimize(target, phi0, OptimizeConfig(steps=20, seed=4))
    assert not torch.equal(other.images[0, 0], result.images[0, 0])


def _alexnet_target(size: int) -> Target:
    try:
        return differentiable_target("alexnet:conv1", size, device="cpu")
    except WeightsUnavailable as err:
        pytest.skip(f"no AlexNet weights here: {err}")


def test_conv1_inversion_is_close_to_the_image(photos):
    """Matched CONV1 features give back the picture: its pixels correlate with the image's (noise: about 0)."""
    target = _alexnet_target(128)
    image = to_float(center_square(photos["coffee"], 128)[None])
    result = optimize(target, target.phi(image), OptimizeConfig(steps=300))
    assert float(result.relative_error[0, 0]) < 0.15
    pixels = torch.stack([result.images[0, 0].flatten(), image[0].flatten()])
    assert torch.corrcoef(pixels)[0, 1] > 0.5


def test_a_window_leaves_pixels_outside_its_receptive_field_blank(photos):
    """CONV1's central 3x3 units see about the middle 35x35 pixels of a 128 image: elsewhere only the prior acts,
    and it pulls the pixels to the mean (blank)."""
    target = _alexnet_target(128)
    image = to_float(center_square(photos["chelsea"], 128)[None])
    result = optimize(target, target.phi(image), OptimizeConfig(steps=150, window=3))
    mean = torch.tensor(target.mean).view(3, 1, 1)
    deviation = (result.images[0, 0] - mean).abs()
    inside, outside = deviation[:, 50:78, 50:78].mean(), deviation[:, :24, :24].mean()
    assert float(outside) < float(inside) / 4
    assert float(result.relative_error[0, 0]) < 0.1  # the kept features are matched


def test_channel_subset_matches_only_those_channels(photos):
    target = differentiable_target("hog", 64, device="cpu")
    phi0 = target.phi(_gray_photo(photos, 64))
    result = optimize(target, phi0, OptimizeConfig(steps=120, channels=(0, 18)))
    kept = (result.features[0, 0, ..., :18] - phi0[0, ..., :18]).square().sum() / phi0[0, ..., :18].square().sum()
    assert float(kept) == pytest.approx(float(result.relative_error[0, 0]), rel=1e-4)
    assert np.isfinite(result.history).all()
