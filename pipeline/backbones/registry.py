"""Registry of pretrained backbones: each entry is one :class:`BackboneConfig`, registered where it is defined.

A config carries everything a call site needs: the network (torchvision/lukemelas state_dict key names), its
named layers in forward order, its preprocessing, and the weight sources tried in order.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import torch
from torch import nn

from ...runtime.suggest import did_you_mean
from ..names import folder_model, layer_parts, source_of, source_ref


@dataclass(frozen=True)
class Preprocess:
    """How a network expects its input: images in [0, 1] RGB are mapped to ``(x * range - mean) / std``; with
    ``crop``, a store feeds squares of ``input_size`` and the network sees their central ``crop`` x ``crop`` (a
    Hugging Face processor's resize, then centre crop)."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pixel_range: float = 1.0
    channel_order: str = "RGB"
    crop: int | None = None
    crop_rounding: str = "floor"  # where an odd margin puts the crop: floor(m / 2) (Hugging Face), round (torchvision)

    def as_dict(self) -> dict:
        out = {
            "input_size": self.input_size,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "pixel_range": self.pixel_range,
            "channel_order": self.channel_order,
        }
        if self.crop_rounding != "floor":  # recorded where it differs, so earlier stores keep their fingerprints
            out["crop_rounding"] = self.crop_rounding
        return out

    def crop_offset(self, side: int) -> int:
        """The first row (column) of the central crop of ``side``: torchvision's ``CenterCrop`` rounds half a margin
        to even (``int(round(m / 2))``), Hugging Face's processors floor it."""
        margin = side - self.crop
        return round(margin / 2.0) if self.crop_rounding == "round" else margin // 2

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise a batch (N, 3, H, W) of RGB images in [0, 1] (centre-cropped to ``crop`` when larger)."""
        if self.crop is not None and min(images.shape[-2:]) > self.crop:
            top, left = self.crop_offset(images.shape[-2]), self.crop_offset(images.shape[-1])
            images = images[..., top : top + self.crop, left : left + self.crop]
        if self.channel_order == "BGR":
            images = images.flip(1)
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images * self.pixel_range - mean) / std


@dataclass(frozen=True)
class WeightSource:
    """One way to obtain a state_dict: ``load()`` returns it or raises :class:`WeightsUnavailable`."""

    name: str
    load: Callable[[], dict[str, torch.Tensor]]
    layers: tuple[str, ...] | None = None  # layers these weights cover; None: all
    present: Callable[[], bool | None] = lambda: None  # cheap check: True/False, None when unknown (download)


@dataclass(frozen=True)
class BackboneConfig:
    """A registered backbone: network builder, layers in forward order, preprocessing and weight sources."""

    name: str
    build: Callable[[], nn.Module]
    layers: tuple[str, ...]
    preprocess: Preprocess
    sources: tuple[WeightSource, ...]
    description: str = ""
    class_score_layer: str | None = None
    tour_layers: str | None = None  # the layers ``preimage tour`` shows (a spec: 'conv1-conv5'); None: not toured


_REGISTRY: dict[str, BackboneConfig] = {}
# built-in backbones by the module that registers each, imported on first use (so importing the registry costs
# no network definitions); plug-ins declare theirs in the ``preimage.backbones`` entry-point group the same way
_BUILTIN = {"alexnet": "alexnet", "vgg16": "vgg", "efficientnet_lite0": "efficientnet_lite"}
ENTRY_POINTS = "preimage.backbones"
# model sources named by a prefix (``hf:facebook/dinov2-small``): module and function building a config by name
_SOURCES = {"hf": ("huggingface", "hf_backbone_config"), "timm": ("timm_models", "timm_backbone_config")}
# models loaded from a source on first use in this process: named by hf:/timm: specs, not part of the listings
_SOURCED: set[str] = set()


@functools.cache
def _plugins() -> dict[str, object]:
    """Backbones that installed packages declare: name -> entry point (whose module registers it on import)."""

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS)}


def computable_layers(config: BackboneConfig) -> tuple[tuple[str, ...], str]:
    """Layers the first locally present weight source covers, and its name (empty when none is present)."""
    for source in config.sources:
        if source.present():
            return (source.layers or config.layers), source.name
    return (), ""


def register_backbone(config: BackboneConfig) -> BackboneConfig:
    """Add a backbone to the registry (names are unique)."""
    if config.name in _REGISTRY:
        raise ValueError(f"backbone {config.name!r} is registered twice")
    _REGISTRY[config.name] = config
    return config


def builtin(name: str) -> bool:
    """Whether ``name`` is one of the backbones that ship with preimage."""
    return name in _BUILTIN


def list_backbones() -> list[str]:
    """Names of all backbones: built in, declared by plug-ins, and registered at run time; not the models from a
    source (hf:, timm:) used so far, whose folders may since have moved (``features --model`` lists one)."""
    return sorted((set(_REGISTRY) - _SOURCED) | set(_BUILTIN) | set(_plugins()))


def canonical_model(name: str) -> str:
    """A model in a local Hugging Face folder named by the folder's absolute path (``hf:./tiny-dino`` ->
    ``hf:/home/u/tiny-dino``), so that one folder is one name from any working folder; other names as they are."""
    ref = source_ref(name)
    if source_of(name) == "hf" and ref and Path(ref).expanduser().is_dir():
        return folder_model(Path(ref).expanduser().resolve())
    return name


def get_config(name: str) -> BackboneConfig:
    """The config of a backbone (its module imported on first use), or a clear error listing the known names."""
    name = canonical_model(name)
    if name not in _REGISTRY:
        if name in _BUILTIN:
            importlib.import_module(f"{__package__}.{_BUILTIN[name]}")
        elif name in _plugins():
            _plugins()[name].load()
        elif source_of(name) in _SOURCES:
            module, function = _SOURCES[source_of(name)]
            register_backbone(getattr(importlib.import_module(f"{__package__}.{module}"), function)(name))
            _SOURCED.add(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        sources = ", ".join(f"{prefix}:NAME" for prefix in _SOURCES)
        close = did_you_mean(name, list_backbones())
        hint = f"{close} " if close else ""
        raise KeyError(
            f"unknown backbone {name!r}; {hint}known: {', '.join(list_backbones())}, or a model from a source "
            f"({sources})"
        ) from None


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the index order of every ImageNet classifier here (from the Keras
    class index, as pytorch/hub ships it)."""
    text = (Path(__file__).parent / "imagenet_classes.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def parse_layers(config: BackboneConfig, spec: str | Sequence[str], companions: bool = True) -> tuple[str, ...]:
    """Layers named by ``spec``: 'conv3', 'conv1-conv5' (a range in forward order), 'conv1+fc6', or a list. A layer's
    own name always wins over reading a '-' in it as a range (``ViT-B-32``-style names pass through). A range keeps
    the layers as deep as its ends (``encoder.layer.0-encoder.layer.11``: the blocks, not their sublayers). A layer
    brings its companions (``LAYER#prefix``: a transformer layer's class tokens), so nothing is dropped unasked."""
    layers = config.layers
    parts = layer_parts(spec) if isinstance(spec, str) else list(spec)
    chosen: list[str] = []
    for part in parts:
        if part in layers:
            chosen.append(part)
            if companions:  # its companions: a transformer layer's class tokens
                chosen += [layer for layer in layers if layer.startswith(part + "#")]
            continue
        ends = [(part[:i], part[i + 1 :]) for i, c in enumerate(part) if c == "-"]
        ranges = [(a, b) for a, b in ends if a in layers and b in layers]
        if not ranges:
            unknown = ([end for end in ends[0] if end not in layers][:1] if len(ends) == 1 else []) or [part]
            raise ValueError(f"{config.name} has no layer {unknown[0]!r}; {layer_hint(unknown[0], layers)}")
        if len(ranges) > 1:
            raise ValueError(f"cannot read layer range {part!r}; write FIRST-LAST, e.g. conv1-conv5")
        lo, hi = layers.index(ranges[0][0]), layers.index(ranges[0][1])
        while companions and hi + 1 < len(layers) and layers[hi + 1].startswith(layers[hi].split("#")[0] + "#"):
            hi += 1  # the last layer's companions come with it
        if lo > hi:
            raise ValueError(f"layer range {part!r} runs backwards; {config.name} layers go {layers}")
        depth = ranges[0][0].count(".")
        ends = set(ranges[0])  # without companions, a range's companions stay out unless it names one as an end
        chosen.extend(
            layer
            for layer in layers[lo : hi + 1]
            if layer.count(".") == depth and (companions or "#" not in layer or layer in ends)
        )
    return tuple(dict.fromkeys(chosen))


def layer_hint(name: str, layers: Sequence[str]) -> str:
    """The closest layer names, then all of them where they are few (a transformer has hundreds)."""
    close = did_you_mean(name, layers)
    hint = f"{close} " if close else ""
    if len(layers) <= 24:
        return hint + f"its layers are {', '.join(layers)}"
    return hint + f"it has {len(layers)} layers (preimage features --model NAME lists them)"


class TappedSequence(nn.Module):
    """Base for networks run as a flat sequence of steps, some of which are named layers (taps).

    Subclasses build their modules with the reference key names and return the steps from ``steps()``;
    ``forward_layers`` runs them and stops as soon as every requested layer has been produced.
    """

    def steps(self) -> list[tuple[str | None, Callable[[torch.Tensor], torch.Tensor]]]:
        raise NotImplementedError

    def forward_layers(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        for tap, step in self._steps():
            x = step(x)
            if tap in wanted:
                out[tap] = x
                if len(out) == len(wanted):
                    break
        return out

    def _steps(self):
        if "_cached_steps" not in self.__dict__:
            self._cached_steps = self.steps()  # a plain list: nn.Module stores it as an ordinary attribute
        return self._cached_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _, step in self._steps():
            x = step(x)
        return x


class TorchvisionClassifier(TappedSequence):
    """torchvision's ``features`` / ``avgpool`` / ``classifier`` layout; subclasses name the taps by index.

    Every tap follows a ReLU or a pool and feeds a conv or linear layer, so torchvision's in-place ReLUs (which
    overwrite conv outputs, never taps) are kept: a tapped tensor is never modified afterwards.
    """

    FEATURE_TAPS: dict[int, str] = {}
    CLASSIFIER_TAPS: dict[int, str] = {}

    def steps(self):
        steps = [(self.FEATURE_TAPS.get(i), m) for i, m in enumerate(self.features)]
        steps += [(None, self.avgpool), (None, lambda x: torch.flatten(x, 1))]
        steps += [(self.CLASSIFIER_TAPS.get(i), m) for i, m in enumerate(self.classifier)]
        return steps
