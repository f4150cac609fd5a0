#!/usr/bin/env bash
# Every study of the README on the decoders that references/quality.sh trains, into one folder with an index.
#   bash references/analyses.sh [STORE] [RUNS] [OUT]
# Each step prints its wall time; the optimisation comparison (tens of seconds per image and layer) comes last.
set -euo pipefail
STORE=${1:-photos.zarr}
RUNS=${2:-runs/quality}
OUT=${3:-analysis}
PREIMAGE=${PREIMAGE:-preimage}
common=(--store "$STORE" --decoders "$RUNS" --out "$OUT")
convs=alexnet:conv1-conv5
logits=efficientnet_lite0:logits

step() { local start=$SECONDS; "$PREIMAGE" analyze "$@"; echo "== analyze $1: $((SECONDS - start)) s"; }

step layers "${common[@]}" --features hog,lbp,sift,$convs,$logits --n 1000
step perturb "${common[@]}" --features $convs,$logits --n 1000
step interpolate "${common[@]}" --features $convs,$logits --pair 0,5
step sample "${common[@]}" --features $convs,$logits --vectors 4096
step ablate "${common[@]}" --features $logits --n 8
step window "${common[@]}" --features $convs --window 3 --n 256
step channels "${common[@]}" --features $convs --channels 0:32 --n 256
step compare --store "$STORE" --decoders "$RUNS" --out "$OUT" --feature hog --n 50
step compare --store "$STORE" --decoders "$RUNS" --out "$OUT" --feature $convs --n 24  # the table accumulates
