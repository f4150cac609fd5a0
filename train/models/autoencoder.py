"""The autoencoder baseline: the paper's decoder with the encoder (the pretrained CNN up to the inverted layer)
fine-tuned jointly on the pixel loss: the upper bound of what the fixed-encoder decoder can reach."""

from __future__ import annotations

import torch
from torch import nn

from ...pipeline.backbones import create_backbone
from ...pipeline.features import get_representation
from .decoders import Decoder


def drop_unused(network: nn.Module, forward) -> None:
    """Remove the parameters and buffers of every leaf module that ``forward()`` does not call (the layers above
    the inverted one), so that checkpoints hold only the encoder that is trained."""
    called: set[int] = set()
    hooks = [m.register_forward_pre_hook(lambda m, _: called.add(id(m))) for m in network.modules()]
    try:
        with torch.no_grad():
            forward()
    finally:
        for hook in hooks:
            hook.remove()
    for module in network.modules():
        if id(module) not in called and not list(module.children()):
            for name in list(module._parameters):
                module._parameters[name] = None
            for name in list(module._buffers):
                module._buffers[name] = None


class AutoEncoder(nn.Module):
    """Images (N, 3, S, S) in [0, 1] -> backbone layer (trainable) -> decoder -> images (N, 3, target, target).

    The stored images are resized bilinearly to the backbone's input size first (the stored features were
    computed from crops taken at that size straight from the source file)."""

    takes = "images"

    def __init__(self, spec: str, decoder: Decoder, weights: str | None = None, pretrained: bool = True) -> None:
        super().__init__()
        rep = get_representation(spec)
        if rep.backbone is None:
            raise ValueError(f"{spec} has no weights to fine-tune; the autoencoder mode needs a CNN layer")
        self.spec, self.layer = spec, rep.layer
        self.input_size = rep.input_size
        self.encoder = create_backbone(rep.backbone, weights, random_init=not pretrained)
        self.encoder.check_layers(self.layer)
        drop_unused(self.encoder, lambda: self.encode(torch.zeros(1, 3, 32, 32)))
        self.decoder = decoder

    @property
    def config(self):
        return self.decoder.config

    @property
    def input_scale(self) -> torch.Tensor:
        return self.decoder.input_scale

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        size = (self.input_size, self.input_size)
        x = nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return self.encoder(x, [self.layer])[self.layer]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(images))
