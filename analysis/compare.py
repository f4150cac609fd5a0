"""Decoder against optimisation on the same held-out images: the two seed papers' methods side by side.

For each representation: the trained decoder (one forward pass) and Mahendran & Vedaldi's optimisation invert
the stored features of the same held-out rows; both are scored in image space (Dosovitskiy & Brox's normalised
error, PSNR, SSIM, against the stored images) and in feature space (Mahendran & Vedaldi's error, the features of
the reconstruction against the stored ones), with the seconds each method spends per image.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..cache.store import FeatureStore
from ..train.invert import decoder_job
from ..train.metrics import feature_error, mean_pairwise_squared_distance, normalised_error, psnr, ssim, upsample_to
from .figures import save_rgb, tile_row
from .optimize import OptimizeConfig, differentiable_target, optimize
from .report import write_json, write_markdown
from .runs import TrainedRun, heldout_rows, read_features, read_images

METHODS = ("decoder", "optimisation")


def compare_feature(
    store: FeatureStore,
    run: TrainedRun,
    n: int,
    config: OptimizeConfig,
    weights: str | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Rows of the table for one representation, and the images compared (target, then each method's)."""
    feature = run.feature
    rows = heldout_rows(store, run.held_out, n)
    model = run.decoder(store)
    job, _, _ = decoder_job(run.path, weights)
    phi0 = read_features(store, feature, rows)
    targets = read_images(store, rows)
    size = targets.shape[-1]
    target = differentiable_target(feature, job.input_size, weights)

    with torch.no_grad():
        model(phi0[:1])  # warm-up
        start = time.perf_counter()
        decoded = model(phi0).clamp(0, 1)
        decoder_seconds = (time.perf_counter() - start) / len(rows)
    start = time.perf_counter()
    inversion = optimize(target, phi0, config, progress)
    optimisation_seconds = (time.perf_counter() - start) / len(rows)
    optimised = inversion.images[:, 0]
    if optimised.shape[1] == 1:
        optimised = optimised.expand(-1, 3, -1, -1)  # a gray pre-image, compared as the gray picture it is

    normaliser = mean_pairwise_squared_distance(phi0)
    recon = {"decoder": upsample_to(decoded, size), "optimisation": resize_to(optimised, size)}
    at_input = {"decoder": target.prepare(upsample_to(decoded, target.size)), "optimisation": None}
    seconds = {"decoder": decoder_seconds, "optimisation": optimisation_seconds}
    table = []
    for method in METHODS:
        with torch.no_grad():
            phi = (
                inversion.features[:, 0]
                if at_input[method] is None
                else target.phi(at_input[method].to(target.device)).cpu()
            )
        table.append(
            {
                "feature": feature,
                "method": method,
                "images": len(rows),
                "normalised_error": normalised_error(recon[method], targets),
                "feature_error": float(feature_error(phi, phi0, normaliser).mean()),
                "psnr": psnr(recon[method], targets),
                "ssim": ssim(recon[method], targets),
                "seconds_per_image": seconds[method],
            }
        )
    return table, {"image": targets, **recon}


def resize_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, C, S, S) at ``size``: area averaging when shrinking, bilinear when enlarging."""
    if images.shape[-1] > size:
        return torch.nn.functional.interpolate(images, size=(size, size), mode="area")
    return upsample_to(images, size)


KEYS = ("feature", "method", "images")
COLUMNS = (
    ("normalised_error", "image-space error (D&B)", "{:.3f}"),
    ("feature_error", "feature-space error (M&V)", "{:.4f}"),
    ("psnr", "PSNR dB", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("seconds_per_image", "s / image", "{:.4g}"),
)


def write_report(
    out: Path, table: list[dict], pictures: dict[str, dict[str, torch.Tensor]], columns: int
) -> list[Path]:
    """compare.json, compare.md and compare.png (rows: image, then decoder and optimisation per representation)."""
    files = [
        write_json(out / "compare.json", table),
        write_markdown(out / "compare.md", "Decoder against optimisation (held-out images)", table, COLUMNS, KEYS),
    ]
    first = next(iter(pictures.values()))
    size = first["image"].shape[-1]
    rows = [tile_row("image", first["image"][:columns])]
    for feature, images in pictures.items():
        rows += [tile_row(f"{feature} {method}", images[method][:columns], size) for method in METHODS]
    return [*files, save_rgb(out / "compare.png", np.concatenate(rows, axis=0))]
