"""The three ways preimage inverts a representation, behind one protocol and one loader.

An :class:`Inverter` maps inputs to images (N, C, T, T) in [0, 1]: a trained decoder (Dosovitskiy & Brox) and a
HOGgles paired dictionary (Vondrick et al.) take stored features, an autoencoder run takes images
(``takes == "images"``), and :class:`Optimization` (Mahendran & Vedaldi) takes features and finds pixels by
gradient descent. :func:`load_inverter` loads either trained kind from what :func:`~.locate.locate` resolves
(a run folder, a file, a shipped name); a decoder alone: :func:`~preimage.train.models.loading.load_decoder`.
Importing this module costs no dask, click or cv2.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ...cache.store import FeatureStore
from ..models.loading import decoder_of
from ..models.locate import Located, locate
from .hoggles import load_hoggles
from .optimize import OptimizeConfig, Target, optimize


@runtime_checkable
class Inverter(Protocol):
    """What every inversion method offers: what it takes (``features`` or ``images``) and a call from those to
    images (N, C, T, T) in [0, 1] (C = 1 for a gray method such as HOGgles)."""

    takes: str

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor: ...


class Optimization(nn.Module):
    """Mahendran & Vedaldi's inversion as an :class:`Inverter`: features (N, ...) -> the first restart's pre-images."""

    takes = "features"

    def __init__(self, target: Target, config: OptimizeConfig | None = None, progress=None) -> None:
        super().__init__()
        self.target, self.config, self.progress = target, config or OptimizeConfig(), progress

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return optimize(self.target, features, self.config, self.progress).images[:, 0]


def load_inverter(
    run: str | os.PathLike | Located, store: FeatureStore | None = None, feature: str | None = None
) -> nn.Module:
    """The trained inverter ``run`` names, a decoder or a HOGgles dictionary, checked against ``store`` as
    :func:`~preimage.train.models.loading.load_decoder` does."""
    located = locate(run)
    if located.method == "hoggles":
        return load_hoggles(located, store)
    return decoder_of(located, store, feature)
