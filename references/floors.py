"""Reference points for the normalised error on a store's held-out images, beside the decoders' figures.

    python references/floors.py photos.zarr [--n 256] [--target-size 64]

- mean image: always answering the training part's mean image (the baseline every decoder must beat by far);
- perfect target: the image itself averaged down to the decoders' target size (what down-sampling alone loses);
- gray truth: the image's own luminance (what a reconstruction without colour loses at best).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from preimage.analysis.runs import mean_image
from preimage.cache.store import FeatureStore
from preimage.train.data import downsample, split_rows
from preimage.train.metrics import normalised_error

LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R BT.601, as rgb2gray


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store")
    parser.add_argument("--n", type=int, default=256, help="Held-out images scored (the first N).")
    parser.add_argument("--target-size", type=int, default=64)
    parser.add_argument("--held-out", type=float, default=0.1)
    args = parser.parse_args()

    store = FeatureStore.open(args.store)
    rows = np.flatnonzero(split_rows(store, "heldout", args.held_out))[: args.n]
    stored = store.array("images").oindex[rows]
    images = downsample(stored, stored.shape[1])
    gray = (images * LUMA).sum(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    mean = mean_image(store, args.held_out).expand(len(rows), -1, -1, -1).contiguous()
    references = {
        "mean image": mean,
        f"perfect {args.target_size}x{args.target_size} target": downsample(stored, args.target_size),
        "gray truth": gray,
    }
    print(f"{args.store}: {len(rows)} held-out images at {stored.shape[1]}x{stored.shape[1]}; normalised error")
    for name, answer in references.items():
        print(f"  {name:<24}{normalised_error(answer, images):.3f}")


if __name__ == "__main__":
    main()
