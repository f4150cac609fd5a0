"""Error per representation or layer (the paper's Figure 7): each decoder on the same held-out images, next to
the mean-image baseline and the paper's figure where it gives one, with a grid of reconstructions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..cache.store import FeatureStore
from ..pipeline.images import save_rgb
from ..pipeline.names import shown_name
from ..train.scoring.metrics import normalised_error, scores, upsample_to
from .figures import line_plot, tile_row
from .report import write_json, write_markdown
from .runs import TrainedRun, heldout_rows, mean_image, read_images, reconstruct

# Dosovitskiy & Brox 2016 (ImageNet, GPU-trained decoders), normalised error of the hand-crafted features
PAPER = {"hog": 0.24, "sift": 0.28, "lbp": 0.38}


def short_name(feature: str) -> str:
    return feature.split(":")[-1]


def layer_errors(store: FeatureStore, runs: list[TrainedRun], n: int) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """One row per decoder (normalised error, PSNR, SSIM, LPIPS, the mean-image baseline and the paper's figure on the
    same images), and the reconstructions of the first images for the grid."""
    table, pictures = [], {}
    baselines: dict[float, torch.Tensor] = {}
    for run in runs:
        rows = heldout_rows(store, run.held_out, n)
        images = read_images(store, rows)
        if run.held_out not in baselines:
            baselines[run.held_out] = mean_image(store, run.held_out)
        baseline = baselines[run.held_out].expand(len(rows), -1, -1, -1)
        recon = reconstruct(store, run, run.decoder(store), rows)
        table.append(
            {
                "feature": run.label,
                "images": len(rows),
                **scores(recon, images),
                "mean_image_error": normalised_error(baseline, images),
                "paper": None if run.autoencoder else PAPER.get(run.feature),
                "run": str(run.path),
            }
        )
        pictures.setdefault("image", images[:8])
        pictures[run.label] = upsample_to(recon[:8], images.shape[-1])
    return table, pictures


COLUMNS = (
    ("images", "held-out images", "{:d}"),  # every score says its N
    ("normalised_error", "normalised error (D&B)", "{:.3f}"),
    ("mean_image_error", "mean image", "{:.3f}"),
    ("paper", "paper (ImageNet)", "{:.2f}"),
    ("psnr", "PSNR dB", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("lpips", "LPIPS", "{:.3f}"),
)


def write_layers(out: Path, table: list[dict], pictures: dict[str, torch.Tensor], columns: int = 8) -> list[Path]:
    """layers.json, layers.md, layers.png (the error curve) and layers-grid.png (one row per representation)."""
    labels = [short_name(row["feature"]) for row in table]
    series = {
        "decoder": [row["normalised_error"] for row in table],
        "mean image": [row["mean_image_error"] for row in table],
        "paper": [row["paper"] for row in table],
    }
    grid = [tile_row(shown_name(name), images[:columns]) for name, images in pictures.items()]
    return [
        write_json(out / "layers.json", table),
        write_markdown(out / "layers.md", "Normalised error per representation (held-out images)", table, COLUMNS),
        save_rgb(out / "layers.png", line_plot(labels, series, "normalised error")),
        save_rgb(out / "layers-grid.png", np.concatenate(grid, axis=0)),
    ]
