"""The autoencoder mode: the encoder (pretrained CNN up to the layer) is fine-tuned with the decoder."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from preimage.cache.store import FeatureStore
from preimage.cli import main
from preimage.pipeline.backbones import WeightsUnavailable, create_backbone
from preimage.pipeline.sources import folder_source
from preimage.train.models.autoencoder import AutoEncoder
from preimage.train.models.loading import load_decoder
from preimage.train.training.trainer import TrainConfig, train

from ...helpers import make_store, run_extract


@pytest.fixture(scope="module")
def store(tmp_path_factory, dask_client, photos):
    try:
        create_backbone("alexnet").check_layers("conv1")
    except WeightsUnavailable as err:
        pytest.skip(f"no AlexNet weights here: {err}")
    root = tmp_path_factory.mktemp("autoencoder")
    path = make_store(root, dask_client, photos, 32)
    run_extract(path, folder_source(root / "images"), "alexnet:conv1", dask_client, image_size=32, shard_rows=8)
    return path, root


def test_autoencoder_fine_tunes_the_encoder_and_reloads(store):
    path, root = store
    config = TrainConfig(
        str(path),
        "alexnet:conv1",
        str(root / "ae"),
        target_size=16,
        epochs=1,
        batch_size=8,
        width=16,
        eval_rows=8,
        autoencoder=True,
    )
    result = train(config, show_progress=False)
    assert result["normalised_error"] > 0
    model = load_decoder(root / "ae", FeatureStore.open(path), "alexnet:conv1")
    assert isinstance(model, AutoEncoder)
    pretrained = create_backbone("alexnet").network.features[0].weight
    tuned = model.encoder.network.features[0].weight
    assert tuned.shape == pretrained.shape and not torch.equal(tuned, pretrained)  # the encoder learned
    keys = model.state_dict().keys()
    assert not any("classifier" in k or "features.3." in k for k in keys)  # only the layers up to conv1
    images = torch.rand(2, 3, 32, 32)
    assert model(images).shape == (2, 3, 16, 16)
    assert json.loads((root / "ae" / "run.json").read_text())["config"]["autoencoder"] is True


def test_autoencoder_needs_a_cnn_layer(store):
    path, root = store
    config = TrainConfig(
        str(path), "hog", str(root / "ae-hog"), target_size=16, epochs=1, batch_size=8, width=16, autoencoder=True
    )
    with pytest.raises(ValueError, match="autoencoder mode needs a CNN layer"):
        train(config, show_progress=False)


def test_layers_puts_autoencoder_runs_beside_the_decoders(store, tmp_path):
    path, root = store
    runs = root / "runs"
    for name, autoencoder in (("conv1", False), ("conv1-ae", True)):
        config = TrainConfig(
            str(path),
            "alexnet:conv1",
            str(runs / name),
            target_size=16,
            epochs=1,
            batch_size=8,
            width=16,
            eval_rows=8,
            autoencoder=autoencoder,
        )
        train(config, show_progress=False)
    args = ["analyze", "layers", "--store", str(path), "--decoder", str(runs), "--out", str(tmp_path)]
    result = CliRunner().invoke(main, [*args, "--autoencoder"])
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "layers.json").read_text())
    assert [row["feature"] for row in table] == ["alexnet:conv1", "alexnet:conv1 (autoencoder)"]


def test_invert_with_an_autoencoder_run_feeds_it_the_image(store, tmp_path):
    path, root = store
    config = TrainConfig(
        str(path),
        "alexnet:conv1",
        str(root / "ae-invert"),
        target_size=16,
        epochs=1,
        batch_size=8,
        width=16,
        eval_rows=8,
        autoencoder=True,
    )
    train(config, show_progress=False)
    image = root / "images" / "03.png"
    result = CliRunner().invoke(
        main, ["invert", str(image), "--decoder", str(root / "ae-invert"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "03.png").exists()
