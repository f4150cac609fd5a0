#!/usr/bin/env bash
# The decoder-quality protocol of the README's table: one store of the shared photos, one decoder per
# representation under a stated CPU budget, held-out part = 10% of the file paths by hash.
#   bash references/quality.sh [PHOTOS_DIR] [STORE] [RUNS]
# Each step resumes where a killed run stopped (extract and train both do), so rerun it after a crash.
set -euo pipefail
PHOTOS=${1:-../shared/data/photos}
STORE=${2:-photos.zarr}
RUNS=${3:-runs/quality}
PREIMAGE=${PREIMAGE:-preimage}

"$PREIMAGE" extract --images "$PHOTOS" --store "$STORE" --features hog,lbp,sift,alexnet:conv1-conv5 --size 128

# name  feature          width  epochs   (budgets chosen for 2 CPU cores; widths trade quality for speed)
while read -r name feature width epochs; do
  args=(--store "$STORE" --feature "$feature" --out "$RUNS/$name" --width "$width" --epochs "$epochs")
  if [ -f "$RUNS/$name/checkpoint.safetensors" ]; then args+=(--resume); fi
  "$PREIMAGE" train "${args[@]}"
done <<'TABLE'
hog    hog            128  20
lbp    lbp            128  10
sift   sift           128  10
conv1  alexnet:conv1   64   6
conv2  alexnet:conv2   64   6
conv3  alexnet:conv3   64   6
conv4  alexnet:conv4   64   6
conv5  alexnet:conv5   64   6
TABLE
