"""Extractor speed against its peer in the same run: VLFeat's C (per image) for HOG/LBP, bare torch for AlexNet.

    python bench/bench_extractors.py [--repeats 5] [--threads N]

Prints per-image times at 227x227 and 512x512, batched throughput on 256 grayscale 128x128 photos, and
AlexNet CONV1..CONV5 images/s at 224x224 (batch 64) against a bare ``features(x)`` loop on the same tensors.
``hog``/``lbp`` run the compiled kernels on CPU; the ``torch ops`` rows time the path that autograd and other
devices use.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from preimage.pipeline.backbones import create_backbone
from preimage.pipeline.features import hog, lbp
from preimage.pipeline.features.hog import hog_torch
from preimage.pipeline.features.lbp import lbp_torch
from preimage.pipeline.features.vlfeat import vl_hog, vl_lbp
from preimage.pipeline.images import GRAY_WEIGHTS, center_square, sample_photos

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def best_time(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up (seconds)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved(first, second, repeats: int) -> tuple[float, float]:
    """Best times of two contenders timed alternately, so that drift of the machine hits both alike."""
    first(), second()
    a, b = [], []
    for _ in range(repeats):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(a), min(b)


def gray_photos(count: int, size: int) -> np.ndarray:
    """``count`` real grayscale photos in [0, 1] at ``size`` x ``size`` (shared photos, else scikit-image crops)."""
    import cv2

    paths = sorted(SHARED.rglob("*.jpg")) if SHARED.is_dir() else []
    paths = paths[:: max(1, len(paths) // count)]
    images = []
    for path in paths[:count]:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        images.append(center_square(rgb, size))
    photos = list(sample_photos().values())
    rng = np.random.default_rng(0)
    while len(images) < count:
        photo = photos[len(images) % len(photos)]
        top, left = rng.integers(0, np.array(photo.shape[:2]) - size // 2)
        images.append(center_square(photo[top:, left:], size))
    rgb = np.stack(images).astype(np.float32) / 255
    return np.ascontiguousarray(rgb @ np.array(GRAY_WEIGHTS, np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; times are the best of {args.repeats}")
    print(f"{'case':38} {'preimage':>12} {'peer':>12} {'peer/preimage':>14}")

    for size in (227, 512):
        image = gray_photos(1, size)[0]
        batch = torch.from_numpy(image)[None]
        for name, ours, peer in (("hog", hog, vl_hog), ("lbp", lbp, vl_lbp)):
            t_ours = best_time(lambda ours=ours, batch=batch: ours(batch), args.repeats)
            t_peer = best_time(lambda peer=peer, image=image: peer(image), args.repeats)
            print(
                f"{name} one image {size}x{size} (ms)".ljust(38)
                + f"{t_ours * 1e3:12.2f} {t_peer * 1e3:12.2f} {t_peer / t_ours:14.2f}  (VLFeat C)"
            )

    images = gray_photos(256, 128)
    batch = torch.from_numpy(images)
    contenders = (("hog", hog, vl_hog), ("lbp", lbp, vl_lbp), ("hog torch ops", hog_torch, vl_hog))
    for name, ours, peer in (*contenders, ("lbp torch ops", lbp_torch, vl_lbp)):
        t_ours = best_time(lambda ours=ours: ours(batch), args.repeats)
        t_peer = best_time(lambda peer=peer: [peer(im) for im in images], args.repeats)
        print(
            f"{name} 256 x 128x128 (images/s)".ljust(38)
            + f"{256 / t_ours:12.0f} {256 / t_peer:12.0f} {t_peer / t_ours:14.2f}  (VLFeat C, per image)"
        )

    try:
        net = create_backbone("alexnet")
    except Exception as err:
        print(f"alexnet skipped: {err}")
        return
    x = torch.rand(64, 3, 224, 224)
    normalised = net.config.preprocess(x)
    features = net.network.features
    with torch.inference_mode():
        t_ours, t_bare = interleaved(lambda: net(x, "conv1-conv5"), lambda: features(normalised), args.repeats)
    print(
        "alexnet conv1-conv5, batch 64 (img/s)".ljust(38)
        + f"{64 / t_ours:12.1f} {64 / t_bare:12.1f} {t_bare / t_ours:14.2f}  (bare features(x); overhead "
        f"{(t_ours / t_bare - 1) * 100:+.1f}%)"
    )


if __name__ == "__main__":
    main()
