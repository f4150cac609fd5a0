"""Ship trained runs as preimage's own decoders (train/zoo/): float16 weights, a model card, measured numbers.

    python references/zoo_export.py --store photos.zarr runs/zoo/hog runs/zoo/conv5 ...
    python references/zoo_export.py --store photos.zarr --rescore train/zoo/*.safetensors

For each run folder: its held-out scores on the store (the rows the run never saw) with the float32 weights and
with the float16 ones that ship (float32 ships instead where they differ by more than 0.001), the training part's
mean image as the baseline, its scores on scikit-image's photos (what the tests check where the shared photos are
absent), and its recipe from run.json. Writes train/zoo/<name>.safetensors and the card as <name>.md (<name>:
the representation, with the loss appended for a decoder not trained on pixels, train/models/zoo.py). ``--rescore``
scores shipped files again with today's metrics (a new column such as LPIPS) and rewrites their cards, the weights
unchanged; it refuses a file whose held-out error no longer matches its card.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from preimage.build.export import export, rescore
from preimage.cache.store import FeatureStore
from preimage.train.models import zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of preimage train (--rescore: shipped files)")
    parser.add_argument("--store", type=Path, required=True, help="the store they were trained on")
    parser.add_argument("--out", type=Path, default=zoo.ZOO_DIR, help="where shipped decoders live")
    parser.add_argument("--rescore", action="store_true", help="score shipped files again and rewrite their cards")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    store = FeatureStore.open(args.store)
    for run in args.runs:
        rescore(run, store) if args.rescore else export(run, store, args.out)


if __name__ == "__main__":
    main()
