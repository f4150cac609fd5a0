"""Decoders: the paper's up-convolution, every kind built from real feature shapes, float64 gradients."""

from __future__ import annotations

import pytest
import torch

from preimage.pipeline.contract import stored_row_shape
from preimage.pipeline.features import get_representation
from preimage.train.models.decoders import (
    DecoderConfig,
    UpConvolution,
    create_decoder,
    he_init,
    list_decoders,
    resize_convolution,
    sub_pixel_convolution,
    sub_pixel_from_resize,
    up_conv,
    up_convolution,
    zero_fill_upsample,
)


def test_zero_fill_puts_each_value_at_the_top_left_of_its_block():
    x = torch.arange(1.0, 5.0).view(1, 1, 2, 2)
    expected = torch.tensor([[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]], dtype=torch.float32)
    torch.testing.assert_close(zero_fill_upsample(x)[0, 0], expected)


def test_up_convolution_is_zero_fill_then_a_5x5_convolution():
    layer = up_conv(2, 3).double()
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    conv = layer[0].conv
    expected = torch.nn.functional.leaky_relu(conv(zero_fill_upsample(x)), 0.2)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)
    assert conv.kernel_size == (5, 5) and layer(x).shape == (2, 3, 8, 10)


def test_up_convolution_gradients_in_float64():
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(up_convolution, (x, weight, bias))
    reference = torch.nn.functional.conv2d(zero_fill_upsample(x), weight, bias, padding=2)
    grads = torch.autograd.grad(up_convolution(x, weight, bias).square().sum(), (x, weight, bias))
    expected = torch.autograd.grad(reference.square().sum(), (x, weight, bias))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_sub_pixel_convolution_interleaves_four_phases_computed_at_the_input_resolution():
    """Channel 4c + 2dy + dx of the 3x3 convolution is output channel c at rows 2i + dy, columns 2j + dx."""
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(12, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(12, dtype=torch.float64, requires_grad=True)
    out = sub_pixel_convolution(x, weight, bias)
    low = torch.nn.functional.conv2d(x, weight, bias, padding=1)
    assert out.shape == (2, 3, 8, 10)
    for c in range(3):
        for dy in range(2):
            for dx in range(2):
                torch.testing.assert_close(out[:, c, dy::2, dx::2], low[:, 4 * c + 2 * dy + dx], rtol=0, atol=0)
    assert torch.autograd.gradcheck(sub_pixel_convolution, (x, weight, bias))


def test_a_resize_up_convolution_converts_to_a_sub_pixel_one_exactly():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    weight, bias = torch.randn(4, 3, 5, 5, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    phases, phase_bias = sub_pixel_from_resize(weight, bias)
    assert phases.shape == (16, 3, 3, 3) and phase_bias.shape == (16,)
    torch.testing.assert_close(
        sub_pixel_convolution(x, phases, phase_bias), resize_convolution(x, weight, bias), rtol=0, atol=1e-12
    )
    flat = torch.ones(1, 3, 6, 6, dtype=torch.float64)  # the interior of a flat map stays flat: no checkerboard
    assert sub_pixel_convolution(flat, phases, None)[..., 4:-4, 4:-4].std(dim=(2, 3)).max() < 1e-12


def test_a_new_sub_pixel_up_convolution_starts_as_a_convolution_then_nearest_neighbour():
    """ICNR (Aitken et al. 2017): the four phases start equal, so a new decoder draws no checkerboard."""
    layer = UpConvolution(4, 3, "sub-pixel").double()
    layer.apply(he_init)
    layer.reset_phases()
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    low = torch.nn.functional.conv2d(x, layer.conv.weight[::4], layer.conv.bias[::4], padding=1)
    nearest = low.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # equal to rounding: another conv layout
    torch.testing.assert_close(layer(x), nearest, rtol=0, atol=1e-12)
    decoder = create_decoder(DecoderConfig("hog", (16, 16, 31), 64, width=32, upsample="sub-pixel"))
    weights = [m.conv.weight for m in decoder.modules() if isinstance(m, UpConvolution)]
    assert weights and all(torch.equal(w[0::4], w[1::4]) and torch.equal(w[0::4], w[3::4]) for w in weights)


def test_resize_convolution_is_nearest_neighbour_then_a_5x5_convolution():
    layer = up_conv(2, 3, "resize").double()
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    conv = layer[0].conv
    repeated = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # each value over its 2x2 block
    expected = torch.nn.functional.leaky_relu(conv(repeated), 0.2)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)
    assert layer(x).shape == (2, 3, 8, 10)
    x.requires_grad_(True)
    weight = torch.randn(3, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(resize_convolution, (x, weight, None))


def test_resize_draws_no_checkerboard_where_zero_fill_does():
    """A constant input: zero-fill gives each of the four output phases its own quarter of the kernel (a
    periodic 2x2 pattern, the checkerboard); resize gives every output pixel the whole kernel."""
    torch.manual_seed(0)
    weight = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    flat = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))  # away from the zero padding
    resized = resize_convolution(flat, weight, None)[inner]
    torch.testing.assert_close(resized, torch.full_like(resized, float(weight.sum())))
    filled = up_convolution(flat, weight, None)[inner]
    phases = [filled[..., a::2, b::2].unique() for a in (0, 1) for b in (0, 1)]
    assert all(p.numel() == 1 for p in phases) and len({round(float(p), 9) for p in phases}) == 4
    assert float(sum(phases)) == pytest.approx(float(weight.sum()))  # the phases' sum is the whole kernel's


@pytest.mark.parametrize(
    "spec, size",
    [("hog", 128), ("lbp", 128), ("sift", 128), ("hog", 100), *[(f"alexnet:conv{i}", 224) for i in range(1, 6)]],
)
@pytest.mark.parametrize("target", [64, 128])
def test_every_kind_reconstructs_at_the_target_size(spec, size, target):
    kind = get_representation(spec).decoder
    decoder = create_decoder(DecoderConfig(kind, stored_row_shape(spec, size), target, width=32))
    out = decoder(torch.rand(2, *stored_row_shape(spec, size)))
    assert out.shape == (2, 3, target, target)


def test_vector_decoder_follows_table_1():
    decoder = create_decoder(DecoderConfig("vector", (1000,), 64))
    linear = [m for m in decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == [4096, 4096, 4096]
    assert decoder(torch.rand(2, 1000)).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("kind, shape", [("hog", (16, 16, 31)), ("conv", (256, 6, 6)), ("vector", (1000,))])
def test_every_kind_builds_resize_decoders_with_the_same_parameters(kind, shape):
    paper = create_decoder(DecoderConfig(kind, shape, 64, width=32))
    resize = create_decoder(DecoderConfig(kind, shape, 64, width=32, upsample="resize"))
    assert {k: v.shape for k, v in paper.state_dict().items()} == {k: v.shape for k, v in resize.state_dict().items()}
    resize.load_state_dict(paper.state_dict())
    x = torch.rand(2, *shape)
    assert resize(x).shape == paper(x).shape == (2, 3, 64, 64) and not torch.equal(resize(x), paper(x))


def test_registry_and_errors():
    assert set(list_decoders()) == {"grid", "map", "vector", "fused"}
    with pytest.raises(ValueError, match="no decoder for representations of kind 'pixels'"):
        create_decoder(DecoderConfig("pixels", (3, 8, 8)))
    decoder = create_decoder(DecoderConfig("hog", (16, 16, 31), 64, width=32))
    with pytest.raises(ValueError, match=r"got features of shape \(8, 8, 31\)"):
        decoder(torch.rand(1, 8, 8, 31))
    with pytest.raises(ValueError, match="unknown up-sampling 'bicubic'; known: zero-fill, resize, sub-pixel"):
        create_decoder(DecoderConfig("hog", (16, 16, 31), 64, width=32, upsample="bicubic"))


@pytest.mark.parametrize("upsample", ["zero-fill", "resize", "sub-pixel"])
def test_gradients_in_float64(upsample):
    decoder = create_decoder(DecoderConfig("lbp", (4, 4, 58), 8, width=8, upsample=upsample)).double()
    x = torch.rand(1, 4, 4, 58, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(decoder, (x,), eps=1e-6, atol=1e-5)


def test_config_round_trips_through_a_dict():
    config = DecoderConfig("conv", (256, 6, 6), 64, 128)
    assert DecoderConfig.from_dict(config.as_dict()) == config
    resize = DecoderConfig("conv", (256, 6, 6), target_size=64, width=128, upsample="resize")
    assert DecoderConfig.from_dict(resize.as_dict()) == resize
    sub_pixel = DecoderConfig("hog", (16, 16, 31), target_size=64, width=128, upsample="sub-pixel")
    assert DecoderConfig.from_dict(sub_pixel.as_dict()) == sub_pixel
    saved_before = {k: v for k, v in config.as_dict().items() if k != "upsample"}  # a decoder shipped before
    assert DecoderConfig.from_dict(saved_before).upsample == "zero-fill"
