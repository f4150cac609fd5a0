"""Up-convolutional decoders of Dosovitskiy & Brox (2016), one architecture per kind of representation.

A registry keyed by the representation's kind (``hog``, ``lbp``, ``sift``, ``conv``, ``vector``) builds a decoder
from the shape of one stored feature row and the target resolution. Every layer but the last is followed by a
leaky ReLU (0.2); an up-convolution is the paper's (``zero-fill``: each value placed at the top-left of a 2x2
block of zeros, then a 5x5 convolution) or ``resize`` (each value repeated over its 2x2 block, then the 5x5
convolution: Odena et al. 2016, "Deconvolution and checkerboard artifacts") or ``sub-pixel`` (a 3x3 convolution
at the input's resolution to four phases, interleaved: Shi et al. 2016, started checkerboard-free as Aitken et al.
2017 advise). Zero-fill gives each of the four output phases its own quarter of the kernel, which perceptual
losses turn into a visible checkerboard; resize gives every phase the whole kernel; sub-pixel starts with the four
phases equal and lets each learn its own (it can express both of the others exactly).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

SLOPE = 0.2


def zero_fill_upsample(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, 2H, 2W) with each value at the top-left of its 2x2 block and zeros elsewhere."""
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, h, 2, w, 2)
    out[:, :, :, 0, :, 0] = x
    return out.view(n, c, 2 * h, 2 * w)


def up_convolution(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv2d(zero_fill_upsample(x), weight, bias, padding=2)`` for a 5x5 ``weight``, computed as a stride-2
    transposed convolution with the kernel flipped: the same function without the 3/4 of products that hit the
    zeros (about 3x faster on CPU)."""
    flipped = weight.transpose(0, 1).flip(2, 3)
    return F.conv_transpose2d(x, flipped, bias, stride=2, padding=2, output_padding=1)


def resize_convolution(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling, then a 5x5 ``weight`` (padding 2): a constant input gives a constant
    output, so no phase of the output can differ from its neighbours (no checkerboard)."""
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=2)


def sub_pixel_convolution(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 3x3 ``weight`` of 4 * C output channels (channel ``4c + 2dy + dx`` is output channel c's phase
    (dy, dx)) at the input's resolution, then the phases interleaved (``pixel_shuffle``) into (N, C, 2H, 2W)."""
    return F.pixel_shuffle(F.conv2d(x, weight, bias, padding=1), 2)


UPSAMPLING = {"zero-fill": up_convolution, "resize": resize_convolution, "sub-pixel": sub_pixel_convolution}

# Which 3x3 tap at the input's resolution each of a 5x5 kernel's taps (at twice the resolution, after a
# nearest-neighbour resize) reads, for output phase 0 and 1 along one axis: tap k of phase p reads input offset
# floor((p + k - 2) / 2).
_RESIZE_TO_PHASE = torch.tensor(
    [[[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]], [[1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1]]],
    dtype=torch.float64,
)


def sub_pixel_from_resize(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A resize up-convolution's 5x5 ``weight`` (C_out, C_in, 5, 5) and bias as the sub-pixel one that computes
    the same function: each phase's 3x3 kernel sums the 5x5 taps that read the same input value."""
    a = _RESIZE_TO_PHASE.to(weight.device)
    phases = torch.einsum("yik,xjl,ockl->oyxcij", a, a, weight.double())  # (C_out, dy, dx, C_in, 3, 3)
    out = phases.reshape(-1, weight.shape[1], 3, 3).to(weight.dtype)
    return out, None if bias is None else bias.repeat_interleave(4)


class UpConvolution(nn.Module):
    """Module form of :func:`up_convolution`, :func:`resize_convolution` or :func:`sub_pixel_convolution`
    (``upsample``). Zero-fill and resize hold an ordinary ``Conv2d``'s 5x5 weights (the paper's parameters, under
    the same names); sub-pixel a 3x3 ``Conv2d`` to four phases per output channel, started with the phases equal
    (ICNR: a convolution, then nearest-neighbour resize)."""

    def __init__(self, in_channels: int, out_channels: int, upsample: str = "zero-fill") -> None:
        super().__init__()
        if upsample not in UPSAMPLING:
            raise ValueError(f"unknown up-sampling {upsample!r}; known: {', '.join(UPSAMPLING)}")
        self.upsample = upsample
        if upsample == "sub-pixel":
            self.conv = nn.Conv2d(in_channels, 4 * out_channels, 3, padding=1)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, 5, padding=2)

    def reset_phases(self) -> None:
        """Sub-pixel only: every output channel's four phases set to its first (ICNR, Aitken et al. 2017), so
        that a new decoder draws no checkerboard until training gives it a reason."""
        if self.upsample == "sub-pixel":
            with torch.no_grad():
                self.conv.weight.copy_(self.conv.weight[::4].repeat_interleave(4, dim=0))
                if self.conv.bias is not None:
                    self.conv.bias.copy_(self.conv.bias[::4].repeat_interleave(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return UPSAMPLING[self.upsample](x, self.conv.weight, self.conv.bias)


def up_conv(in_channels: int, out_channels: int, upsample: str = "zero-fill") -> nn.Sequential:
    """An up-convolution (:class:`UpConvolution`) followed by a leaky ReLU."""
    return nn.Sequential(UpConvolution(in_channels, out_channels, upsample), nn.LeakyReLU(SLOPE))


def conv(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2), nn.LeakyReLU(SLOPE)
    )


KINDS = ("grid", "map", "vector", "fused")  # a representation's kind (``Representation.kind``) picks its decoder
LEGACY_KINDS = {"hog": "grid", "lbp": "grid", "sift": "grid", "conv": "map"}  # as checkpoints before 0.2 name them


@dataclass(frozen=True)
class DecoderConfig:
    """What builds a decoder: the representation's kind (``grid``: a hand-crafted (H, W, C) grid; ``map``: a
    network's (C, H, W) map; ``vector``; ``fused``: several maps of one model, flattened one after the other in a
    row, ``parts`` their shapes), one feature row's shape as stored, the target and width. A kind as older
    checkpoints name it (``hog``, ``conv``) is read as today's."""

    kind: str
    input_shape: tuple[int, ...]
    target_size: int = 64
    width: int = 256  # channels at the bottleneck; halved at each up-convolution, never below 32
    upsample: str = "zero-fill"  # the up-convolutions': 'zero-fill' (the paper's), 'resize' or 'sub-pixel'
    parts: tuple[tuple[int, ...], ...] = ()  # a fused decoder's layers, (C, H, W) each, in the row's order

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", LEGACY_KINDS.get(self.kind, self.kind))
        object.__setattr__(self, "parts", tuple(tuple(int(v) for v in part) for part in self.parts))
        if self.parts and (self.input_shape != (sum(math.prod(part) for part in self.parts),)):
            raise ValueError(f"a fused row of shape {self.input_shape} is not its parts {self.parts} one after another")

    @property
    def channels_last(self) -> bool:
        """Whether a stored row keeps its channels last (a grid): the decoder permutes it to (C, H, W)."""
        return self.kind == "grid"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        if self.parts:
            d["parts"] = [list(part) for part in self.parts]
        else:
            del d["parts"]  # a one-layer decoder's header is as it always was
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DecoderConfig:
        upsample = d.get("upsample", "zero-fill")  # decoders saved before the choice existed are zero-fill
        parts = tuple(tuple(part) for part in d.get("parts", ()))
        return cls(d["kind"], tuple(d["input_shape"]), int(d["target_size"]), int(d["width"]), upsample, parts)


_DECODERS: dict[str, Callable[[DecoderConfig], nn.Module]] = {}


def register_decoder(kind: str):
    """Decorator: ``builder(config) -> nn.Module`` becomes the decoder of representations of ``kind``."""

    def wrap(builder: Callable[[DecoderConfig], nn.Module]):
        _DECODERS[kind] = builder
        return builder

    return wrap


def list_decoders() -> list[str]:
    return sorted(_DECODERS)


def create_decoder(config: DecoderConfig) -> Decoder:
    """The decoder for ``config``; an error naming the known kinds for an unknown one."""
    if config.kind not in _DECODERS:
        raise ValueError(f"no decoder for representations of kind {config.kind!r}; known: {', '.join(list_decoders())}")
    if config.target_size < 8 or config.target_size & (config.target_size - 1):
        raise ValueError(f"target size must be a power of two of at least 8, got {config.target_size}")
    if config.upsample not in UPSAMPLING:
        raise ValueError(f"unknown up-sampling {config.upsample!r}; known: {', '.join(UPSAMPLING)}")
    body = _DECODERS[config.kind](config)
    body.apply(he_init)
    for module in body.modules():
        if isinstance(module, UpConvolution):
            module.reset_phases()
        if isinstance(module, FusedDecoder):
            module.share_fan_in()
    return Decoder(config, body)


def he_init(module: nn.Module) -> None:
    """He (Kaiming) normal weights for leaky ReLUs of slope 0.2 and zero biases, on every convolution and fully
    connected layer. torch's default (uniform, a sixth of He's variance) shrinks the signal layer by layer: on
    the shared photos a HOG decoder then reaches 0.506 after 540 steps where this reaches 0.474."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.kaiming_normal_(module.weight, a=SLOPE, nonlinearity="leaky_relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class Decoder(nn.Module):
    """Stored features (N, *input_shape) in, images (N, 3, target, target) out (pixel range as trained)."""

    takes = "features"  # what it inverts (an autoencoder run takes images: train/models/autoencoder.py)

    def __init__(self, config: DecoderConfig, body: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.body = body
        # features are multiplied by this first (the trainer sets 1 / their std), so that every representation
        # reaches the first layer at a similar scale (a fused decoder: one scale per layer); saved with the weights
        self.register_buffer("input_scale", torch.ones(len(config.parts)) if config.parts else torch.ones(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        expected = tuple(self.config.input_shape)
        if tuple(features.shape[1:]) != expected:
            raise ValueError(
                f"decoder for {self.config.kind} {expected} got features of shape {tuple(features.shape[1:])}"
            )
        if self.config.parts:  # the row cut back into its layers, each at its own scale
            pieces = torch.split(features, [math.prod(part) for part in self.config.parts], dim=1)
            return self.body(
                [
                    (piece.reshape(len(piece), *part) * self.input_scale[i]).contiguous()
                    for i, (piece, part) in enumerate(zip(pieces, self.config.parts, strict=True))
                ]
            )
        features = features * self.input_scale
        if self.config.channels_last:
            features = features.permute(0, 3, 1, 2)
        return self.body(features.contiguous())


def _expanding(channels: int, size: int, target: int, upsample: str, out_channels: int = 3) -> list[nn.Module]:
    """Up-convolutions from ``size`` to ``target`` (halving channels, at least 32), then a 5x5 conv to RGB."""
    layers: list[nn.Module] = []
    while size < target:
        layers.append(up_conv(channels, max(32, channels // 2), upsample))
        channels, size = max(32, channels // 2), size * 2
    layers.append(nn.Conv2d(channels, out_channels, 5, padding=2))
    return layers


@register_decoder("grid")
def spatial_grid_decoder(config: DecoderConfig) -> nn.Module:
    """Hand-crafted grids (H, W, C): stride-2 5x5 convolutions down to 1/8 of the target side (1/64 of its
    area), two 3x3 convolutions there, then up-convolutions back to the target. A grid whose side is not a
    power of two is first resized bilinearly to the next one."""
    h, w, c = config.input_shape
    size = 1 << (max(h, w) - 1).bit_length()  # the next power of two
    layers: list[nn.Module] = []
    if (h, w) != (size, size):
        layers.append(nn.Upsample(size=(size, size), mode="bilinear", align_corners=False))
    channels = c
    while size > config.target_size // 8:
        out = config.width // 2 if channels == c else config.width
        layers.append(conv(channels, out, 5, stride=2))
        channels, size = out, size // 2
    layers += [conv(channels, config.width), conv(config.width, config.width)]
    layers += _expanding(config.width, size, config.target_size, config.upsample)
    return nn.Sequential(*layers)


def start_side(height: int, width: int, target: int) -> int:
    """The side ``target / 2^k`` a map of ``height`` x ``width`` is resized up to: the smallest not below it."""
    start = target
    while start // 2 >= max(height, width):
        start //= 2
    return start


@register_decoder("map")
def conv_map_decoder(config: DecoderConfig) -> nn.Module:
    """CNN feature maps (C, H, W): resized bilinearly up to the next side ``target / 2^k`` (6 -> 8, 13 -> 16,
    27 -> 32 for a 64 target), three 3x3 convolutions, then up-convolutions to the target."""
    c, h, w = config.input_shape
    start = start_side(h, w, config.target_size)
    layers: list[nn.Module] = []
    if (h, w) != (start, start):
        layers.append(nn.Upsample(size=(start, start), mode="bilinear", align_corners=False))
    layers += [conv(c, config.width), conv(config.width, config.width), conv(config.width, config.width)]
    layers += _expanding(config.width, start, config.target_size, config.upsample)
    return nn.Sequential(*layers)


class _Reshape(nn.Module):
    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape)


@register_decoder("vector")
def vector_decoder(config: DecoderConfig) -> nn.Module:
    """Vectors (fully connected layers, class scores): three fully connected layers of 4096, reshaped to
    4x4x256, then up-convolutions to the target (Table 1 of the paper)."""
    (d,) = config.input_shape
    layers: list[nn.Module] = []
    for i in range(3):
        layers += [nn.Linear(d if i == 0 else 4096, 4096), nn.LeakyReLU(SLOPE)]
    layers.append(_Reshape(256, 4, 4))
    layers += _expanding(256, 4, config.target_size, config.upsample)
    return nn.Sequential(*layers)


class FusedDecoder(nn.Module):
    """Several maps of one model in, an image out. Each layer is resized bilinearly up to its side ``target / 2^k``
    (:func:`start_side`) and enters where the decoder works at that side, with the sum of its side's layers' 3x3
    projections to ``width`` (the map decoder's first convolution, one per layer), followed by the map decoder's
    two further 3x3 convolutions at ``width``: at the coarsest side this starts the decoder (a ViT's blocks all
    enter here), at a finer side the sum is added to the up-convolution arriving from the coarser ones (a CNN's
    earlier stages). The decoder keeps ``width`` channels down to the finest side a layer enters at, then halves
    them as the map decoder does. So each layer's own map decoder is inside it: with the others' projections and
    the arriving up-convolution at zero it computes exactly that (with one layer, the map decoder itself)."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        sides = [start_side(h, w, config.target_size) for _, h, w in config.parts]
        start = min(sides)
        self.sides, self.resized = sides, [(h, w) != (s, s) for (_, h, w), s in zip(config.parts, sides, strict=True)]
        channels, size, width = {}, start, config.width
        while size <= config.target_size:  # width down to the finest entering side, then halved as the map decoder's
            channels[size] = width
            width, size = (width if size * 2 <= max(sides) else max(32, width // 2)), size * 2
        self.projections = nn.ModuleList(
            nn.Conv2d(c, channels[s], 3, padding=1) for (c, _, _), s in zip(config.parts, sides, strict=True)
        )
        self.start = start
        self.head = nn.Sequential(
            nn.LeakyReLU(SLOPE), conv(config.width, config.width), conv(config.width, config.width)
        )
        self.ups = nn.ModuleList()
        self.mixes = nn.ModuleDict()
        size = start
        while size < config.target_size:
            self.ups.append(UpConvolution(channels[size], channels[size * 2], config.upsample))
            size *= 2
            if size in sides:
                self.mixes[str(size)] = nn.Sequential(
                    conv(channels[size], channels[size]), conv(channels[size], channels[size])
                )
        self.out = nn.Conv2d(channels[config.target_size], 3, 5, padding=2)

    def share_fan_in(self) -> None:
        """Scale the He-initialised projections that enter at one side by sqrt(C_i / sum C): together they start as
        He's initialisation of the one convolution over their layers' channels side by side (each alone would
        start the sum with the variance of all of them, sqrt(2) too large for two equal layers)."""
        with torch.no_grad():
            for side in set(self.sides):
                entering = [p for p, s in zip(self.projections, self.sides, strict=True) if s == side]
                total = sum(p.in_channels for p in entering)
                for projection in entering:
                    projection.weight.mul_(math.sqrt(projection.in_channels / total))

    def start_as(self, index: int, single: nn.Module) -> None:
        """Start as layer ``index``'s own map decoder (``single``, its body): its weights copied to where they sit
        here; the projections of the other layers entering at its side, and the up-convolution arriving there from
        the coarser sides, at zero. This decoder then computes exactly what ``single`` does, and training can only
        add what the other layers bring. The coarser layers' projections keep their initialisation: were they at
        zero too, two zeros in a row would give neither any gradient, and those layers would never enter. The layer
        must enter at the finest side any layer enters at: a finer one would pass it through more convolutions."""
        side = self.sides[index]
        if side != max(self.sides):
            raise ValueError(
                f"a fused decoder starts as the decoder of a layer entering at its finest side ({max(self.sides)} "
                f"px), not of one entering at {side} px"
            )
        arriving = round(math.log2(side // self.start))  # the up-convolutions before this side
        trunk = [c[0] for c in self.head[1:]] if side == self.start else [c[0] for c in self.mixes[str(side)]]
        ours = [self.projections[index], *trunk, *(up.conv for up in self.ups[arriving:]), self.out]
        theirs = [m for m in single.modules() if isinstance(m, nn.Conv2d)]
        if [tuple(m.weight.shape) for m in ours] != [tuple(m.weight.shape) for m in theirs]:
            raise ValueError("the single layer's decoder has another architecture (its --width, --target-size)")
        with torch.no_grad():
            for mine, other in zip(ours, theirs, strict=True):
                mine.load_state_dict(other.state_dict())
            for i, projection in enumerate(self.projections):
                if i != index and self.sides[i] == side:
                    projection.weight.zero_()
                    projection.bias.zero_()
            if arriving:
                self.ups[arriving - 1].conv.weight.zero_()
                self.ups[arriving - 1].conv.bias.zero_()

    def _entering(self, parts: list[torch.Tensor], side: int) -> torch.Tensor | None:
        """The sum of the projections of the layers that enter at ``side`` (None: none does)."""
        total = None
        for part, s, resized, project in zip(parts, self.sides, self.resized, self.projections, strict=True):
            if s == side:
                x = F.interpolate(part, size=(s, s), mode="bilinear", align_corners=False) if resized else part
                total = project(x) if total is None else total + project(x)
        return total

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        x = self.head(self._entering(parts, self.start))
        size = self.start
        for up in self.ups:
            x, size = up(x), size * 2
            entering = self._entering(parts, size)
            if entering is not None:
                x = self.mixes[str(size)](F.leaky_relu(x + entering, SLOPE))
            else:
                x = F.leaky_relu(x, SLOPE)
        return self.out(x)


@register_decoder("fused")
def fused_decoder(config: DecoderConfig) -> nn.Module:
    """Several layers of one model read at once (:class:`FusedDecoder`)."""
    if not config.parts:
        raise ValueError("a fused decoder needs the shapes of its layers (parts)")
    if any(len(part) != 3 for part in config.parts):
        raise ValueError(f"a fused decoder reads maps (C, H, W); got layers of shapes {config.parts}")
    return FusedDecoder(config)
