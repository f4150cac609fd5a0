"""What a training step minimises, pluggable: an :class:`Objective` turns a batch into the loss the decoder's
optimiser follows and the terms to log. It may hold models and optimisers of its own (a GAN's discriminator),
which the trainer checkpoints beside the decoder's under their names (:func:`~.checkpoint.save`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

from .precision import autocast


class Diverged(Exception):
    """A loss left its range (NaN, or far above its recent median): the trainer rolls back to its last checkpoint."""


class Objective(nn.Module):
    """A loss over (features or images, target images): ``step`` returns the decoder's loss (float32, to
    backpropagate) and the terms it logs; :meth:`models` and :meth:`optimizers` are what else it trains."""

    name = ""

    def step(self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def after_step(self) -> dict:
        """Called after the decoder's optimiser stepped (an adversary updates here); returns terms to log."""
        return {}

    def models(self) -> dict[str, nn.Module]:
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}


_OBJECTIVES: dict[str, Callable[..., Objective]] = {}
_BUILTIN = {"deepsim": "deepsim"}  # objectives of modules imported on first use (train/training/deepsim.py)


def register_objective(name: str):
    """Decorator: an :class:`Objective` class (or factory) becomes ``train --loss NAME``."""

    def wrap(factory: Callable[..., Objective]):
        _OBJECTIVES[name] = factory
        return factory

    return wrap


def list_objectives() -> list[str]:
    return sorted(set(_OBJECTIVES) | set(_BUILTIN))


def create_objective(name: str, **kwargs) -> Objective:
    """The objective registered as ``name``, given what the run knows (``feature_shape``: one stored row's shape)
    and its options (``train --loss-option KEY=VALUE``); an error naming the known ones otherwise."""
    if name not in _OBJECTIVES and name in _BUILTIN:
        importlib.import_module(f"{__package__}.{_BUILTIN[name]}")
    if name not in _OBJECTIVES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(list_objectives())}")
    return _OBJECTIVES[name](**kwargs)


def pixel_loss(network: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> torch.Tensor:
    """Pixel MSE of the network's prediction for ``x`` against ``y``, the forward pass in ``precision``
    (resolved: ``fp32`` or ``bf16``) and the loss in float32."""
    with autocast(x.device, precision):
        prediction = network(x)
    return nn.functional.mse_loss(prediction.float(), y)


@register_objective("pixel")
class PixelLoss(Objective):
    """Dosovitskiy & Brox 2016: the expected pre-image, by the mean squared error in pixels."""

    name = "pixel"

    def __init__(self, feature_shape: tuple[int, ...] | None = None, **options) -> None:
        super().__init__()
        if options:
            raise ValueError(f"the pixel loss takes no options; got {', '.join(sorted(options))}")

    def step(self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> tuple[torch.Tensor, dict]:
        loss = pixel_loss(network, x, y, precision)
        return loss, {}
