# The fine-tuning recipes of references/fused_results.sh's controls (sourced, not run): the settings of preimage
# build's recipe (preimage/build/recipe.py; tests/build/test_recipe.py holds them equal), so that the controls train
# exactly as what ships. Needs $PREIMAGE.

# DeePSiM (train/training/deepsim.py): fine-tuned from a trained decoder with the paper's three terms and weights,
# the comparator spanning AlexNet's CONV1-CONV5 (docs/quality.md says why), batch 32 at Adam 0.0002, to 64 px.
deepsim() {  # STORE FEATURE OUT INIT UPSAMPLE EPOCHS
  "$PREIMAGE" train --store "$1" --feature "$2" --out "$3" --init "$4" \
    --loss deepsim --loss-option comparator=alexnet:conv1-conv5 --lr 0.0002 --batch-size 32 --width 128 \
    --target-size 64 --upsample "$5" --epochs "$6" --precision auto --resume auto
}

# A fused decoder started as one layer's own trained decoder (--init: the other layers enter through weights at
# zero), then 8 epochs at a lower rate; the same from a single layer's decoder is the controls' "as long again alone".
fused() {  # STORE FEATURE OUT INIT
  "$PREIMAGE" train --store "$1" --feature "$2" --out "$3" --init "$4" --width 128 --epochs 8 --lr 0.0003 \
    --augment none --precision auto --resume auto
}
