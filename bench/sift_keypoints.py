"""Keypoints per image of preimage's sparse SIFT (VLFeat detector, defaults) against OpenCV's SIFT.

    python bench/sift_keypoints.py [--limit 1000] [--size 128]

Runs on ../shared/data/photos (every k-th JPEG), grayscale, centre-cropped and resized as the pipeline does.
Also reports how many keypoints survive the d=4 grid (one per cell) and the time per image.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from preimage.pipeline.features.sift import SiftParams, detect, encode_grid
from preimage.pipeline.images import GRAY_WEIGHTS, center_square

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128, help="0 keeps the original size")
    args = parser.parse_args()
    paths = sorted(SHARED.rglob("*.jpg"))
    if not paths:
        raise SystemExit(f"no photos under {SHARED}")
    paths = paths[:: max(1, len(paths) // args.limit)][: args.limit]
    counts = {"vlfeat": [], "opencv": []}
    kept, seconds = [], {"vlfeat": 0.0, "opencv": 0.0}
    for path in paths:
        bgr = cv2.imread(str(path))
        if bgr is None:
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if args.size:
            rgb = center_square(rgb, args.size)
        gray = (rgb.astype(np.float32) / 255) @ np.array(GRAY_WEIGHTS, np.float32)
        for detector in counts:
            start = time.perf_counter()
            keypoints, descriptors = detect(gray, detector)
            seconds[detector] += time.perf_counter() - start
            counts[detector].append(len(keypoints))
            if detector == "vlfeat":
                grid = encode_grid(keypoints, descriptors, *gray.shape, SiftParams())
                kept.append(int((np.abs(grid).sum(-1) > 0).sum()))
    n = len(counts["vlfeat"])
    v, o = np.array(counts["vlfeat"]), np.array(counts["opencv"])
    print(f"{n} photos from {SHARED}, size {args.size or 'original'}")
    print(
        f"VLFeat (preimage default): {v.mean():.1f} keypoints/image (median {np.median(v):.0f}), "
        f"{seconds['vlfeat'] / n * 1e3:.1f} ms/image"
    )
    print(
        f"OpenCV SIFT defaults:      {o.mean():.1f} keypoints/image (median {np.median(o):.0f}), "
        f"{seconds['opencv'] / n * 1e3:.1f} ms/image"
    )
    print(
        f"ratio VLFeat/OpenCV: {v.sum() / max(o.sum(), 1):.2f}; kept on the d=4 grid: "
        f"{np.sum(kept) / max(v.sum(), 1):.1%} of VLFeat keypoints ({np.mean(kept):.1f}/image)"
    )


if __name__ == "__main__":
    main()
