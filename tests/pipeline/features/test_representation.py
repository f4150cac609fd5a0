"""The one resolver from a spec to a representation: its grammar, what each representation is, lazy and plugged-in
backbones, and every caller going through it."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch import nn

from preimage.pipeline.backbones import create_backbone, get_config, list_backbones, registry
from preimage.pipeline.backbones.registry import BackboneConfig, Preprocess, TappedSequence, register_backbone
from preimage.pipeline.features import expand_specs, get_representation, split_spec
from preimage.pipeline.features.extractor import Extractor

NAME = "hf-hub:test/ViT-B-32"  # a ':' and '-'s in the model's name, '.' and '-' in its layers'


class TinyTokens(TappedSequence):
    """Layers named as timm and Hugging Face name them: a map, a token sequence and a vector."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def steps(self):
        return [
            ("stages.0", self.conv),
            ("stages.1", lambda x: torch.relu(x)),
            ("blocks.2", lambda x: x.flatten(2).transpose(1, 2)),  # (N, tokens, channels)
            ("head-norm", lambda x: x.mean(1)),
        ]


@pytest.fixture(scope="module")
def tiny():
    if NAME not in registry._REGISTRY:
        register_backbone(
            BackboneConfig(
                NAME,
                TinyTokens,
                layers=("stages.0", "stages.1", "blocks.2", "head-norm"),
                preprocess=Preprocess(32, (0.5,) * 3, (0.5,) * 3),
                sources=(),
            )
        )
    return NAME


def test_the_spec_grammar_carries_the_names_models_use(tiny):
    assert split_spec("hog") == ("hog", None)
    assert split_spec(f"{tiny}:stages.2") == (tiny, "stages.2")
    assert expand_specs(f"hog,{tiny}:stages.0-stages.1+head-norm") == [
        "hog",
        f"{tiny}:stages.0",
        f"{tiny}:stages.1",
        f"{tiny}:head-norm",
    ]
    assert expand_specs("alexnet:conv1-conv3") == ["alexnet:conv1", "alexnet:conv2", "alexnet:conv3"]
    with pytest.raises(ValueError, match=r"no layer 'stages\.9'"):
        expand_specs(f"{tiny}:stages.9")
    with pytest.raises(ValueError, match="unknown representation 'hug'"):
        split_spec("hug")


def test_a_representation_knows_what_it_is_from_its_output(tiny):
    hog, conv5, fc7 = (get_representation(s) for s in ("hog", "alexnet:conv5", "alexnet:fc7"))
    assert (hog.kind, hog.decoder, hog.channels_last, hog.input) == ("grid", "grid", True, "gray")
    assert (conv5.kind, conv5.decoder, conv5.stored_shape(224)) == ("map", "map", (256, 6, 6))
    assert (fc7.kind, fc7.decoder) == ("vector", "vector")
    assert get_representation(f"{tiny}:head-norm").kind == "vector"
    assert get_representation(f"{tiny}:stages.1").stored_shape(32) == (4, 16, 16)
    with pytest.raises(ValueError, match="cannot store"):  # tokens: filed as what they are, not as a vector
        get_representation(f"{tiny}:blocks.2")
    assert get_representation("alexnet:fc8").class_scores and not conv5.class_scores


def test_the_module_of_a_representation_computes_what_a_store_holds(tiny):
    rep = get_representation(f"{tiny}:stages.1")
    module = create_backbone(tiny, random_init=True)  # it has no weights: rep.load() would say so
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        got = rep.compute(module, images)[rep.name]
        expected = torch.relu(module.network.conv((images - 0.5) / 0.5))
    torch.testing.assert_close(got, expected)
    gray = torch.rand(2, 64, 64)
    torch.testing.assert_close(Extractor("hog")(gray), get_representation("hog").load()(gray))


def test_backbones_register_on_first_use_and_plugins_through_entry_points(tmp_path, monkeypatch):
    code = (
        "import sys; import preimage.pipeline.backbones as b; print(sorted(b.list_backbones())); "
        "print([m for m in sys.modules if m.endswith(('.alexnet', '.vgg', '.efficientnet_lite'))])"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "alexnet" in out[0] and out[1] == "[]"  # listed, not imported

    (tmp_path / "tiny_plugin.py").write_text(
        textwrap.dedent("""
        from torch import nn
        from preimage.pipeline.backbones.registry import BackboneConfig, Preprocess, TappedSequence, register_backbone

        class LabNet(TappedSequence):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 2, 3)

            def steps(self):
                return [("conv", self.conv)]

        register_backbone(BackboneConfig("tinyplugin", LabNet, ("conv",), Preprocess(16, (0,) * 3, (1,) * 3), ()))
    """)
    )
    info = tmp_path / "tiny_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[preimage.backbones]\ntinyplugin = tiny_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._plugins.cache_clear()
    try:
        assert "tinyplugin" in list_backbones()
        assert get_config("tinyplugin").layers == ("conv",)
        assert get_representation("tinyplugin:conv").stored_shape(16) == (2, 14, 14)
    finally:
        registry._plugins.cache_clear()


def test_each_kind_of_representation_is_computed_by_its_own_strategy():
    """The representation is data; how it is computed is one strategy per kind, chosen in one place."""
    from preimage.pipeline.features.representation import HandcraftedComputation, LayerComputation

    hog, conv3 = get_representation("hog"), get_representation("alexnet:conv3")
    assert isinstance(hog.strategy, HandcraftedComputation) and isinstance(conv3.strategy, LayerComputation)
    assert hog.module_key == ("hog", tuple(sorted(hog.params.items()))) and conv3.module_key == ("alexnet",)
    assert hog.weights_sha256(hog.load()) is None and not hog.class_scores
