"""Hugging Face models as representations: a ViT, a DINOv2 (resize then centre crop, register tokens) and a ResNet,
each built from a config and saved as ``save_pretrained`` writes it, with the preprocessing the hub's own
processors declare. Stored features must equal the model's own forward on identically preprocessed input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from preimage.cache.store import FeatureStore, feature_path
from preimage.cli import main
from preimage.pipeline.backbones.hooks import output_tensor
from preimage.pipeline.features import expand_specs, get_representation
from preimage.pipeline.features.extractor import Extractor
from preimage.pipeline.images import to_float
from preimage.pipeline.sources import folder_source

from ...helpers import extract_train_analyze_invert, run_extract, write_crops

transformers = pytest.importorskip("transformers", reason="the models extra: pip install 'preimage[models]'")

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
# the image processors' settings as the hub's own files give them (google/vit-base-patch16-224,
# facebook/dinov2-small, microsoft/resnet-50), at the tiny models' sizes
PROCESSORS = {
    "vit": {
        "do_resize": True,
        "size": {"height": 32, "width": 32},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3,
    },
    "dinov2": {
        "do_resize": True,
        "size": {"shortest_edge": 32},
        "do_center_crop": True,
        "crop_size": {"height": 28, "width": 28},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        **IMAGENET,
    },
    "resnet": {
        "do_resize": True,
        "size": {"shortest_edge": 28},
        "crop_pct": 0.875,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        **IMAGENET,
    },
}


def _models():
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    vit = transformers.ViTConfig(**small, image_size=32, patch_size=8)
    dino = transformers.Dinov2WithRegistersConfig(**small, image_size=28, patch_size=14, num_register_tokens=2)
    resnet = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    torch.manual_seed(0)
    return {
        "vit": transformers.ViTModel(vit, add_pooling_layer=False),
        "dinov2": transformers.Dinov2WithRegistersModel(dino),
        "resnet": transformers.ResNetModel(resnet),
    }


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    """Each model saved as save_pretrained writes it, beside its processor's settings."""
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for name, model in _models().items():
        model.eval().save_pretrained(root / name)
        (root / name / "preprocessor_config.json").write_text(json.dumps(PROCESSORS[name]))
        out[name] = f"hf:{root / name}"
    return out


def test_an_image_text_model_is_its_vision_tower(photos, tmp_path):
    """A CLIP folder (text and vision towers, as the hub's openai/clip-* hold them) gives its vision tower's
    layers, with the trained weights of that tower."""
    from preimage.pipeline.images import center_square

    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = transformers.CLIPConfig(
        vision_config={**tower, "image_size": 32, "patch_size": 8}, text_config=tower, projection_dim=16
    )
    torch.manual_seed(0)
    clip = transformers.CLIPModel(config).eval()
    clip.save_pretrained(tmp_path / "clip")
    processor = {**PROCESSORS["vit"], "image_mean": [0.48, 0.46, 0.41], "image_std": [0.27, 0.26, 0.28]}
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps(processor))
    images = to_float(np.stack([center_square(p, 32) for p in list(photos.values())[:3]]))
    mean, std = (torch.tensor(processor[k]).view(1, 3, 1, 1) for k in ("image_mean", "image_std"))
    with torch.no_grad():
        states = clip.vision_model(pixel_values=(images - mean) / std, output_hidden_states=True).hidden_states
        grid = Extractor(f"hf:{tmp_path / 'clip'}:encoder.layers.1")(images)
    torch.testing.assert_close(grid, as_grid(states[2], 1, 4), atol=1e-5, rtol=1e-5)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def reference(name: str, folder: str, images: torch.Tensor) -> list[torch.Tensor]:
    """The model's own hidden states for images (N, 3, S, S) in [0, 1], preprocessed by hand as its processor
    does: centre crop where it crops, rescale, normalise."""
    settings = PROCESSORS[name]
    crop = settings.get("crop_size", {}).get("height") or (
        settings["size"].get("shortest_edge") if "crop_pct" in settings else None
    )
    if crop and crop < images.shape[-1]:
        top = (images.shape[-1] - crop) // 2
        images = images[..., top : top + crop, top : top + crop]
    mean = torch.tensor(settings["image_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(settings["image_std"]).view(1, 3, 1, 1)
    model = transformers.AutoModel.from_pretrained(folder.removeprefix("hf:")).eval()
    with torch.no_grad():
        return list(model(pixel_values=(images - mean) / std, output_hidden_states=True).hidden_states)


def as_grid(tokens: torch.Tensor, prefix: int, side: int) -> torch.Tensor:
    return tokens[:, prefix:].transpose(1, 2).reshape(len(tokens), tokens.shape[2], side, side)


def test_preprocessing_comes_from_the_processor_settings(folders):
    layers = (("vit", "layers.1"), ("dinov2", "encoder.layer.1"), ("resnet", "encoder.stages.1"))
    vit, dino, resnet = (get_representation(f"{folders[name]}:{layer}") for name, layer in layers)
    assert vit.params["preprocess"] == {
        "input_size": 32,
        "crop": None,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "pixel_range": 1.0,
        "channel_order": "RGB",
    }
    assert (dino.input_size, dino.params["preprocess"]["crop"]) == (32, 28)  # resize 32, then the central 28
    assert (resnet.input_size, resnet.params["preprocess"]["crop"]) == (32, 28)  # 28 / 0.875, then 28
    assert (vit.kind, vit.stored_shape(32)) == ("map", (32, 4, 4))
    assert (dino.kind, dino.stored_shape(32)) == ("map", (32, 2, 2))
    assert (resnet.kind, resnet.stored_shape(32)) == ("map", (16, 4, 4))
    prefix = get_representation(f"{folders['dinov2']}:encoder.layer.1#prefix")
    assert (prefix.kind, prefix.stored_shape(32)) == ("vector", (3 * 32,))  # the class and two register tokens


def test_features_lists_each_layer_as_a_store_of_any_size_holds_it(folders):
    result = CliRunner().invoke(main, ["features", "--model", folders["dinov2"], "--size", "16"])
    assert result.exit_code == 0, result.output
    assert "feeds it 32x32, centre crop 28" in result.output
    table, grammar = result.output.split("\n\n")
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:]}
    assert rows["encoder.layer.1"] == ["map", "32x2x2"] and rows["encoder.layer.1#prefix"] == ["vector", "96"]
    assert grammar.startswith("fused: maps of one model read together")


def test_a_range_of_blocks_keeps_its_depth_and_the_class_tokens(folders):
    specs = expand_specs(f"{folders['vit']}:layers.0-layers.1")
    assert specs == [
        f"{folders['vit']}:{layer}" for layer in ("layers.0", "layers.0#prefix", "layers.1", "layers.1#prefix")
    ]


def test_the_python_api_equals_the_models_own_hidden_states(folders, photos):
    from preimage.pipeline.images import center_square

    images = to_float(np.stack([center_square(p, 32) for p in list(photos.values())[:3]]))
    for name, layer, index, prefix, side in (("vit", "layers.1", 2, 1, 4), ("dinov2", "encoder.layer.0", 1, 3, 2)):
        states = reference(name, folders[name], images)
        with torch.no_grad():
            grid = Extractor(f"{folders[name]}:{layer}")(images)
            tokens = Extractor(f"{folders[name]}:{layer}#prefix")(images)
        torch.testing.assert_close(grid, as_grid(states[index], prefix, side), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tokens, states[index][:, :prefix].flatten(1), atol=1e-5, rtol=1e-5)
    states = reference("resnet", folders["resnet"], images)
    with torch.no_grad():
        stage = Extractor(f"{folders['resnet']}:encoder.stages.1")(images)
    torch.testing.assert_close(stage, states[2], atol=1e-5, rtol=1e-5)


def test_extract_stores_what_the_model_computes(folders, photos, dask_client, tmp_path):
    folder = write_crops(tmp_path / "images", photos, 12, 120)
    specs = ",".join(
        [
            f"{folders['vit']}:layers.1",
            f"{folders['dinov2']}:encoder.layer.1",
            f"{folders['resnet']}:encoder.stages.0-encoder.stages.1",
        ]
    )
    run_extract(tmp_path / "s.zarr", folder_source(folder), specs, dask_client, image_size=32)
    store = FeatureStore.open(tmp_path / "s.zarr")
    rows = np.arange(12)
    images = to_float(store.take("images", rows))  # the store's own crops: the models' input at 32
    checks = (("vit", "layers.1", 2, 1, 4), ("dinov2", "encoder.layer.1", 2, 3, 2))
    for name, layer, index, prefix, side in checks:
        states = reference(name, folders[name], images)
        stored = torch.from_numpy(store.take(feature_path(f"{folders[name]}:{layer}"), rows))
        torch.testing.assert_close(stored, as_grid(states[index], prefix, side), atol=1e-5, rtol=1e-5)
        tokens = torch.from_numpy(store.take(feature_path(f"{folders[name]}:{layer}#prefix"), rows))
        torch.testing.assert_close(tokens, states[index][:, :prefix].flatten(1), atol=1e-5, rtol=1e-5)
    states = reference("resnet", folders["resnet"], images)
    for index, layer in ((1, "encoder.stages.0"), (2, "encoder.stages.1")):
        stored = torch.from_numpy(store.take(feature_path(f"{folders['resnet']}:{layer}"), rows))
        torch.testing.assert_close(stored, states[index], atol=1e-5, rtol=1e-5)
    assert f"{folders['vit']}:layers.1#prefix" in store.feature_names()  # names with '/' come back whole


def test_random_weights_only_when_asked_and_recorded(folders, photos, dask_client, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "preprocessor_config.json"):  # the architecture without its weights
        (bare / name).write_text((Path(folders["vit"].removeprefix("hf:")) / name).read_text())
    folder = write_crops(tmp_path / "images", photos, 4, 100)
    result = CliRunner().invoke(
        main,
        [
            "extract",
            "--images",
            str(folder),
            "--store",
            str(tmp_path / "a.zarr"),
            "--feature",
            f"hf:{bare}:layers.1",
            "--size",
            "32",
        ],
    )
    assert result.exit_code == 1 and "no weights for" in result.output and "--weights random" in result.output
    assert not (tmp_path / "a.zarr").exists()
    run_extract(
        tmp_path / "r.zarr", folder_source(folder), f"hf:{bare}:layers.1", dask_client, image_size=32, weights="random"
    )
    attrs = dict(FeatureStore.open(tmp_path / "r.zarr").features(f"hf:{bare}:layers.1").attrs)
    assert attrs["weights"].startswith("random initialisation") and attrs["weights_sha256"]


def test_bad_models_and_layers_are_one_clear_line(folders, tmp_path):
    def error(*args: str) -> str:
        result = CliRunner().invoke(main, list(args))
        assert result.exit_code == 1, result.output
        assert not (tmp_path / "x.zarr").exists()  # nothing left behind
        return result.output.strip().splitlines()[-1]

    extract = ("extract", "--store", str(tmp_path / "x.zarr"), "--feature")
    assert "no config.json" in error("features", "--model", f"hf:{tmp_path}")
    assert "did you mean layers.1" in error(*extract, f"{folders['vit']}:layers.11")
    assert "unknown backbone 'nosuch'" in error(*extract, "nosuch:conv1")
    assert "did you mean encoder.layer.1" in error(*extract, f"{folders['dinov2']}:encoder.layers.1")
    with pytest.raises(ValueError, match="'cache' gives a list, not a tensor"):  # a layer whose output is no tensor
        output_tensor("cache", [None, torch.zeros(1)])


@pytest.mark.parametrize(
    ("model", "layer"),
    [
        ("vit", "layers.1"),
        ("resnet", "encoder.stages.1"),
        ("vit", "layers.0+layers.1"),  # blocks read together: one grid, fused at the decoder's input
        ("resnet", "encoder.stages.0-encoder.stages.1"),  # stages on two grids, each entering at its side
    ],
)
def test_extract_train_analyze_and_invert_a_transformer_block_and_a_resnet_stage(
    folders, photos, model, layer, tmp_path
):
    folder = write_crops(tmp_path / "images", photos, count=48, side=120, step=(2, 2))
    outputs = extract_train_analyze_invert(folder, f"{folders[model]}:{layer}", tmp_path, "--size", "32")
    assert "normalised error" in outputs[2] and "psnr" in outputs[2].lower()


def test_weights_that_do_not_fit_and_a_size_the_model_cannot_take(folders, tmp_path):
    from safetensors.torch import save_file

    small = dict(num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
    wide = transformers.ViTModel(transformers.ViTConfig(hidden_size=48, **small))
    weights = tmp_path / "wide.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in wide.state_dict().items()}, str(weights))
    extract = ["extract", "--store", str(tmp_path / "x.zarr"), "--weights", str(weights), "--feature"]
    result = CliRunner().invoke(main, [*extract, f"{folders['vit']}:layers.1"])
    assert result.exit_code == 1 and "does not fit" in result.output and "size mismatch" in result.output
    assert "model.embeddings" in result.output  # the first tensor that does not fit, by name
    assert not (tmp_path / "x.zarr").exists()

    fixed = tmp_path / "fixed"  # a ViT made for 32x32 whose processor asks for 48x48
    transformers.ViTModel(transformers.ViTConfig(hidden_size=32, **small)).save_pretrained(fixed)
    processor = {**PROCESSORS["vit"], "size": {"height": 48, "width": 48}}
    (fixed / "preprocessor_config.json").write_text(json.dumps(processor))
    result = CliRunner().invoke(main, ["features", "--model", f"hf:{fixed}"])
    assert result.exit_code == 1 and "cannot take 48x48 images" in result.output


def test_a_model_is_its_weights_wherever_its_folder_is(folders, photos, tmp_path, monkeypatch):
    """A folder given relatively is one name from anywhere; a copy elsewhere is the same model (its weights' hash),
    for a store, a decoder and ``invert``; other weights in the same place are refused with one line."""
    import shutil

    images = write_crops(tmp_path / "images", photos, count=48, side=120, step=(2, 2))
    first, second = tmp_path / "a" / "dino", tmp_path / "b" / "dino-copy"
    shutil.copytree(folders["dinov2"].removeprefix("hf:"), first)
    shutil.copytree(first, second)
    monkeypatch.chdir(tmp_path / "a")

    def ok(*args: str) -> str:
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, (args[0], result.output)
        return result.output

    layer = "encoder.layer.1"
    ok(
        "extract",
        "--images",
        images,
        "--store",
        tmp_path / "a.zarr",
        "--feature",
        f"hf:./dino:{layer}",
        "--workers",
        "1",
        "--size",
        "32",
    )
    assert f"hf:{first}:{layer}" in FeatureStore.open(tmp_path / "a.zarr").feature_names()  # recorded canonically
    ok(
        "train",
        "--store",
        tmp_path / "a.zarr",
        "--feature",
        f"hf:{first}:{layer}",
        "--out",
        tmp_path / "run",
        "--target-size",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--width",
        "16",
        "--precision",
        "fp32",
    )
    ok(
        "extract",
        "--images",
        images,
        "--store",
        tmp_path / "b.zarr",
        "--feature",
        f"hf:{second}:{layer}",
        "--workers",
        "1",
        "--size",
        "32",
    )
    monkeypatch.chdir(tmp_path)
    assert "normalised error" in ok("analyze", "error", "--store", tmp_path / "b.zarr", "--decoder", tmp_path / "run")
    shutil.rmtree(first)  # the folder it was trained on is gone: the copy serves
    ok(
        "invert",
        images / "00.png",
        "--decoder",
        tmp_path / "run",
        "--model",
        "b/dino-copy",
        "--out",
        tmp_path / "inverted",
    )
    assert (tmp_path / "inverted" / "00.png").is_file()
    assert f"hf:{first}" not in ok("features", "--size", "32")  # the listing skips the models used since (gone)

    torch.manual_seed(1)  # the same model with other weights
    other = tmp_path / "c" / "other"
    model = transformers.Dinov2WithRegistersModel.from_pretrained(second)
    for value in model.state_dict().values():
        value.add_(torch.randn_like(value) * 0.01)
    model.save_pretrained(other)
    shutil.copy(second / "preprocessor_config.json", other)
    result = CliRunner().invoke(
        main,
        [
            "invert",
            str(images / "00.png"),
            "--decoder",
            str(tmp_path / "run"),
            "--model",
            str(other),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code == 1 and "are not those the decoder was trained on" in result.output, result.output
    assert not (tmp_path / "x").exists()
    both = ["invert", images / "00.png", "--decoder", tmp_path / "run", "--feature", f"hf:{second}:{layer}"]
    refused = CliRunner().invoke(main, [str(a) for a in both])  # one meaning per option: where a model is, --model
    assert refused.exit_code == 1 and "--model FOLDER" in refused.output


def test_pickle_weights_are_one_line_that_says_how_to_convert_them(folders, photos, tmp_path):
    """Issue 49: a folder whose weights are a pickle holding more than tensors (pytorch_model.bin, as old
    checkpoints are) ran no code but ended in a 64-line traceback suggesting weights_only=False."""
    import argparse
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(folders["dinov2"].removeprefix("hf:"), folder)
    state = load_file(folder / "model.safetensors")
    state["args"] = argparse.Namespace(lr=0.1)  # what an old training script pickled beside its tensors
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    images = write_crops(tmp_path / "images", photos, count=4, side=64)
    store = tmp_path / "s.zarr"
    args = ["extract", "--images", str(images), "--store", str(store), "--feature", f"hf:{folder}:encoder.layer.1"]
    result = CliRunner().invoke(main, [*args, "--size", "32", "--workers", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output and "UnpicklingError" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error:") and "a pickle (pytorch_model.bin)" in line and "argparse.Namespace" in line
    assert "model.safetensors" in line and not store.exists()


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (
            {"model_type": "my_net", "auto_map": {"AutoModel": "modeling_my.MyModel"}},
            "its config.json names code of its own to run (auto_map: modeling_my.MyModel); preimage runs no model's",
        ),
        (
            {"model_type": "dinov2", "auto_map": {"AutoModel": "modeling_my.MyModel"}},
            "its config.json names code of its own to run",
        ),
        ({"model_type": "dinov3x"}, "model_type 'dinov3x' in its config.json is not an architecture transformers"),
    ],
    ids=["remote code", "remote code of a known type", "unknown type"],
)
def test_remote_code_and_an_unknown_architecture_are_one_line(tmp_path, config, says):
    """Issue 49: a config with auto_map, or a model_type transformers does not know, printed the 1,000 names of
    every model type; no code of the model's may run either way."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_my.py").write_text("raise SystemExit('the model ran its own code')\n")
    result = CliRunner().invoke(main, ["features", "--model", f"hf:{folder}"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and says in lines[0], result.output
    assert len(lines[0]) < 400
    if config["model_type"] == "dinov3x":
        assert "did you mean dinov2" in lines[0]
