"""Optimisation-based inversion against a decoder's forward pass, per image, on one device in the same run.

    python bench/bench_inversion.py [--device cuda] [--features hog,alexnet:conv1-conv5] [--n 8] [--weights F]

The paper's comparison (Dosovitskiy & Brox 2016, section 4): Mahendran & Vedaldi's optimisation takes about 6 s
per image on a GPU, the decoder about 5 ms. For each representation: the optimisation with the authors' full
schedule (400 steps for CNN layers, 800 for HOG) on ``--n`` photos in one batch, in seconds per image, with the
feature-space error it reaches (the data term ||Phi(x) - phi0||^2 / ||phi0||^2, mean over the photos); then the
decoder of that representation (the architecture ``preimage train`` builds; speed does not depend on its
weights) at batch 64 and at batch 1, in milliseconds per image; and the ratio of the two per-image times.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from timing import milliseconds_per_image, synchronize

from preimage.pipeline.contract import stored_row_shape
from preimage.pipeline.features import expand_specs, get_representation
from preimage.pipeline.images import center_square, sample_photos, to_float
from preimage.runtime.memory import keep_freed_memory
from preimage.train.inversion.optimize import OptimizeConfig, differentiable_target, optimize
from preimage.train.models.decoders import DecoderConfig, create_decoder


def photos(n: int, size: int) -> torch.Tensor:
    """``n`` centre crops (and mirrored ones, past the seven photos) of scikit-image's photos, RGB in [0, 1]."""
    crops = [center_square(p, size) for p in sample_photos().values()]
    crops += [c[:, ::-1] for c in crops]
    return to_float(np.ascontiguousarray(np.stack([crops[i % len(crops)] for i in range(n)])))


def decoder_ms(spec: str, size: int, width: int, device: torch.device, repeats: int) -> tuple[float, float]:
    """Milliseconds per image of the decoder for ``spec`` at batch 64 and at batch 1."""
    rep = get_representation(spec)
    row = stored_row_shape(spec, size)
    model = create_decoder(DecoderConfig(rep.decoder, row, 64, width)).to(device).eval()
    result = [
        milliseconds_per_image(model, torch.rand(batch, *row, device=device), repeats, device) for batch in (64, 1)
    ]
    return result[0], result[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--features", default="hog,alexnet:conv1-conv5")
    parser.add_argument("--n", type=int, default=8, help="photos inverted together in one batch")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the paper's)")
    parser.add_argument("--width", type=int, default=128, help="decoder width (channels at its bottleneck)")
    parser.add_argument("--repeats", type=int, default=20, help="timed decoder passes per batch size")
    parser.add_argument("--weights", default=None, help="backbone weights file (default: the usual sources)")
    args = parser.parse_args()
    keep_freed_memory()  # as the preimage command does
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {args.n} photos per optimisation batch")
    print(
        f"{'feature':15} {'steps':>5} {'optimise s/img':>14} {'rel. feat err':>13} {'decoder ms/img@64':>17} "
        f"{'ms@1':>7} {'ratio':>8}"
    )
    for spec in expand_specs(args.features):
        target = differentiable_target(spec, weights=args.weights, device=device)
        images = target.prepare(photos(args.n, target.size)).to(device)
        with torch.no_grad():
            phi0 = target.phi(images)
        config = OptimizeConfig(steps=args.steps)
        optimize(target, phi0[:1], OptimizeConfig(steps=5))  # warm-up: kernels chosen, memory allocated
        synchronize(device)
        start = time.perf_counter()
        result = optimize(target, phi0, config)
        synchronize(device)
        per_image = (time.perf_counter() - start) / args.n
        batch_ms, single_ms = decoder_ms(spec, target.size, width=args.width, device=device, repeats=args.repeats)
        print(
            f"{spec:15} {len(result.history):5d} {per_image:14.3f} {float(result.relative_error.mean()):13.3f} "
            f"{batch_ms:17.3f} {single_ms:7.3f} {per_image * 1000 / batch_ms:8.0f}"
        )


if __name__ == "__main__":
    main()
