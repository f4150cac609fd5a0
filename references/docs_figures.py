"""The figures of docs/quality.md, made from what `preimage analyze` wrote (PNG) as JPEGs small enough for the repo.

    python references/docs_figures.py --layers out/zoo --compare out/table2 --compare out/compare-cnn --docs docs
    python references/docs_figures.py --perceptual out/perceptual --docs docs
    python references/docs_figures.py --fused out/fused/dinov2 --fused out/fused/alexnet \
        --fused out/fused/dinov2-all --fused out/fused/alexnet-all --docs docs

- ``zoo-grid.jpg``: the layers study's grid of the shipped decoders (``analyze layers``), as it is.
- ``perceptual-grid.jpg``: the layers study of each pixel decoder beside its DeePSiM decoder (``analyze layers
  --decoder hog --decoder hog+deepsim ...``), as it is.
- ``fused-dinov2.jpg``, ``fused-alexnet.jpg``, ``fused-dinov2-all.jpg``, ``fused-alexnet-all.jpg``: the layers
  studies of the fused decoders beside the single layers they read (``references/fused_results.sh``), as they are.
- ``compare.jpg``: the held-out photos once, then every method's row of each compared representation in the
  order given (``analyze compare``: HOG with HOGgles first, then CONV1, CONV3 and CONV5).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

QUALITY = 85  # JPEG quality: the figures stay readable at a tenth of the PNG's size
LAYERS_SHOWN = ("alexnet-conv1", "alexnet-conv3", "alexnet-conv5")


def rows(path: Path, size: int) -> list[np.ndarray]:
    """The figure's rows (each ``size`` pixels high: a label, then the images)."""
    picture = cv2.imread(str(path))
    if picture is None or picture.shape[0] % size:
        raise SystemExit(f"{path}: not a figure of {size}-pixel rows")
    return [picture[i : i + size] for i in range(0, picture.shape[0], size)]


def write_jpeg(path: Path, picture: np.ndarray) -> None:
    if not cv2.imwrite(str(path), picture, [cv2.IMWRITE_JPEG_QUALITY, QUALITY]):
        raise SystemExit(f"could not write {path}")
    print(f"wrote {path} ({picture.shape[1]}x{picture.shape[0]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=Path, help="an analyze layers folder (layers-grid.png)")
    parser.add_argument("--compare", type=Path, action="append", help="analyze compare folders")
    parser.add_argument("--perceptual", type=Path, help="an analyze layers folder of pixel and DeePSiM decoders")
    parser.add_argument(
        "--fused", type=Path, action="append", help="analyze layers folders of fused decoders (fused-FOLDER.jpg)"
    )
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--size", type=int, default=128, help="the store's image size: each row's height")
    args = parser.parse_args()
    if args.perceptual:
        write_jpeg(args.docs / "perceptual-grid.jpg", layers_grid(args.perceptual))
    if args.layers:
        write_jpeg(args.docs / "zoo-grid.jpg", layers_grid(args.layers))
    for folder in args.fused or []:
        write_jpeg(args.docs / f"fused-{folder.name}.jpg", layers_grid(folder))
    if args.compare:
        write_jpeg(args.docs / "compare.jpg", compare_rows(args.compare, args.size))


def layers_grid(folder: Path) -> np.ndarray:
    grid = cv2.imread(str(folder / "layers-grid.png"))
    if grid is None:
        raise SystemExit(f"{folder / 'layers-grid.png'} is missing: run preimage analyze layers first")
    return grid


def compare_rows(folders: list[Path], size: int) -> np.ndarray:
    stacked: list[np.ndarray] = []
    for folder in folders:
        for figure in sorted(folder.glob("compare-*.png")):
            name = figure.stem.removeprefix("compare-")
            if name != "hog" and name not in LAYERS_SHOWN:
                continue
            image, *methods = rows(figure, size)
            stacked += ([] if stacked else [image]) + methods
    if not stacked:
        raise SystemExit(f"no compare-*.png in {', '.join(map(str, folders))}: run preimage analyze compare")
    return np.concatenate(stacked, axis=0)


if __name__ == "__main__":
    main()
