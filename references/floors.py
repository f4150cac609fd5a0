"""Reference points for the normalised error on a store's held-out images, beside the decoders' figures.

    python references/floors.py photos.zarr [--n 256] [--target-size 64] [--decoders runs/quality --features hog]

- mean image: always answering the training part's mean image (the baseline every decoder must beat by far);
- perfect target: the image itself averaged down to the decoders' target size (what down-sampling alone loses);
- gray truth: the image's own luminance (what a reconstruction without colour loses at best).

With ``--decoders``, where each decoder's error lies, the reconstruction given one thing from the truth: each
image's mean per channel (the brightness and colour cast that contrast-normalised gray features such as HOG do
not carry), the true colour around the decoder's luminance, the true luminance under the decoder's colour. Then
how well each decoder guesses those means (R^2 over the images and channels) and how well it would have to guess
them, its image otherwise as it is, for its error to reach ``--goal``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from preimage.analysis.runs import mean_image, reconstruct, trained_runs
from preimage.cache.store import FeatureStore
from preimage.train.scoring.metrics import (
    error_parts,
    luminance,
    mean_pairwise_distance,
    means_needed,
    normalised_error,
    upsample_to,
)
from preimage.train.training.data import downsample, split_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store")
    parser.add_argument("--n", type=int, default=256, help="Held-out images scored (the first N).")
    parser.add_argument("--target-size", type=int, default=64)
    parser.add_argument("--held-out", type=float, default=0.1)
    parser.add_argument("--decoders", type=Path, help="A run folder, or a folder of them: break their error down.")
    parser.add_argument("--features", help="Only these runs' features (comma-separated), as analyze layers takes.")
    parser.add_argument("--goal", type=float, default=0.30, help="The error the means' accuracy is sized for.")
    args = parser.parse_args()

    store = FeatureStore.open(args.store)
    rows = np.flatnonzero(split_rows(store, "heldout", args.held_out))[: args.n]
    stored = store.array("images").oindex[rows]
    images = downsample(stored, stored.shape[1])
    gray = luminance(images).expand(-1, 3, -1, -1).contiguous()
    mean = mean_image(store, args.held_out).expand(len(rows), -1, -1, -1).contiguous()
    references = {
        "mean image": mean,
        f"perfect {args.target_size}x{args.target_size} target": downsample(stored, args.target_size),
        "gray truth": gray,
    }
    normaliser = mean_pairwise_distance(images)  # the same images throughout: computed once
    print(f"{args.store}: {len(rows)} held-out images at {stored.shape[1]}x{stored.shape[1]}; normalised error")
    for name, answer in references.items():
        print(f"  {name:<24}{normalised_error(answer, images, normaliser):.3f}")
    if args.decoders:
        print("decoders: " + " | ".join(error_parts(images[:1], images[:1])))
        means = []
        for run in trained_runs(args.decoders, args.features):
            if run.held_out != args.held_out:
                raise SystemExit(f"{run.path} held out {run.held_out} of the rows; pass --held-out {run.held_out}")
            recon = reconstruct(store, run, run.decoder(store), rows)
            recon = upsample_to(recon, images.shape[-1])
            parts = [normalised_error(answer, images, normaliser) for answer in error_parts(recon, images).values()]
            print(f"  {run.label:<24}" + " | ".join(f"{value:.3f}" for value in parts))
            means.append((run.label, *means_needed(recon, images, args.goal, normaliser)))
        print(f"per-channel means: R^2 of the decoder's | R^2 its means would need for an error of {args.goal}")
        for label, now, needed in means:
            print(
                f"  {label:<24}{now:.3f} | "
                + ("not reached even with the true means" if needed is None else f"{needed:.3f}")
            )


if __name__ == "__main__":
    main()
