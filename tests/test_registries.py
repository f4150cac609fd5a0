"""Registry-wide, in timm's manner: every registered backbone (the built-in CNNs, a Hugging Face model, a fused
reading of layers) computes every layer of one image, and every decoder kind is built, decodes that image's
feature, and comes back from its file unchanged. timm's models run in .venv-timm (tests/pipeline/backbones)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from preimage.pipeline.backbones import create_backbone, get_config, list_backbones
from preimage.pipeline.features import HANDCRAFTED, get_representation
from preimage.pipeline.images import center_square, to_float
from preimage.pipeline.names import feature_name, folder_model
from preimage.train.models import checkpoint
from preimage.train.models.decoders import KINDS, DecoderConfig, create_decoder, list_decoders
from preimage.train.models.loading import load_decoder


@pytest.fixture(scope="module")
def image(photos) -> np.ndarray:
    """One photo, uint8 RGB."""
    return next(iter(photos.values()))


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory) -> str:
    """A small DINOv2 with registers, saved as save_pretrained writes it (random weights: nothing downloaded)."""
    transformers = pytest.importorskip("transformers", reason="the models extra")
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    config = transformers.Dinov2WithRegistersConfig(**small, image_size=28, patch_size=14, num_register_tokens=2)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf") / "dino"
    transformers.Dinov2WithRegistersModel(config).eval().save_pretrained(folder)
    processor = {"do_resize": True, "size": {"shortest_edge": 28}, "do_center_crop": True, "crop_size": 28}
    processor |= {"do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True}
    processor |= {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder_model(folder)


def _every_layer(backbone: str, image: np.ndarray) -> None:
    network = create_backbone(backbone, random_init=True).eval()
    config = get_config(backbone)
    size = config.preprocess.input_size
    with torch.no_grad():
        outputs = network(to_float(center_square(image, size)[None]), list(config.layers))
    assert list(outputs) == list(config.layers)
    for layer, value in outputs.items():
        assert value.shape[0] == 1 and torch.isfinite(value).all(), layer
        rep = get_representation(feature_name(backbone, layer))
        if rep.kind in ("map", "vector"):  # what a store holds of it
            assert tuple(value.shape[1:]) == rep.stored_shape(size), layer


@pytest.mark.parametrize("backbone", list_backbones())
def test_every_built_in_backbone_computes_every_layer_of_one_image(backbone, image):
    _every_layer(backbone, image)


def test_a_hugging_face_model_computes_every_layer_of_one_image(hf_model, image):
    _every_layer(hf_model, image)


def _one_of_each_kind(hf_model: str) -> dict[str, str]:
    """A representation of each decoder kind: a grid, a map, a vector, and several maps read together."""
    return {
        "grid": "hog",
        "map": feature_name(hf_model, "encoder.layer.1"),
        "vector": "alexnet:fc7",
        "fused": feature_name(hf_model, "encoder.layer.0-encoder.layer.1"),
    }


def test_every_decoder_kind_decodes_one_image_and_comes_back_from_its_file(hf_model, image, tmp_path):
    chosen = _one_of_each_kind(hf_model)
    assert sorted(chosen) == list_decoders() == sorted(KINDS)
    assert set(HANDCRAFTED) == {"hog", "lbp", "sift"}
    for kind, spec in chosen.items():
        rep = get_representation(spec)
        assert rep.kind == kind == rep.decoder, spec
        module = rep.load(None if rep.backbone is None else "random").eval()
        size = rep.input_size or 64
        with torch.no_grad():
            feature = rep.compute(module, to_float(center_square(image, size)[None]))[rep.name]
        parts = tuple(part.stored_shape(size) for part in rep.parts)
        config = DecoderConfig(kind, tuple(feature.shape[1:]), target_size=16, width=16, parts=parts)
        torch.manual_seed(0)
        decoder = create_decoder(config).eval()
        with torch.no_grad():
            picture = decoder(feature)
        assert picture.shape == (1, 3, 16, 16) and torch.isfinite(picture).all(), spec
        path = tmp_path / f"{kind}.safetensors"
        checkpoint.save(path, decoder, None, {"decoder": config.as_dict()})
        loaded = load_decoder(path)
        with torch.no_grad():
            assert torch.equal(loaded(feature), picture), spec
