#!/usr/bin/env bash
# Every study of docs/analyses.md on the decoders that references/quality.sh trains, into one folder with an index.
#   bash references/analyses.sh [STORE] [RUNS] [OUT]
# Each step prints its wall time. The comparison with the optimisation and HOGgles is docs/quality.md's (the zoo).
set -euo pipefail
STORE=${1:-photos.zarr}
RUNS=${2:-runs/quality}
OUT=${3:-out/analyze}
PREIMAGE=${PREIMAGE:-preimage}
common=(--store "$STORE" --decoder "$RUNS" --out "$OUT" --overwrite)  # a rerun replaces its results
convs=alexnet:conv1-conv5
logits=efficientnet_lite0:logits

step() { local start=$SECONDS; "$PREIMAGE" analyze "$@"; echo "== analyze $1: $((SECONDS - start)) s"; }

step layers "${common[@]}" --feature hog,lbp,sift,$convs,$logits --n 1000
step perturb "${common[@]}" --feature $convs,$logits --n 1000
step interpolate "${common[@]}" --feature $convs,$logits --pair 0,5
step sample "${common[@]}" --feature $convs,$logits --vectors 4096
step ablate "${common[@]}" --feature $logits --n 8
step window "${common[@]}" --feature $convs --window 3 --n 256
step channels "${common[@]}" --feature $convs --channels 0:32 --n 256
