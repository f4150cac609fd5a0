"""Optimisation-based inversion (Mahendran & Vedaldi, CVPR 2015): gradient descent on the pixels.

The pre-image of a feature phi0 minimises, per image,
    ||Phi(x) - phi0||^2 / ||phi0||^2 + (lambda_alpha/2 * ||u||_alpha^alpha + lambda_TV/2 * TV_beta(u)) / sigma^2
where u = 255 * (x - mean) is the image in the paper's units (mean-subtracted, 0-255 range) and sigma is the
typical Euclidean norm of such images at that size: with these normalisations one set of lambdas serves every
layer. Defaults, schedule and update rule follow the authors' code (github.com/aravindhm/deep-goggle):
alpha = 6, beta = 2, lambda_alpha = 8e-10, lambda_TV = 1 / 10 / 100 from shallow to deep layers, momentum 0.9
with the velocity reset when the rate drops, from Gaussian noise of norm sigma. One addition: after each step
the pixels are projected onto the valid range [0, 1]. Without it the sixth-power gradient of the alpha-norm
makes an outlier pixel diverge at the full rate (seen on CONV3 here); the images compared are clipped anyway.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from ...pipeline.contract import DRAFT_MIN_SIDE
from ...pipeline.decode import DEFAULT_MAX_PIXELS, read_images
from ...pipeline.features import get_representation
from ...pipeline.images import center_square, rgb_to_gray, to_float
from ...runtime.device import pick_device

# ImageNet's pixel standard deviation in [0, 1] (the mean of torchvision's per-channel std): 255 times this
# is the paper's typical pixel magnitude B, and sigma = B * sqrt(number of pixel values)
PIXEL_STD = 0.226


@dataclass(frozen=True)
class OptimizeConfig:
    """Every setting of the objective and its optimiser; ``None`` means the paper's choice for the layer."""

    steps: int | None = None  # None: 400 for CNN layers, 800 for HOG (the authors' schedules)
    lr: float = 0.004
    momentum: float = 0.9
    alpha: float = 6.0
    lambda_alpha: float = 8e-10
    beta: float = 2.0
    lambda_tv: float | None = None
    restarts: int = 1
    seed: int = 0
    window: int | None = None  # keep only the central window x window cells of the feature map
    channels: tuple[int, int] | None = None  # keep only channels [start, stop)


def alpha_norm(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """||u||_alpha^alpha of each image in a batch (N, ...) -> (N,)."""
    return u.abs().pow(alpha).flatten(1).sum(1)


def tv_norm(u: torch.Tensor, beta: float) -> torch.Tensor:
    """TV^beta of each image (N, C, H, W) -> (N,): sum over pixels of (dx^2 + dy^2)^(beta/2), forward differences
    with the last row and column repeated (their differences are zero), as the authors' code."""
    dx = torch.nn.functional.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1))
    dy = torch.nn.functional.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    squared = dx * dx + dy * dy
    if beta == 2:
        return squared.flatten(1).sum(1)
    return squared.clamp_min(1e-12).pow(beta / 2).flatten(1).sum(1)


class AlphaNorm(torch.nn.Module):
    """Module form of :func:`alpha_norm`."""

    def __init__(self, alpha: float = 6.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return alpha_norm(u, self.alpha)


class TVNorm(torch.nn.Module):
    """Module form of :func:`tv_norm`."""

    def __init__(self, beta: float = 2.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return tv_norm(u, self.beta)


@dataclass(frozen=True)
class Target:
    """A differentiable representation as the optimiser sees it: images (N, C, S, S) in [0, 1] -> features in
    the store's layout, the pixel mean the paper subtracts, and its lambda_TV."""

    spec: str
    phi: Callable[[torch.Tensor], torch.Tensor]
    channels: int
    size: int
    mean: tuple[float, ...]
    lambda_tv: float
    steps: int
    device: torch.device
    channels_last: bool = False  # a hand-crafted grid (H, W, C): the HOG schedule and layout

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images (N, 3, H, W) in [0, 1] as this target's input: resized to its size (area when shrinking,
        bilinear when enlarging) and made gray for a gray representation."""
        if images.shape[-1] > self.size:
            images = torch.nn.functional.interpolate(images, size=(self.size, self.size), mode="area")
        elif images.shape[-1] < self.size:
            images = torch.nn.functional.interpolate(
                images, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
        return rgb_to_gray(images).unsqueeze(1) if self.channels == 1 else images


def differentiable_target(
    spec: str, size: int | None = None, weights: str | None = None, device: torch.device | str | None = None
) -> Target:
    """The :class:`Target` for a representation spec, on ``device`` (default: the first GPU, else the CPU); a clear
    error for a representation without a gradient. Settings by what the representation is: a hand-crafted grid
    takes the authors' HOG schedule (800 steps, lambda_TV 1) at side 128, a model's layer 400 steps and
    lambda_TV by depth at the model's input side."""
    device = pick_device(str(device) if device is not None else "auto")
    rep = get_representation(spec)
    form = rep.gradient_form(weights, device)
    grid = rep.kind == "grid"
    return Target(
        spec,
        form.phi,
        channels=form.channels,
        size=size or form.size or 128,
        mean=form.pixel_mean,
        lambda_tv=paper_lambda_tv(form.layers, form.layer),
        steps=800 if grid else 400,
        device=device,
        channels_last=grid,
    )


def paper_lambda_tv(layers: tuple[str, ...], layer: str) -> float:
    """The authors' lambda_TV by depth: 1 for AlexNet's CONV1, 10 for CONV2-CONV4, 100 from CONV5 on; other
    models by the same relative depth (the first eighth of the layers, up to half, the rest)."""
    position = layers.index(layer) / len(layers)
    return 1.0 if position < 1 / 8 else 10.0 if position < 1 / 2 else 100.0


def schedule(steps: int, lr: float, hog: bool) -> list[float]:
    """The authors' step decay scaled to ``steps``: CNN 1/4 at lr, 1/2 at lr/10, 1/4 at lr/100; HOG four equal
    quarters at lr, lr/10, lr/100, lr/1000."""
    parts = ((0.25, 1.0), (0.25, 0.1), (0.25, 0.01), (0.25, 0.001)) if hog else ((0.25, 1.0), (0.5, 0.1), (0.25, 0.01))
    rates: list[float] = []
    for i, (fraction, factor) in enumerate(parts):
        n = steps - len(rates) if i == len(parts) - 1 else round(fraction * steps)
        rates += [lr * factor] * n
    return rates


def feature_mask(shape: tuple[int, ...], channels_last: bool, config: OptimizeConfig) -> torch.Tensor | None:
    """1 on the features the target keeps (a central spatial window, a channel range), 0 elsewhere; None: all."""
    if config.window is None and config.channels is None:
        return None
    mask = torch.zeros(shape)
    if len(shape) == 1:
        if config.window is not None:
            raise ValueError("a spatial window needs a convolutional layer; this one is a vector")
        start, stop = config.channels
        mask[start:stop] = 1
        return mask
    c_axis, (h_axis, w_axis) = (2, (0, 1)) if channels_last else (0, (1, 2))
    index: list[slice] = [slice(None)] * 3
    if config.window is not None:
        for axis in (h_axis, w_axis):
            n = min(config.window, shape[axis])
            first = math.ceil((shape[axis] - n + 1) / 2) - 1 if n < shape[axis] else 0
            index[axis] = slice(first, first + n)
    if config.channels is not None:
        start, stop = config.channels
        if not 0 <= start < stop <= shape[c_axis]:
            raise ValueError(f"channels {start}:{stop} outside the layer's {shape[c_axis]} channels")
        index[c_axis] = slice(start, stop)
    mask[tuple(index)] = 1
    return mask


def inversion_objective(
    u: torch.Tensor,
    phi: Callable[[torch.Tensor], torch.Tensor],
    phi0: torch.Tensor,
    mean: torch.Tensor,
    sigma: float,
    config: OptimizeConfig,
    lambda_tv: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: the objective, its data term ||Phi(x) - phi0||^2 / ||phi0||^2 (on the kept features), and
    Phi(x), for images ``u`` in the paper's units (x = u / 255 + mean)."""
    features = phi(u / 255 + mean)
    diff = features - phi0 if mask is None else (features - phi0) * mask
    kept = phi0 if mask is None else phi0 * mask
    data = diff.flatten(1).square().sum(1) / kept.flatten(1).square().sum(1).clamp_min(1e-12)
    prior = config.lambda_alpha / 2 * alpha_norm(u, config.alpha) + lambda_tv / 2 * tv_norm(u, config.beta)
    return data + prior / sigma**2, data, features


@dataclass
class Inversion:
    """Result of :func:`optimize`: pre-images (N, K, C, S, S) in [0, 1] (clipped), their features, and per image
    and restart the data term ||Phi(x) - phi0||^2 / ||phi0||^2 (on the kept features) at the end."""

    images: torch.Tensor
    features: torch.Tensor
    relative_error: torch.Tensor
    history: list[float]  # mean objective per step


def optimize(
    target: Target,
    phi0: torch.Tensor,
    config: OptimizeConfig = OptimizeConfig(),
    progress: Callable[[int, int, float], None] | None = None,
) -> Inversion:
    """Invert a batch of features ``phi0`` (N, *feature shape) by momentum gradient descent on the pixels,
    ``config.restarts`` pre-images each from different noise, all optimised together in one batch. ``progress``
    hears each step; returning False stops the descent there, with the pre-images reached so far as the result."""
    device = target.device
    n, k = len(phi0), config.restarts
    shape = (n * k, target.channels, target.size, target.size)
    phi0 = phi0.to(device, torch.float32).repeat_interleave(k, 0)
    mask = feature_mask(tuple(phi0.shape[1:]), target.channels_last, config)
    mask = None if mask is None else mask.to(device)
    mean = torch.tensor(target.mean, device=device).view(1, -1, 1, 1)
    sigma = 255 * PIXEL_STD * math.sqrt(target.channels * target.size**2)
    lambda_tv = target.lambda_tv if config.lambda_tv is None else config.lambda_tv

    generator = torch.Generator().manual_seed(config.seed)
    noise = torch.randn(shape, generator=generator).to(device)
    u = (noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * sigma).requires_grad_(True)
    velocity = torch.zeros_like(u)
    low, high = -255 * mean, 255 * (1 - mean)  # u of the pixel values 0 and 1
    rates = schedule(config.steps or target.steps, config.lr, target.channels_last)

    def objective(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return inversion_objective(
            u, target.phi, phi0=phi0, mean=mean, sigma=sigma, config=config, lambda_tv=lambda_tv, mask=mask
        )

    history: list[float] = []
    previous = None
    for step, lr in enumerate(rates):
        if lr != previous:
            velocity.zero_()  # a sudden rate change would otherwise overshoot on the old momentum
            previous = lr
        total, _, _ = objective(u)
        (grad,) = torch.autograd.grad(total.sum(), u)
        with torch.no_grad():
            velocity.mul_(config.momentum).add_(grad, alpha=-lr * sigma**2)
            u.add_(velocity).clamp_(low, high)
        history.append(float(total.detach().mean()))
        if progress is not None and progress(step + 1, len(rates), history[-1]) is False:
            break  # asked to stop: the pre-image reached so far is the result
    with torch.no_grad():
        _, data, features = objective(u)
        images = (u / 255 + mean).clamp(0, 1)
    size = target.size
    return Inversion(
        images.view(n, k, target.channels, size, size).cpu(),
        features.view(n, k, *features.shape[1:]).cpu(),
        data.view(n, k).cpu(),
        history,
    )


def with_defaults(config: OptimizeConfig, **changes) -> OptimizeConfig:
    """``config`` with the given fields replaced (None values are left as they are)."""
    return replace(config, **{key: value for key, value in changes.items() if value is not None})


def invert_files(
    paths: list[str],
    spec: str,
    config: OptimizeConfig = OptimizeConfig(),
    size: int | None = None,
    weights: str | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    *,
    max_pixels: int | None = None,
) -> tuple[torch.Tensor, Inversion]:
    """Centre crops of image files at the representation's input size (N, C, S, S) and their pre-images (files
    larger than ``max_pixels`` when decoded are refused: ``decode.DEFAULT_MAX_PIXELS`` unless given)."""

    target = differentiable_target(spec, size, weights)
    crops = np.stack(
        [
            center_square(image, target.size)
            for image in read_images(paths, DRAFT_MIN_SIDE, max_pixels or DEFAULT_MAX_PIXELS)
        ]
    )
    images = target.prepare(to_float(crops))
    with torch.no_grad():
        phi0 = target.phi(images.to(target.device))
    return images, optimize(target, phi0, config, progress)
