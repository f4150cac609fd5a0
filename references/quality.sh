#!/usr/bin/env bash
# The decoder-quality protocol of docs/quality.md: one store of the shared photos, one decoder per
# representation under a stated CPU budget, held-out part = 10% of the file paths by hash.
#   bash references/quality.sh [PHOTOS_DIR] [STORE] [RUNS]
# Each step resumes where a killed run stopped (extract and train both do), so rerun it after a crash.
# The logits decoder (EfficientNet-Lite0's class scores) serves `preimage analyze ablate`.
set -euo pipefail
PHOTOS=${1:-../shared/data/photos}
STORE=${2:-photos.zarr}
RUNS=${3:-runs/quality}
PREIMAGE=${PREIMAGE:-preimage}

"$PREIMAGE" extract --images "$PHOTOS" --store "$STORE" --feature hog,lbp,sift,alexnet:conv1-conv5,efficientnet_lite0:logits \
  --size 128

# name  feature                   width  epochs  augment  (budgets chosen for 2 CPU cores; widths trade quality for
# speed; HOG, LBP and SIFT get re-cropped images, HOG the longest budget as the representation with a goal: see
# docs/quality.md). --precision auto trains in bf16 where the CPU or GPU computes it natively (1.45-2x faster on
# AVX512-BF16) and in fp32 elsewhere (emulated bf16 is 14x slower); each run says which it chose.
while read -r name feature width epochs augment; do
  args=(--store "$STORE" --feature "$feature" --out "$RUNS/$name" --width "$width" --epochs "$epochs" --augment "$augment"
        --precision auto --resume auto)
  "$PREIMAGE" train "${args[@]}"
done <<'TABLE'
hog    hog                       128  90  crop
lbp    lbp                       128  40  crop
sift   sift                      128  30  crop
conv1  alexnet:conv1              64   4  none
conv2  alexnet:conv2              64   4  none
conv3  alexnet:conv3              64   4  none
conv4  alexnet:conv4              64   4  none
conv5  alexnet:conv5              64   4  none
logits efficientnet_lite0:logits 128  10  none
TABLE

# The autoencoder upper bound for CONV2 (docs/analyses.md): AlexNet's CONV1-CONV2 fine-tuned with the decoder.
args=(--store "$STORE" --feature alexnet:conv2 --out "$RUNS/conv2-ae" --autoencoder --width 64 --epochs 2 --precision auto
      --resume auto)
"$PREIMAGE" train "${args[@]}"
