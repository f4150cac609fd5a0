"""The perceptual decoders' checkerboard, before and after resize up-convolutions (docs/quality.md).

    python references/checkerboard.py --store photos.zarr --feature alexnet:conv5 \
        --decoder zero-fill=old/alexnet-conv5-deepsim.safetensors --decoder resize=alexnet:conv5+deepsim \
        --figure docs/checkerboard-conv5.jpg

For each decoder (``LABEL=RUN``: a run folder, checkpoint or shipped name) on the store's held-out rows: the share
of the reconstructions' luminance power at the period-2 frequencies (``train.metrics.checkerboard``) beside the
photos' own (scaled to the decoders' size by area), and the card's scores (normalised error, PSNR, SSIM, LPIPS).
The figure: held-out photos, then each decoder's reconstructions, then the same enlarged 4x (nearest neighbour) so
single pixels show.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from preimage.analysis.runs import decode, heldout_rows, read_features, read_images
from preimage.cache.store import FeatureStore
from preimage.train.models.loading import load_decoder
from preimage.train.scoring.metrics import checkerboard, scores

ZOOM = 4  # the enlarged rows: each pixel drawn as ZOOM x ZOOM
SHOWN = 6  # photos in the figure


def measure(store: FeatureStore, feature: str, decoders: dict[str, str], rows: int) -> tuple[dict, dict]:
    """Per decoder label: its scores on up to ``rows`` held-out rows; and its reconstructions of the first ones."""
    chosen = heldout_rows(store, 0.1, rows)
    features = read_features(store, feature, chosen)
    images = read_images(store, chosen)
    table, pictures = {}, {}
    for label, name in decoders.items():
        recon = decode(load_decoder(name, store, feature), features)
        target = F.interpolate(images, size=recon.shape[-2:], mode="area")
        table[label] = {
            "rows": len(chosen),
            "checkerboard": checkerboard(recon),
            "photos_checkerboard": checkerboard(target),
            **scores(recon, images),
        }
        pictures[label] = recon[:SHOWN]
        print(label, {k: round(v, 5) for k, v in table[label].items()})
    pictures["photos"] = F.interpolate(images[:SHOWN], size=next(iter(pictures.values())).shape[-2:], mode="area")
    return table, pictures


def figure(pictures: dict[str, torch.Tensor]) -> np.ndarray:
    """Photos, then each decoder's row; then the same rows' centre halves enlarged ZOOM times."""

    def row(batch: torch.Tensor) -> np.ndarray:
        tiles = (batch.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        return np.concatenate(list(tiles), axis=1)

    order = ["photos", *[k for k in pictures if k != "photos"]]
    plain = [row(pictures[k]) for k in order]
    size = pictures["photos"].shape[-1]
    q = size // 4
    zoomed = [
        row(pictures[k][:3, :, q : size - q, q : size - q].repeat_interleave(ZOOM, 2).repeat_interleave(ZOOM, 3))
        for k in order
    ]
    width = max(r.shape[1] for r in plain + zoomed)
    pad = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in plain + zoomed]
    return cv2.cvtColor(np.concatenate(pad, axis=0), cv2.COLOR_RGB2BGR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--feature", required=True)
    parser.add_argument("--decoder", action="append", required=True, metavar="LABEL=RUN")
    parser.add_argument("--rows", type=int, default=1000, help="held-out rows scored (the shared photos have 985)")
    parser.add_argument("--figure", type=Path, help="the figure (JPEG)")
    parser.add_argument("--json", type=Path, help="the table as JSON")
    args = parser.parse_args()
    decoders = dict(item.split("=", 1) for item in args.decoder)
    torch.set_grad_enabled(False)
    table, pictures = measure(FeatureStore.open(args.store), args.feature, decoders, args.rows)
    if args.figure:
        cv2.imwrite(str(args.figure), figure(pictures), [cv2.IMWRITE_JPEG_QUALITY, 90])
        print(f"wrote {args.figure}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
