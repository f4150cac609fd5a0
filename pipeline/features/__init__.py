"""Every representation preimage can invert, behind one registry.

A representation is named by a spec: ``hog``, ``lbp``, ``sift`` or ``BACKBONE:LAYER`` (``alexnet:conv3``).
:func:`get_representation` returns a :class:`Representation` that knows its input (gray or RGB), whether it
is differentiable, its parameters, its output shape for an image size, and how to compute it on a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import torch

from .hog import HOG, HogParams, hog
from .lbp import LBP, LbpParams, lbp
from .sift import SiftParams, SparseSIFT, sift

__all__ = [
    "HOG",
    "LBP",
    "HogParams",
    "LbpParams",
    "Representation",
    "SiftParams",
    "SparseSIFT",
    "get_representation",
    "hog",
    "lbp",
    "list_representations",
    "sift",
]

HANDCRAFTED = {
    "hog": (HogParams, hog, True, "VLFeat UoCTTI HOG (vl_hog)"),
    "lbp": (LbpParams, lbp, False, "VLFeat uniform LBP (vl_lbp)"),
    "sift": (SiftParams, sift, False, "sparse SIFT keypoints on a d x d grid"),
}


@dataclass(frozen=True)
class Representation:
    """A computable representation: its name, input kind, parameters and output layout."""

    name: str
    kind: str  # 'hog' | 'lbp' | 'sift' | 'conv' | 'vector': what the decoder registry keys on
    input: str  # 'gray' (N, H, W) or 'rgb' (N, 3, H, W), floats in [0, 1]
    differentiable: bool
    params: dict
    description: str
    shape_fn: Callable[[int, int], tuple[int, ...]] = field(repr=False, compare=False)

    def output_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Shape of one image's features: (Hc, Wc, C) for spatial ones, (D,) for vectors."""
        return self.shape_fn(height, width)


def _handcrafted(name: str, **params) -> Representation:
    params_cls, _, differentiable, description = HANDCRAFTED[name]
    p = params_cls(**params)
    return Representation(name, name, "gray", differentiable, p.as_dict(), description, p.output_shape)


def _layer_shape(backbone: str, layer: str, height: int, width: int) -> tuple[int, ...]:
    """Output shape of one backbone layer (channels last for maps), from :func:`_backbone_shapes`."""
    shape = _backbone_shapes(backbone, height, width)[layer]
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


@cache
def _backbone_shapes(backbone: str, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """Every layer's output shape for one image, from one pass of the network with uninitialised weights (built
    on the meta device, so nothing is initialised; the pass itself on the CPU, 5x quicker to start than one on
    the meta device)."""
    from ..backbones import get_config

    config = get_config(backbone)
    with torch.device("meta"):
        network = config.build()
    with torch.inference_mode():
        out = network.to_empty(device="cpu").forward_layers(torch.zeros(1, 3, height, width), list(config.layers))
    return {name: tuple(value.shape[1:]) for name, value in out.items()}


def get_representation(spec: str, **params) -> Representation:
    """The representation named by ``spec`` ('hog', 'lbp', 'sift', 'alexnet:conv3', ...)."""
    if spec in HANDCRAFTED:
        return _handcrafted(spec, **params)
    if ":" not in spec:
        raise ValueError(f"unknown representation {spec!r}; use hog, lbp, sift or BACKBONE:LAYER")
    from ..backbones import get_config, parse_layers

    backbone, layer = spec.split(":", 1)
    config = get_config(backbone)
    (layer,) = parse_layers(config, layer)
    kind = "conv" if len(_layer_shape(backbone, layer, 224, 224)) == 3 else "vector"
    return Representation(
        spec,
        kind,
        "rgb",
        True,
        {"backbone": backbone, "layer": layer, "input_size": config.preprocess.input_size},
        config.description,
        lambda h, w: _layer_shape(backbone, layer, h, w),
    )


def expand_specs(specs: str) -> list[str]:
    """Split 'hog,lbp,alexnet:conv1-conv5' into single representations, expanding layer ranges."""
    from ..backbones import get_config, parse_layers

    out: list[str] = []
    for spec in filter(None, (s.strip() for s in specs.split(","))):
        if ":" in spec:
            backbone, layers = spec.split(":", 1)
            out += [f"{backbone}:{layer}" for layer in parse_layers(get_config(backbone), layers)]
        else:
            out.append(spec)
    return out


def list_representations() -> list[str]:
    """Every representation name: the hand-crafted ones and each layer of each registered backbone."""
    from ..backbones import get_config, list_backbones

    names = list(HANDCRAFTED)
    for backbone in list_backbones():
        names += [f"{backbone}:{layer}" for layer in get_config(backbone).layers]
    return names
