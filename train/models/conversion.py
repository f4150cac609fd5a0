"""A decoder's weights converted for a decoder of another up-sampling (``--init`` of a fine-tuning run): the same
function, or the same mean response without the checkerboard, from the start's weights."""

from __future__ import annotations

from collections.abc import Callable

from .decoders import Decoder, UpConvolution, sub_pixel_from_resize


def resize_from_zero_fill(decoder: Decoder, weights: dict) -> dict:
    """A zero-fill decoder's weights for a resize one: each up-convolution's kernel over 4. Zero-fill feeds each
    output phase a quarter of the kernel's taps; resize feeds every phase all of them, four times as many inputs,
    so a quarter of the kernel gives the same mean response to smooth input (and none of the checkerboard)."""
    return convert_up_convolutions(decoder, weights, lambda weight, bias: (weight / 4, bias))


def sub_pixel_from_resize_decoder(decoder: Decoder, weights: dict) -> dict:
    """A resize decoder's weights for a sub-pixel one that computes the same function (each phase's 3x3 kernel
    sums the 5x5 taps that read the same input value): a start without checkerboard whose phases may then part."""
    return convert_up_convolutions(decoder, weights, sub_pixel_from_resize)


def convert_up_convolutions(decoder: Decoder, weights: dict, convert: Callable) -> dict:
    """``weights`` (``decoder``'s) with each up-convolution's weight and bias replaced by ``convert(weight, bias)``;
    the other layers' as they are."""
    converted = dict(weights)
    for name, module in decoder.named_modules():
        if isinstance(module, UpConvolution):
            key = f"{name}.conv"
            converted[f"{key}.weight"], converted[f"{key}.bias"] = convert(
                weights[f"{key}.weight"], weights[f"{key}.bias"]
            )
    return converted


# (the start's up-sampling, the run's): the conversions, in order, that start the run from the start's weights;
# a zero-fill decoder starts a sub-pixel one through resize, so that the checkerboard is not carried over
UPSAMPLING_STARTS = {
    ("zero-fill", "zero-fill"): (),
    ("resize", "resize"): (),
    ("sub-pixel", "sub-pixel"): (),
    ("zero-fill", "resize"): (resize_from_zero_fill,),
    ("resize", "sub-pixel"): (sub_pixel_from_resize_decoder,),
    ("zero-fill", "sub-pixel"): (resize_from_zero_fill, sub_pixel_from_resize_decoder),
}
