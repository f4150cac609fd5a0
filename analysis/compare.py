"""Decoder against optimisation (and, for HOG, HOGgles) on the same held-out images: the methods side by side.

For each representation: the trained decoder (one forward pass) and Mahendran & Vedaldi's optimisation invert
the stored features of the same held-out rows; both are scored in image space (Dosovitskiy & Brox's normalised
error, PSNR, SSIM, LPIPS, against the stored images) and in feature space (Mahendran & Vedaldi's error, the features of
the reconstruction against the stored ones), with the seconds each method spends per image. Image-space scores are
taken at the stored size, as ``analyze layers`` and the trainer take them: the decoder's output is up-sampled
bilinearly, the optimisation's pre-image (at the network's input size) area-averaged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..cache.store import FeatureStore
from ..pipeline.images import save_rgb
from ..pipeline.lookup import stored_name
from ..train.inversion.hoggles import PairedDictionary
from ..train.inversion.invert import decoder_job
from ..train.inversion.optimize import OptimizeConfig, differentiable_target, optimize
from ..train.scoring.metrics import (
    feature_error,
    mean_pairwise_squared_distance,
    normalised_error,
    perceptual,
    psnr,
    ssim,
    upsample_to,
)
from .figures import tile_row
from .report import write_json, write_markdown
from .runs import TrainedRun, heldout_rows, mean_image, read_features, read_images

METHODS = ("decoder", "optimisation", "hoggles")  # the figure's rows; hoggles for HOG, when a dictionary is given


def compare_feature(
    store: FeatureStore,
    run: TrainedRun,
    n: int,
    config: OptimizeConfig,
    weights: str | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    dictionary: PairedDictionary | None = None,
    models: Sequence[str] = (),
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Rows of the table for one representation, and the images compared (target, then each method's); with a
    HOGgles ``dictionary`` (HOG only) a third method; last, the training split's mean image as the baseline."""
    rows = heldout_rows(store, run.held_out, n)
    model = run.decoder(store)
    held = stored_name(store, run.identity)  # a model from a source: where the store's extraction found it
    job, _, _ = decoder_job(run.path, weights, held if run.identity.from_source else None, models=models)
    feature = job.name
    phi0 = read_features(store, held, rows)
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
    if dictionary is not None:
        start = time.perf_counter()
        gray = dictionary(phi0).expand(-1, 3, -1, -1)  # HOGgles reconstructs gray, compared as it is
        seconds["hoggles"] = (time.perf_counter() - start) / len(rows)
        recon["hoggles"] = resize_to(gray, size)
        at_input["hoggles"] = target.prepare(resize_to(gray, target.size))
    baseline = mean_image(store, run.held_out).expand(len(rows), -1, -1, -1)  # the baseline every method must beat
    recon["mean image"], seconds["mean image"] = baseline, 0.0
    at_input["mean image"] = target.prepare(resize_to(baseline, target.size))
    table = []
    for method in recon:
        with torch.no_grad():
            phi = (
                inversion.features[:, 0]
                if at_input[method] is None
                else target.phi(at_input[method].to(target.device)).cpu()
            )
        table.append(
            {
                "feature": run.label,
                "method": method,
                "images": len(rows),
                "normalised_error": normalised_error(recon[method], targets),
                "feature_error": float(feature_error(phi, phi0, normaliser).mean()),
                "psnr": psnr(recon[method], targets),
                "ssim": ssim(recon[method], targets),
                "lpips": perceptual(recon[method], targets),
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
    ("lpips", "LPIPS", "{:.3f}"),
    ("seconds_per_image", "s / image", "{:.4g}"),
)


def write_report(
    out: Path, table: list[dict], pictures: dict[str, dict[str, torch.Tensor]], columns: int
) -> list[Path]:
    """compare.json and compare.md (merged with the rows of other representations compared into ``out`` before)
    and one figure per representation, compare-NAME.png (rows: image, decoder, optimisation)."""
    previous = out / "compare.json"
    done = {row["feature"] for row in table}
    kept = [row for row in json.loads(previous.read_text()) if row["feature"] not in done] if previous.exists() else []
    merged = kept + table
    figures = sorted(out.glob("compare-*.png")) if out.exists() else []
    for feature, images in pictures.items():
        size = images["image"].shape[-1]
        rows = [tile_row("image", images["image"][:columns])]
        rows += [
            tile_row(f"{feature} {method}", images[method][:columns], size) for method in METHODS if method in images
        ]
        path = save_rgb(out / f"compare-{feature.replace(':', '-')}.png", np.concatenate(rows, axis=0))
        figures = sorted({*figures, path})
    return [
        write_json(previous, merged),
        write_markdown(
            out / "compare.md", "Inversion methods on held-out images", rows=merged, columns=COLUMNS, keys=KEYS
        ),
        *figures,
    ]
