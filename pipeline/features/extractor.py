"""Any representation as one ``nn.Module``: ``Extractor("alexnet:conv3")(images)`` gives the features exactly as a
store holds them (hand-crafted grids channels last, CNN maps channels first)."""

from __future__ import annotations

import torch
from torch import nn

from ..backbones.hooks import HookedModel
from ..backbones.registry import layer_hint
from ..checks import ImageInputError, as_tensor
from .representation import get_representation


def as_rgb_batch(images: torch.Tensor, name: str) -> torch.Tensor:
    """A float colour batch as (N, 3, H, W): channels first as it is, channels last moved (docs/python.md,
    "Channel layouts"); a clear error for anything else."""
    x = as_tensor(images, name)
    if x.ndim == 3 and 3 in (x.shape[0], x.shape[-1]):
        raise ImageInputError(f"{name}: got shape {tuple(x.shape)}, one colour image; pass a batch: images[None]")
    if x.ndim != 4 or 3 not in (x.shape[1], x.shape[-1]):
        raise ImageInputError(f"{name}: expected colour images (N, 3, H, W) or (N, H, W, 3), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ImageInputError(f"{name}: expected float pixels in [0, 1], got {x.dtype}; use images.float() / 255")
    return x if x.shape[1] == 3 else x.permute(0, 3, 1, 2)


class Extractor(nn.Module):
    """One representation (``hog``, ``lbp``, ``sift``, ``MODEL:LAYER``) of a batch of images in [0, 1].

    Hand-crafted ones take gray (N, H, W) or colour batches (made gray with MATLAB's weights) and return
    (N, Hc, Wc, C); CNN layers take colour (N, 3, H, W) or (N, H, W, 3), apply the backbone's own preprocessing
    and return (N, C, H, W) maps or (N, D) vectors. Images are used at the size given: resize them to
    ``input_size`` (``alexnet``: 224) to match a store.
    """

    def __init__(self, spec: str, weights: str | None = None, **params) -> None:
        super().__init__()
        self.representation = get_representation(spec, **params)
        self.spec = spec
        self.module = self.representation.load(weights)

    @property
    def backbone(self) -> nn.Module | None:
        """The backbone that computes a CNN layer (None for a hand-crafted representation)."""
        return self.module if self.representation.backbone is not None else None

    @property
    def input_size(self) -> int | None:
        """The side a store feeds this representation (None: the store's ``--size``)."""
        return self.representation.input_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.representation.input == "gray":
            return self.module(images)
        return self.representation.compute(self.module, as_rgb_batch(images, self.spec))[self.spec]

    def extra_repr(self) -> str:
        return f"{self.spec!r}, input {self.representation.input}, {self.representation.params}"


class ModuleRepresentation(nn.Module):
    """A layer of the user's own network: its output for images in [0, 1], taken with a forward hook
    (:mod:`..backbones.hooks`), after ``preprocess`` (a :class:`~..backbones.registry.Preprocess`, or None for
    none)."""

    def __init__(self, module: nn.Module, layer: str, preprocess=None) -> None:
        super().__init__()

        names = [name for name, _ in module.named_modules() if name]
        if layer not in names:
            raise ValueError(f"the module has no submodule {layer!r}; {layer_hint(layer, names)}")
        self.network = HookedModel(module.eval())
        self.layer = layer
        self.preprocess = preprocess

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = as_rgb_batch(images, self.layer)
        if self.preprocess is not None:
            x = self.preprocess(x)
        return self.network.forward_layers(x, [self.layer])[self.layer]

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}, preprocess={self.preprocess}"


def representation(
    spec: str | nn.Module, layer: str | None = None, preprocess=None, weights: str | None = None, **params
) -> nn.Module:
    """Any representation as an ``nn.Module`` (images in [0, 1] in, features as a store holds them out): a spec
    (``"hog"``, ``"alexnet:conv3"``, ``"hf:facebook/dinov2-small:encoder.layer.8"``) or your own network with the
    path of one of its submodules (``representation(net, layer="layer3", preprocess=Preprocess(...))``)."""
    if isinstance(spec, nn.Module):
        if layer is None:
            raise ValueError("a module needs layer=, the name of one of its submodules (module.named_modules())")
        return ModuleRepresentation(spec, layer, preprocess)
    if layer is not None or preprocess is not None:
        raise ValueError(f"{spec!r} names its layer itself; layer= and preprocess= are for your own module")
    return Extractor(spec, weights, **params)
