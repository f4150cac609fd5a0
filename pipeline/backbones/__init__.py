"""Pretrained CNN backbones behind one registry: ``list_backbones()``, ``create_backbone(name)``.

Adding a backbone is one module that defines the network and calls :func:`register_backbone`; built-in ones are
named in ``registry._BUILTIN`` and imported on first use, a plug-in's through the ``preimage.backbones`` entry points.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .hooks import HookedModel
from .registry import (
    BackboneConfig,
    Preprocess,
    get_config,
    imagenet_class_names,
    list_backbones,
    parse_layers,
    register_backbone,
)
from .weights import WeightsUnavailable, load_state_dict, state_dict_digest

__all__ = [
    "RANDOM_WEIGHTS",
    "Backbone",
    "BackboneConfig",
    "Preprocess",
    "WeightsUnavailable",
    "create_backbone",
    "get_config",
    "imagenet_class_names",
    "list_backbones",
    "parse_layers",
    "register_backbone",
]
log = logging.getLogger(__name__)
RANDOM_WEIGHTS = "random"  # --weights random: a randomly initialised model, asked for explicitly and recorded so


@dataclass(frozen=True)
class LoadedWeights:
    """Which source delivered the weights, what they cover and their hash."""

    source: str
    layers: tuple[str, ...]
    sha256: str
    tried: tuple[str, ...]  # "source: why it was skipped" for each source tried before


class Backbone(nn.Module):
    """A registered network with its weights and preprocessing: images in [0, 1] RGB in, layers out."""

    def __init__(self, config: BackboneConfig, network: nn.Module, weights: LoadedWeights) -> None:
        super().__init__()
        self.config = config
        self.network = network.eval()
        self.weights = weights

    def forward(self, images: torch.Tensor, layers: str | Sequence[str]) -> dict[str, torch.Tensor]:
        """Outputs of ``layers`` (e.g. 'conv1-conv5') for RGB images (N, 3, H, W) in [0, 1], in one pass."""
        names = self.check_layers(layers)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.config.name}: expected RGB images (N, 3, H, W), got {tuple(images.shape)}")
        return self.network.forward_layers(self.config.preprocess(images), names)

    def check_layers(self, layers: str | Sequence[str]) -> list[str]:
        """The layer names ``layers`` stands for; an error saying how to get weights for any not covered."""
        names = parse_layers(self.config, layers)
        missing = [name for name in names if name not in self.weights.layers]
        if missing:
            raise WeightsUnavailable(
                f"{self.config.name} layers {', '.join(missing)} need full weights, but the loaded ones "
                f"({self.weights.source}) cover only {', '.join(self.weights.layers)}. Supply the full "
                f"torchvision file with --weights FILE (or create_backbone(..., weights=FILE)), or put it in "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'}"
            )
        return names


def _layers_without(network: torch.nn.Module, config: BackboneConfig, missing: list[str]) -> tuple[str, ...]:
    """The layers whose values do not depend on the ``missing`` parameters: those are set to NaN (and stay so,
    so that nothing downstream of them can pass for a feature) and one forward pass of a blank image shows which
    layers come out finite."""
    values = dict(network.named_parameters()) | dict(network.named_buffers())
    size = config.preprocess.input_size
    with torch.no_grad():
        for key in missing:
            if values[key].is_floating_point():
                values[key].fill_(float("nan"))
        out = network.eval().forward_layers(torch.zeros(1, 3, size, size), config.layers)
    return tuple(layer for layer in config.layers if layer in out and bool(torch.isfinite(out[layer]).all()))


def _own_keys(network: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A file of a hooked model's own keys (``blocks.0.attn.qkv.weight``, as timm and ``save_pretrained`` write
    them) named as the wrapper holds them (``model.blocks...``); other files as they are."""
    if isinstance(network, HookedModel) and state and not any(key.startswith("model.") for key in state):
        return {f"model.{key}": value for key, value in state.items()}
    return state


_SEEDING = threading.Lock()


def create_backbone(name: str, weights: str | Path | None = None, random_init: bool = False) -> Backbone:
    """Build a registered backbone with real weights, trying sources in order and reporting which one won.

    Order: ``weights`` (an explicit file, if given), then the config's sources (hub cache, download,
    registry packages). ``random_init=True`` keeps the random initialisation (a control for probes).
    """
    config = get_config(name)
    if random_init:
        # seed 0 in a generator of its own: threads building models at once (dask's in-process workers) draw the
        # same weights, and the caller's random state is left as it was
        with _SEEDING, torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            network = config.build()
    else:
        network = config.build()
    if random_init:
        loaded = LoadedWeights("random initialisation", config.layers, state_dict_digest(network.state_dict()), ())
        return Backbone(config, network, loaded)
    tried: list[str] = []
    if weights:  # a file the user named: it loads or it is the error, never skipped for another source
        given = _own_keys(network, load_state_dict(weights))
        candidates = [(f"file {weights}", lambda: given, None)]
    else:
        candidates = [(s.name, s.load, s.layers) for s in config.sources]
    for label, load, layers in candidates:
        try:
            state = load()
        except WeightsUnavailable as err:
            tried.append(f"{label}: {err}")
            log.info("%s weights: skipped %s (%s)", name, label, err)
            continue
        try:
            result = network.load_state_dict(state, strict=False)
        except RuntimeError as err:  # a parameter of another shape
            detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
            raise WeightsUnavailable(f"{label} does not fit {name}: {detail}") from None
        if result.unexpected_keys:
            raise WeightsUnavailable(f"{label} has keys {name} does not know: {result.unexpected_keys[:5]}")
        covered = tuple(layers) if layers else config.layers
        if result.missing_keys and not layers:  # e.g. a file of the convolutional layers only
            covered = _layers_without(network, config, result.missing_keys)
            if not covered:
                tried.append(f"{label}: covers none of {name}'s layers (lacks {', '.join(result.missing_keys[:3])})")
                network = config.build()
                continue
        loaded = LoadedWeights(label, covered, state_dict_digest(state), tuple(tried))
        log.info("%s weights: %s", name, label)
        return Backbone(config, network, loaded)
    if len(tried) == 1:
        raise WeightsUnavailable(tried[0].split(": ", 1)[1])
    raise WeightsUnavailable(f"no weights for {name}; tried:\n  " + "\n  ".join(tried))
