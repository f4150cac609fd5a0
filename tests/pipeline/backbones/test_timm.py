"""timm models as representations (``timm:MODEL:LAYER``): a ViT and a ResNet with timm's own preprocessing.

timm imports torchvision, which PyPI builds against its own (CUDA) torch, so these tests run in a second venv,
``.venv-timm`` (``bash .ci/setup --timm``); ``test_timm_venv.py`` runs them there from the main suite. The peer
is timm itself: its eval transform and ``forward_intermediates`` on the images the store holds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from preimage.cache.store import FeatureStore, feature_path
from preimage.cli import main
from preimage.pipeline.features.extractor import Extractor
from preimage.pipeline.images import to_float
from preimage.pipeline.sources import folder_source

from ...helpers import extract_train_analyze_invert, run_extract, write_crops

timm = pytest.importorskip("timm", reason="timm runs in .venv-timm (bash .ci/setup --timm)", exc_type=ImportError)

VIT, RESNET, SWIN = "vit_tiny_patch16_224", "resnet18", "swin_tiny_patch4_window7_224"  # SWIN: maps channels last


def use_hub_cache(monkeypatch, folder) -> None:
    """Offline, with ``folder`` as the Hugging Face hub cache (huggingface_hub reads both when imported)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No hub: an empty hub cache, offline (a test that wants a cached model fills its own)."""
    use_hub_cache(monkeypatch, tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, tuple[str, torch.nn.Module]]:
    """Each model with seeded weights, saved as a safetensors file of its own keys (as timm's hub files are)."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("weights")
    out = {}
    for seed, name in enumerate((VIT, RESNET, SWIN)):
        torch.manual_seed(seed + 1)
        model = timm.create_model(name, pretrained=False).eval()
        path = root / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        out[name] = (str(path), model)
    return out


def timm_features(model: torch.nn.Module, images: np.ndarray, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What timm computes for uint8 images (N, S, S, 3): its own eval transform, then ``forward_intermediates`` at
    block or stage ``index`` (a ViT's patch grid and its class token)."""
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    x = torch.stack([transform(Image.fromarray(image)) for image in images])
    with torch.no_grad():
        if hasattr(model, "num_prefix_tokens"):  # a ViT
            (grid, prefix), *_ = model.forward_intermediates(
                x, indices=[index], return_prefix_tokens=True, norm=False, intermediates_only=True
            )
            return grid, prefix.flatten(1)
        return model.forward_intermediates(x, indices=[index], intermediates_only=True)[0], None


def test_preprocessing_is_timms_eval_transform(photos):
    from preimage.pipeline.features import get_representation
    from preimage.pipeline.images import center_square

    vit, resnet = get_representation(f"timm:{VIT}:blocks.5"), get_representation(f"timm:{RESNET}:layer2")
    assert vit.params["preprocess"] == {
        "input_size": 248,
        "crop": 224,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "pixel_range": 1.0,
        "channel_order": "RGB",
        "crop_rounding": "round",
    }  # 224 / crop_pct 0.9
    assert (resnet.params["preprocess"]["input_size"], resnet.params["preprocess"]["crop"]) == (235, 224)  # 0.95
    assert (vit.kind, vit.stored_shape(248), resnet.stored_shape(235)) == ("map", (192, 14, 14), (128, 28, 28))
    from preimage.pipeline.backbones import get_config

    for name, side in ((VIT, 248), (RESNET, 235)):
        model = timm.create_model(name, pretrained=False)
        images = np.stack([center_square(p, side) for p in list(photos.values())[:3]])
        transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
        theirs = torch.stack([transform(Image.fromarray(image)) for image in images])
        ours = get_config(f"timm:{name}").preprocess(to_float(images))
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)


def test_stored_and_python_features_equal_timms_own(weights, photos, dask_client, tmp_path):
    for name, layer, index, side in ((VIT, "blocks.5", 5, 248), (RESNET, "layer2", 2, 235), (SWIN, "layers.1", 1, 248)):
        path, model = weights[name]
        spec = f"timm:{name}:{layer}"
        folder = write_crops(tmp_path / name, photos, 6, side)
        store_path = tmp_path / f"{name}.zarr"
        run_extract(store_path, folder_source(folder), spec, dask_client, image_size=side, weights=path)
        store = FeatureStore.open(store_path)
        rows = np.arange(6)
        images = store.take("images", rows)  # the store's own squares: what the model was fed
        grid, prefix = timm_features(model, images, index)
        stored = torch.from_numpy(store.take(feature_path(spec), rows))
        torch.testing.assert_close(stored, grid, atol=1e-5, rtol=1e-5)
        with torch.no_grad():  # the Python API on the same squares
            torch.testing.assert_close(Extractor(spec, weights=path)(to_float(images)), grid, atol=1e-5, rtol=1e-5)
        if prefix is not None:
            tokens = torch.from_numpy(store.take(feature_path(f"{spec}#prefix"), rows))
            torch.testing.assert_close(tokens, prefix, atol=1e-5, rtol=1e-5)
        assert dict(store.features(spec).attrs)["weights_sha256"] == digest(path)


def digest(weights_file: str) -> str:
    """The weights hash a store records for a file of a timm model's own keys."""
    from safetensors.torch import load_file

    from preimage.pipeline.backbones.weights import state_dict_digest

    return state_dict_digest({f"model.{k}": v for k, v in load_file(weights_file).items()})


def _hub_cache(root, repo: str, weights_file: str) -> None:
    """A Hugging Face hub cache holding ``repo``'s model.safetensors, laid out as huggingface_hub writes it."""
    import shutil

    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(weights_file, snapshot / "model.safetensors")
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)


def test_offline_weights_come_from_the_hub_cache_or_one_line_says_how(weights, photos, monkeypatch, tmp_path):
    folder = write_crops(tmp_path / "images", photos, 4, 100)
    store = tmp_path / "s.zarr"
    extract = [
        "extract",
        "--images",
        str(folder),
        "--store",
        str(store),
        "--size",
        "64",
        "--workers",
        "1",
        "--feature",
        f"timm:{RESNET}:layer1",
    ]
    result = CliRunner().invoke(main, extract)
    assert result.exit_code == 1, result.output
    assert "no weights for timm:resnet18 in the hub cache" in result.output and "--weights random" in result.output
    assert not store.exists()  # nothing left behind

    cache = tmp_path / "hub"
    _hub_cache(cache, timm.create_model(RESNET).pretrained_cfg["hf_hub_id"], weights[RESNET][0])
    use_hub_cache(monkeypatch, cache)
    result = CliRunner().invoke(main, extract)
    assert result.exit_code == 0, result.output
    attrs = dict(FeatureStore.open(store).features(f"timm:{RESNET}:layer1").attrs)
    assert attrs["weights_sha256"] == digest(weights[RESNET][0]) and "weights" not in attrs  # not random


def test_bad_models_layers_and_weights_are_one_clear_line(weights, tmp_path):
    def error(*args: str) -> str:
        result = CliRunner().invoke(main, list(args))
        assert result.exit_code == 1, result.output
        assert not (tmp_path / "x.zarr").exists()
        return result.output.strip().splitlines()[-1]

    extract = ("extract", "--store", str(tmp_path / "x.zarr"), "--feature")
    assert "timm has no model 'resnet81'; did you mean resnet18" in error("features", "--model", "timm:resnet81")
    assert "did you mean blocks.5" in error(*extract, f"timm:{VIT}:block.5")
    wrong = error(
        "extract",
        "--store",
        str(tmp_path / "x.zarr"),
        "--weights",
        weights[RESNET][0],
        "--feature",
        f"timm:{VIT}:blocks.1",
    )
    assert "has keys" in wrong and "does not know" in wrong


@pytest.mark.parametrize(("model", "layer"), [(VIT, "blocks.5"), (RESNET, "layer2")])
def test_extract_train_analyze_and_invert(model, layer, photos, tmp_path):
    folder = write_crops(tmp_path / "images", photos, count=32, side=120, step=(2, 2))
    outputs = extract_train_analyze_invert(
        folder, f"timm:{model}:{layer}", tmp_path, "--size", "64", "--weights", "random"
    )
    assert "normalised error" in outputs[2]
