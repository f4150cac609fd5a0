"""One protocol for the three inversion methods, one loader for the trained ones, one resolver of where they live."""

from __future__ import annotations

import pytest
import torch

from preimage.cache.store import FeatureStore, feature_path
from preimage.pipeline.features import hog
from preimage.train.inversion.hoggles import PairedDictionary
from preimage.train.inversion.inverters import Inverter, Optimization, load_inverter
from preimage.train.inversion.optimize import OptimizeConfig, differentiable_target
from preimage.train.models import zoo
from preimage.train.models.checkpoint import CheckpointError
from preimage.train.models.decoders import Decoder
from preimage.train.models.loading import load_decoder
from preimage.train.models.locate import locate
from preimage.train.models.runfolder import CHECKPOINT, DICTIONARY


def test_each_method_is_an_inverter_from_features_to_images(learned, stores):
    paths, _ = stores
    store = FeatureStore.open(paths[64])
    grids = torch.from_numpy(store.take(feature_path("hog"), [0, 1])).float()
    dictionary = load_inverter(learned, store)
    decoder = load_inverter("hog")
    optimization = Optimization(differentiable_target("hog", 64, device="cpu"), OptimizeConfig(steps=64))
    for method in (dictionary, optimization, decoder):
        assert isinstance(method, Inverter) and method.takes == "features"
    assert isinstance(dictionary, PairedDictionary) and isinstance(decoder, Decoder)
    assert dictionary(grids).shape == (2, 1, 64, 64)
    images = optimization(grids)
    assert images.shape == (2, 1, 64, 64) and 0 <= float(images.min()) <= float(images.max()) <= 1
    # the optimisation moved towards the features it was given: its HOG is nearer theirs than where it started
    start = Optimization(differentiable_target("hog", 64, device="cpu"), OptimizeConfig(steps=1))(grids)
    assert (hog(images[:, 0]) - grids).norm() < 0.8 * (hog(start[:, 0]) - grids).norm()


def test_one_resolver_for_run_folders_files_and_shipped_names(learned, tmp_path):
    shipped = locate("hog")
    assert (shipped.method, shipped.folder, shipped.path) == ("decoder", None, zoo.shipped("hog").path)
    assert shipped.settings()["feature"] == "hog" and not shipped.autoencoder
    folder = locate(learned)
    assert (folder.method, folder.path, folder.folder) == ("hoggles", learned / DICTIONARY, learned)
    renamed = tmp_path / "mine.safetensors"  # a dictionary under another name is still found to be one
    renamed.write_bytes((learned / DICTIONARY).read_bytes())
    assert locate(renamed).method == "hoggles"
    empty = tmp_path / "run"
    empty.mkdir()
    assert locate(empty).path == empty / CHECKPOINT and locate(empty).settings() is None
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_decoder(empty)
    with pytest.raises(CheckpointError, match="a HOGgles dictionary, not a decoder"):
        load_decoder(learned)
    with pytest.raises(FileNotFoundError, match="no such run folder or checkpoint"):
        locate(tmp_path / "absent")
