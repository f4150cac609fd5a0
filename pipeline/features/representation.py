"""The one resolver from a spec to a :class:`Representation`, used by every caller (extraction, decoders, the
optimisation, the autoencoder, the commands).

Spec grammar (several specs are separated by commas)::

    hog | lbp | sift              a hand-crafted representation
    MODEL:LAYERS                  layers of a model; MODEL is everything before the last ':', so names such as
                                  ``ViT-B-32`` or ``hf-hub:timm/vit_small`` pass through whole
    LAYERS = PART ('+' PART)*     e.g. ``conv2+fc6``
    PART = LAYER | FIRST-LAST     a layer name as the model spells it (``stages.2``, ``conv5_3``), or a range in
                                  forward order; a '-' splits a range only where the whole part is no layer name

To extract, ``MODEL:LAYERS`` stands for each of its layers (:func:`expand_specs`); as one representation
(:func:`get_representation`: what a decoder reads) several layers are one *fused* representation, the layers
read together (``alexnet:conv3+conv4+conv5``, ``alexnet:conv1-conv5``): a store holding each layer holds it.

A representation knows what it is (``kind``): ``grid`` (hand-crafted cells, stored (H, W, C)), ``map`` (a
convolutional layer, stored (C, H, W)), ``tokens`` (a transformer's sequence), ``vector`` (D,) or ``fused``
(maps of one model, each row flattened one after the other: :func:`fuse_rows`); the decoder family that inverts
it follows from that (:attr:`Representation.decoder`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import torch
from torch import nn

from ...runtime.suggest import did_you_mean
from ..backbones import RANDOM_WEIGHTS, create_backbone, get_config, list_backbones, parse_layers
from ..backbones.hooks import build_for_shapes
from ..backbones.registry import builtin, canonical_model
from ..images import rgb_to_gray
from ..names import feature_name, split_feature
from .hog import HOG, HogParams, hog_torch
from .lbp import LBP, LbpParams
from .sift import SiftParams, SparseSIFT


@dataclass(frozen=True)
class Handcrafted:
    """A hand-crafted representation: its parameters, its module, and its gradient when it has one."""

    name: str
    params_cls: type
    module_cls: type[nn.Module]  # module(params)(gray images) -> (N, Hc, Wc, C)
    description: str
    gradient: Callable[..., torch.Tensor] | None = None  # the same in torch ops, any device: None when not
    # differentiable (a detector decides, or the codes are discrete)
    pixel_mean: float = 0.5  # what the optimisation subtracts from gray pixels (the paper feeds HOG 255 * gray - 128)


HANDCRAFTED: dict[str, Handcrafted] = {
    h.name: h
    for h in (
        Handcrafted("hog", HogParams, module_cls=HOG, description="VLFeat UoCTTI HOG (vl_hog)", gradient=hog_torch),
        Handcrafted("lbp", LbpParams, LBP, "VLFeat uniform LBP (vl_lbp)"),
        Handcrafted("sift", SiftParams, SparseSIFT, "sparse SIFT keypoints on a d x d grid"),
    )
}


@dataclass(frozen=True)
class Representation:
    """A computable representation: its name, what it is, its input, parameters and output layout."""

    name: str
    kind: str  # 'grid' | 'map' | 'tokens' | 'vector' (see the module's docstring)
    input: str  # 'gray' (N, H, W) or 'rgb' (N, 3, H, W), floats in [0, 1]
    differentiable: bool
    params: dict  # recorded in a store's fingerprint: change nothing here for an existing representation
    description: str
    shape_fn: Callable[[int, int], tuple[int, ...]] = field(repr=False, compare=False)
    backbone: str | None = None  # the model whose layer this is; None for a hand-crafted one
    layer: str | None = None  # its layer (None: hand-crafted or fused)
    parts: tuple[Representation, ...] = ()  # a fused representation's layers, in the order its rows hold them

    def output_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Shape of one image's features: (Hc, Wc, C) for spatial ones, (D,) for vectors."""
        return self.shape_fn(height, width)

    def stored_shape(self, size: int) -> tuple[int, ...]:
        """One row as a store holds it at input side ``size``: grids (H, W, C), maps as torch gives them (C, H, W)."""
        shape = self.output_shape(size, size)
        return (shape[2], shape[0], shape[1]) if self.kind == "map" else shape

    @property
    def channels_last(self) -> bool:
        """Whether a stored row keeps its channels last (the hand-crafted grids)."""
        return self.kind == "grid"

    @property
    def decoder(self) -> str:
        """The decoder family that inverts it (``train.models.decoders``' registry key): its kind."""
        return self.kind

    @property
    def input_size(self) -> int | None:
        """The side a store feeds this representation (None: the store's ``--size``)."""
        return self.params.get("input_size")

    @property
    def strategy(self) -> Computation:
        """How it is computed: :class:`HandcraftedComputation`, :class:`LayerComputation` (a model's layer) or
        :class:`FusedComputation`."""
        return _HANDCRAFTED if self.backbone is None else _FUSED if self.parts else _LAYER

    @property
    def layers(self) -> tuple[str, ...]:
        """The model's layers it reads: its own, or a fused one's (none for a hand-crafted one)."""
        return tuple(p.layer for p in self.parts) if self.parts else (self.layer,) if self.layer else ()

    @property
    def handcrafted(self) -> Handcrafted | None:
        """The registry entry of a hand-crafted representation (None for a model's layer)."""
        return HANDCRAFTED.get(self.name) if self.backbone is None else None

    @property
    def class_scores(self) -> bool:
        """Whether it is a classifier's layer of class scores (its model's ``class_score_layer``)."""
        return self.strategy.class_scores(self)

    @property
    def group(self) -> str:
        """Representations of one group are computed by one module in one pass (a backbone's layers)."""
        return self.backbone or self.name

    @property
    def module_key(self) -> tuple:
        """What tells one loaded module from another: a model's layers share theirs, a hand-crafted representation's
        module is its parameters."""
        return self.strategy.module_key(self)

    def load(self, weights: str | None = None) -> nn.Module:
        """The module that computes this representation's group: the hand-crafted module, or the backbone with
        its weights (``weights``: an explicit file; hand-crafted ones have none)."""
        return self.strategy.load(self, weights)

    def check(self, module: nn.Module) -> None:
        """An error now, not on a worker, when ``module``'s weights cannot compute this representation."""
        self.strategy.check(self, module)

    def weights_sha256(self, module: nn.Module) -> str | None:
        """The hash of the weights ``module`` computes this representation with (None: it has none)."""
        return self.strategy.weights_sha256(module)

    def gradient_form(self, weights: str | None = None, device: torch.device | None = None) -> GradientForm:
        """This representation with a gradient, on ``device`` (an error when it has none)."""
        if not self.differentiable:
            raise ValueError(
                f"{self.name} is not differentiable ({self.description}), so it cannot be inverted by optimisation; "
                f"train a decoder instead: preimage train --feature {self.name} ..., then preimage invert --decoder RUN"
            )
        return self.strategy.gradient_form(self, weights, device)

    def compute(self, module: nn.Module, rgb: torch.Tensor, others: Sequence[Representation] = ()) -> dict:
        """This representation and ``others`` of its group from RGB images (N, 3, H, W) in [0, 1] by ``module``
        (:meth:`load`), in one pass: {name: features as stored}."""
        return self.strategy.compute(self, module, rgb, others)


class Computation:
    """How one kind of representation is computed (a strategy: the representation itself is data)."""

    def module_key(self, rep: Representation) -> tuple:
        raise NotImplementedError

    def load(self, rep: Representation, weights: str | None) -> nn.Module:
        raise NotImplementedError

    def check(self, rep: Representation, module: nn.Module) -> None:
        """Nothing to check by default."""

    def weights_sha256(self, module: nn.Module) -> str | None:
        return None

    def class_scores(self, rep: Representation) -> bool:
        return False

    def gradient_form(self, rep: Representation, weights: str | None, device: torch.device | None) -> GradientForm:
        raise NotImplementedError

    def compute(self, rep: Representation, module: nn.Module, rgb: torch.Tensor, others: Sequence) -> dict:
        raise NotImplementedError


class HandcraftedComputation(Computation):
    """HOG, LBP, SIFT: a module built from the parameters, fed gray images; no weights."""

    def module_key(self, rep: Representation) -> tuple:
        return (rep.name, tuple(sorted(rep.params.items())))

    def load(self, rep: Representation, weights: str | None) -> nn.Module:
        return rep.handcrafted.module_cls(rep.handcrafted.params_cls(**rep.params))

    def gradient_form(self, rep: Representation, weights: str | None, device: torch.device | None) -> GradientForm:
        entry = rep.handcrafted
        params = entry.params_cls(**rep.params)
        phi = lambda x: entry.gradient(x[:, 0], params)  # noqa: E731
        return GradientForm(phi, 1, pixel_mean=(entry.pixel_mean,), size=None, layers=(rep.name,), layer=rep.name)

    def compute(self, rep: Representation, module: nn.Module, rgb: torch.Tensor, others: Sequence) -> dict:

        return {rep.name: module(rgb_to_gray(rgb))}


class LayerComputation(Computation):
    """A model's layer: the backbone with its weights, read with forward hooks, several layers in one pass."""

    def module_key(self, rep: Representation) -> tuple:
        return (rep.backbone,)

    def load(self, rep: Representation, weights: str | None) -> nn.Module:

        random = weights == RANDOM_WEIGHTS
        network = create_backbone(rep.backbone, None if random else weights, random_init=random)
        network.check_layers(rep.layer)
        return network

    def check(self, rep: Representation, module: nn.Module) -> None:
        module.check_layers(rep.layer)

    def weights_sha256(self, module: nn.Module) -> str | None:
        return module.weights.sha256

    def class_scores(self, rep: Representation) -> bool:

        return get_config(rep.backbone).class_score_layer == rep.layer

    def gradient_form(self, rep: Representation, weights: str | None, device: torch.device | None) -> GradientForm:
        network = rep.load(weights).requires_grad_(False).to(device)
        return GradientForm(
            lambda x: network(x, [rep.layer])[rep.layer],
            3,
            pixel_mean=tuple(network.config.preprocess.mean),
            size=rep.input_size,
            layers=network.config.layers,
            layer=rep.layer,
        )

    def compute(self, rep: Representation, module: nn.Module, rgb: torch.Tensor, others: Sequence) -> dict:
        wanted = (rep, *others)
        outputs = module(rgb, list(dict.fromkeys(layer for r in wanted for layer in r.layers)))
        return {r.name: fuse_rows([outputs[x] for x in r.layers]) if r.parts else outputs[r.layer] for r in wanted}


class FusedComputation(LayerComputation):
    """Several layers of one model read together: one pass, each layer's rows flattened one after the other."""

    def load(self, rep: Representation, weights: str | None) -> nn.Module:
        network = super().load(rep.parts[0], weights)
        self.check(rep, network)
        return network

    def check(self, rep: Representation, module: nn.Module) -> None:
        for part in rep.parts:
            module.check_layers(part.layer)

    def class_scores(self, rep: Representation) -> bool:
        return False

    def gradient_form(self, rep: Representation, weights: str | None, device: torch.device | None) -> GradientForm:
        raise ValueError(
            f"{rep.name} reads several layers at once, which only a decoder inverts: preimage train --feature "
            f"{rep.name} ..., or optimise one layer (--feature {rep.parts[-1].name})"
        )


_HANDCRAFTED, _LAYER, _FUSED = HandcraftedComputation(), LayerComputation(), FusedComputation()


@dataclass(frozen=True)
class GradientForm:
    """A representation as a function with a gradient, for the optimisation: images (N, C, S, S) in [0, 1] (C = 1
    for gray ones) -> features as stored, with the pixel mean the input is centred on, its input side (None: any),
    and its model's layers with its own (a hand-crafted representation is a model of one layer)."""

    phi: Callable[[torch.Tensor], torch.Tensor]
    channels: int
    pixel_mean: tuple[float, ...]
    size: int | None
    layers: tuple[str, ...]
    layer: str


def split_spec(spec: str) -> tuple[str, str | None]:
    """(model, layers) of ``MODEL:LAYERS``; (name, None) for a hand-crafted one."""
    if spec in HANDCRAFTED:
        return spec, None
    model, layers = split_feature(spec)
    if layers is None:
        close = did_you_mean(spec, [*HANDCRAFTED, *(f"{b}:LAYER" for b in list_backbones())])
        hint = f"{close} " if close else ""
        raise ValueError(
            f"unknown representation {spec!r}; {hint}use hog, lbp, sift or MODEL:LAYER (e.g. "
            "alexnet:conv3; preimage features lists them)"
        )

    return canonical_model(model), layers


def _handcrafted(name: str, **params) -> Representation:
    entry = HANDCRAFTED[name]
    p = entry.params_cls(**params)
    differentiable = entry.gradient is not None
    return Representation(
        name,
        "grid",
        input="gray",
        differentiable=differentiable,
        params=p.as_dict(),
        description=entry.description,
        shape_fn=p.output_shape,
    )


@cache
def _backbone_shapes(backbone: str, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """Every layer's output shape for one image, from one pass of the network with zero weights (nothing is
    initialised; the pass itself on the CPU, 5x quicker to start than one on the meta device)."""

    config = get_config(backbone)
    network = build_for_shapes(config.build)
    with torch.inference_mode():
        images = config.preprocess(torch.zeros(1, 3, height, width))  # a centre crop where the model takes one
        out = network.forward_layers(images, list(config.layers))
    return {name: tuple(value.shape[1:]) for name, value in out.items()}


def _layer_shape(backbone: str, layer: str, height: int, width: int) -> tuple[int, ...]:
    """Output shape of one backbone layer (channels last for maps)."""
    shape = _backbone_shapes(backbone, height, width)[layer]
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


def _kind(shape: tuple[int, ...]) -> str:
    """What a layer's output (channels first, batch dimension dropped) is."""
    return {3: "map", 2: "tokens", 1: "vector"}.get(len(shape), "unsupported")


def get_representation(spec: str, **params) -> Representation:
    """The representation named by ``spec`` ('hog', 'lbp', 'sift', 'alexnet:conv3', ...)."""
    if spec in HANDCRAFTED:
        return _handcrafted(spec, **params)

    backbone, layers = split_spec(spec)
    config = get_config(backbone)
    named = parse_layers(config, layers, companions=False)
    if len(named) > 1:
        return _fused(backbone, named)
    (layer,) = named
    size = config.preprocess.input_size
    shape = _backbone_shapes(backbone, size, size)[layer]
    kind = _kind(shape)
    if kind not in ("map", "vector"):
        raise ValueError(
            f"{feature_name(backbone, layer)} gives outputs of shape {shape} ({kind}), which preimage cannot "
            "store: a map (C, H, W), a vector (D,), or a patch model's tokens (a grid)"
        )
    params = {"backbone": backbone, "layer": layer, "input_size": size}
    if not builtin(backbone):  # a model from a source or a plug-in: its preprocessing is part of the features
        params["preprocess"] = config.preprocess.as_dict()
    return Representation(
        feature_name(backbone, layer),
        kind,
        input="rgb",
        differentiable=True,
        params=params,
        description=config.description,
        shape_fn=lambda h, w: _layer_shape(backbone, layer, h, w),
        backbone=backbone,
        layer=layer,
    )


def _fused(backbone: str, layers: Sequence[str]) -> Representation:
    """Several maps of one model read together (``kind`` fused); an error naming a layer that is no map."""
    parts = tuple(get_representation(feature_name(backbone, layer)) for layer in layers)
    for part in parts:
        if part.kind != "map":
            raise ValueError(
                f"{part.name} is a {part.kind}, not a map: a fused representation reads maps (a CNN's stages, a "
                "ViT's blocks as patch grids); leave it out or decode it alone"
            )
    first = parts[0]
    return Representation(
        feature_name(backbone, layers),
        "fused",
        input="rgb",
        differentiable=True,
        params={**first.params, "layer": None, "layers": list(layers)},
        description=f"{len(parts)} layers read together: {first.description}",
        shape_fn=lambda h, w: (sum(math.prod(p.output_shape(h, w)) for p in parts),),
        backbone=backbone,
        layer=None,
        parts=parts,
    )


def fuse_rows(rows: list):
    """Several layers' rows (N, ...) as one fused row each (N, D1 + D2 + ...), each flattened, in order: what a
    fused decoder takes. torch tensors from a model, numpy arrays from a store alike."""
    flat = [r.reshape(len(r), -1) for r in rows]
    if isinstance(flat[0], torch.Tensor):
        return torch.cat(flat, dim=1)
    return np.concatenate(flat, axis=1)


def expand_specs(specs: str) -> list[str]:
    """Split 'hog,lbp,alexnet:conv1-conv5' into single representations, expanding layer ranges."""

    out: list[str] = []
    for spec in filter(None, (s.strip() for s in specs.split(","))):
        model, layers = split_spec(spec)
        if layers is None:
            out.append(spec)
            continue
        config = get_config(model)
        out += [feature_name(model, layer) for layer in parse_layers(config, layers)]
    return out


def list_representations() -> list[str]:
    """Every representation name: the hand-crafted ones and each layer of each built-in or plugged-in backbone."""

    names = list(HANDCRAFTED)
    for backbone in list_backbones():
        names += [feature_name(backbone, layer) for layer in get_config(backbone).layers]
    return names
