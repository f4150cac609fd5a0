"""Evaluation of a decoder on a split of a store (the paper's metric, PSNR, SSIM, LPIPS) and the preview pictures a run
writes each epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...cache.store import FeatureStore
from ...pipeline.identity import Identity
from ...pipeline.images import save_rgb, to_float, to_uint8
from ...pipeline.lookup import stored_name
from ...pipeline.rows import read_rows
from ..models.decoders import Decoder
from ..scoring.metrics import scores, upsample_to
from .data import split_rows


@torch.no_grad()
def evaluate(
    model: Decoder,
    store: FeatureStore,
    feature: str | Identity,
    held_out: float = 0.1,
    max_rows: int = 256,
    split: str = "heldout",
    preview: Path | None = None,
    train_fraction: float = 1.0,
) -> dict:
    """Quality (:func:`~.metrics.scores`) on the first ``max_rows`` rows of a split, each reconstruction
    up-sampled to the stored image size; optionally a preview PNG of 8. The training split is the run's own
    (``train_fraction`` of the training part); ``all`` is every row read."""
    was_training = model.training
    model.eval()
    if model.takes != "images":
        feature = stored_name(store, feature)  # the name the store holds it under (a model's folder elsewhere)
    rows = np.flatnonzero(split_rows(store, split, held_out, train_fraction))[:max_rows]
    if len(rows) < 2:
        return {}
    takes_images = model.takes == "images"
    device = next(model.parameters()).device
    recon, targets = [], []
    for start, stop in store.partitions():
        picked = rows[(rows >= start) & (rows < stop)] - start
        if len(picked):
            stored = store.read_rows("images", start, stop)[picked]
            target = to_float(stored)
            if takes_images:
                inputs = target
            else:
                inputs = torch.from_numpy(read_rows(store, feature, start, stop)[picked]).float()
            recon.append(model(inputs.to(device)).cpu())
            targets.append(target)
    recon_t, target_t = torch.cat(recon), torch.cat(targets)
    result = {f"{split}_rows": len(rows), **scores(recon_t, target_t)}
    if preview is not None:
        write_preview(preview, target_t[:8], recon_t[:8])
    model.train(was_training)
    return result


def write_preview(path: Path, targets: torch.Tensor, recon: torch.Tensor) -> None:
    """A grid: one row per image, target | reconstruction (up-sampled to the target's size)."""
    recon = upsample_to(recon, targets.shape[-1]).clamp(0, 1)
    pairs = torch.cat([targets, recon], dim=3)  # side by side
    grid = torch.cat(list(pairs), dim=1)  # stacked
    save_rgb(path, to_uint8(grid[None])[0])
