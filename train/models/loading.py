"""Load a trained decoder from what :func:`~.locate.locate` resolves (a run folder, a checkpoint file, a shipped
name), checked before anything is allocated and, with a store, against the store's feature (``identity``)."""

from __future__ import annotations

import os

import torch

from ...cache.store import FeatureStore
from ...pipeline import lookup
from . import checkpoint
from .autoencoder import AutoEncoder
from .decoders import Decoder, DecoderConfig, create_decoder
from .locate import Located, locate


def check_store(located: Located, store: FeatureStore | None, feature: str | None = None) -> None:
    """With a ``store``: refused in one line unless its ``feature`` (default: what the decoder was trained on, found
    by identity) was computed as the training features were (``lookup.check_store``)."""
    if store is not None:
        lookup.check_store(store, located.identity, feature)


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
    return decoder_of(located, store, feature)


def decoder_of(located: Located, store: FeatureStore | None, feature: str | None) -> Decoder:
    """The decoder of a located decoder file (:func:`load_decoder` once it is known to be one)."""
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
        model = AutoEncoder(header["autoencoder"], model, pretrained=False)  # the weights come from the checkpoint
    checkpoint.load(path, model)
    check_store(located, store, feature)
    return model.eval()
