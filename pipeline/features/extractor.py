"""Any representation as one ``nn.Module``: ``Extractor("alexnet:conv3")(images)`` gives the features exactly as a
store holds them (hand-crafted grids channels last, CNN maps channels first)."""

from __future__ import annotations

import torch
from torch import nn

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
