"""What a stored feature *is*, as a value: the representation (hand-crafted parameters, or a model's layer), how
the input is prepared, and for a model from a source (``hf:FOLDER_OR_ID``, ``timm:NAME``) the hash of its weights'
tensors. Not how it is stored (float16 or float32: a tolerance, tested) and not where the model's folder lies (a
folder the user names is matched by its tensors' hash). Whether a store's feature and a decoder agree is asked of
this value (:func:`check_agree`); which name a store holds it under and where a decoder's model is now, of
:mod:`.lookup`. Free of torch, so the zoo's listing can use it; names are written by :mod:`.names`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from .names import (
    feature_name,
    fused_name,
    fused_parts,
    hash_feature,
    hash_model,
    layer_of,
    portable_name,
    source_model,
)

JOB_FIELDS = ("representation", "extractor_version", "input", "params", "weights_sha256")  # FeatureJob.attrs's
RECORDED = (*JOB_FIELDS, "dtype", "row_shape")  # and how the store holds it
STORAGE = ("dtype",)  # how a feature is stored, not what it is: float16 and float32 features agree


class IdentityError(ValueError):
    """A store's feature and a decoder that do not agree, or a decoder's model that is not where it was: one line."""


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
        return hash_feature(self.backbone, self.weights_sha256, self.layer)

    def location_free(self) -> dict:
        """Its attributes with a source model named by its weights' hash (:attr:`hash_name`)."""
        if not (self.from_source and self.weights_sha256):
            return dict(self.attrs)
        named = hash_model(self.backbone, self.weights_sha256)
        return {**self.attrs, "representation": self.hash_name, "params": {**self.params, "backbone": named}}

    def relocated(self, backbone: str) -> FeatureIdentity:
        """The same feature with its model where ``backbone`` says it is now (a hand-crafted one as it is)."""
        if not self.from_source:
            return self
        attrs = {
            **self.attrs,
            "representation": feature_name(backbone, self.layer),
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
        return layer_of(self.name)

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


def check_agree(store_feature: Identity, decoder: Identity, where: str) -> None:
    """An :class:`IdentityError` in one line unless the store's feature is what the decoder was trained on."""
    problems = store_feature.mismatch(decoder)
    if problems:
        raise IdentityError(
            f"the decoder was trained on features computed differently from those in {where}: " + "; ".join(problems)
        )
