"""The three ways preimage inverts a representation, behind one protocol and one loader.

An :class:`Inverter` maps inputs to images (N, C, T, T) in [0, 1]: a trained decoder (Dosovitskiy & Brox) and a
HOGgles paired dictionary (Vondrick et al.) take stored features, an autoencoder run takes images
(``takes == "images"``), and :class:`Optimization` (Mahendran & Vedaldi) takes features and finds pixels by
gradient descent. :func:`load_inverter` loads either trained kind from what :func:`~.locate.locate` resolves
(a run folder, a file, a shipped name). Importing this module costs no dask, click or cv2.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..cache.store import FeatureStore
from ..pipeline import identity
from . import checkpoint
from .decoders import Decoder, DecoderConfig, create_decoder
from .locate import Located, locate
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


def check_store(located: Located, store: FeatureStore | None, feature: str | None = None) -> None:
    """With a ``store``: refused in one line unless its ``feature`` (default: what the decoder was trained on, found
    by identity) was computed as the training features were (``identity.check_store``)."""
    if store is not None:
        identity.check_store(store, located.identity, feature)


def load_decoder(
    run: str | os.PathLike | Located, store: FeatureStore | None = None, feature: str | None = None
) -> Decoder:
    """The trained decoder of a run folder, a checkpoint file or a shipped representation (``"hog"``,
    ``"alexnet:conv5"``), in float32; with ``store``, refused unless that store's ``feature`` was computed exactly
    as the training features were. The header is checked (bounds, then every tensor's shape against the decoder it
    describes, built on the meta device) before anything is allocated."""
    located = locate(run)
    if located.method != "decoder":
        raise checkpoint.CheckpointError(
            f"{located.path}: a HOGgles dictionary, not a decoder; load it with load_inverter"
        )
    return _decoder(located, store, feature)


def load_inverter(
    run: str | os.PathLike | Located, store: FeatureStore | None = None, feature: str | None = None
) -> nn.Module:
    """The trained inverter ``run`` names, a decoder or a HOGgles dictionary, checked against ``store`` as
    :func:`load_decoder` does."""
    located = locate(run)
    if located.method == "hoggles":
        from .hoggles import load_hoggles

        return load_hoggles(located, store)
    return _decoder(located, store, feature)


def _decoder(located: Located, store: FeatureStore | None, feature: str | None) -> Decoder:
    path, header = located.path, located.header
    checkpoint.check_decoder_header(path, header["decoder"])
    try:
        config = DecoderConfig.from_dict(header["decoder"])
        with torch.device("meta"):
            skeleton = create_decoder(config)
    except (KeyError, TypeError, ValueError) as err:
        problem = f"{path}: its header describes no decoder this preimage builds ({err})"
        raise checkpoint.CheckpointError(problem) from None
    checkpoint.check_shapes(path, skeleton, "model.decoder." if located.autoencoder else "model.")
    model = create_decoder(config)
    if located.autoencoder:
        from .autoencoder import AutoEncoder

        model = AutoEncoder(header["autoencoder"], model, pretrained=False)  # the weights come from the checkpoint
    checkpoint.load(path, model)
    check_store(located, store, feature)
    return model.eval()
