"""A user's own network: in Python through ``preimage.representation(module, layer=...)``, and in ``extract`` (on
dask worker processes) through a plug-in that a package declares in the ``preimage.backbones`` entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import OrderedDict

import numpy as np
import pytest
import torch

import preimage
from preimage.cache.store import FeatureStore, feature_path
from preimage.pipeline.backbones import create_backbone
from preimage.pipeline.contract import DRAFT_MIN_SIDE
from preimage.pipeline.decode import read_images
from preimage.pipeline.images import center_square, to_float
from preimage.pipeline.sources import list_source

from ...conftest import shared_photo_paths
from ...helpers import run_extract, write_crops

# alexnet:conv1-conv5 are the outputs of these torchvision modules (pipeline/backbones/alexnet.py)
ALEXNET_MODULES = {
    "conv1": "features.2",
    "conv2": "features.5",
    "conv3": "features.7",
    "conv4": "features.9",
    "conv5": "features.12",
}


def test_the_generic_path_reproduces_alexnet_on_the_shared_photos(dask_client, tmp_path):
    paths = shared_photo_paths(limit=16, step=601)
    if not paths:
        pytest.skip("the shared photos are absent")
    listing = tmp_path / "photos.txt"
    listing.write_text("\n".join(map(str, paths)) + "\n")
    run_extract(tmp_path / "s.zarr", list_source(listing), "alexnet:conv1-conv5", dask_client, shard_rows=8)
    store = FeatureStore.open(tmp_path / "s.zarr")
    network = create_backbone("alexnet")  # preimage's own module and weights, handed over as a user's network
    crops = to_float(np.stack([center_square(image, 224) for image in read_images(paths, DRAFT_MIN_SIDE)]))
    for layer, module in ALEXNET_MODULES.items():
        generic = preimage.representation(network.network, layer=module, preprocess=network.config.preprocess)
        with torch.no_grad():
            got = generic(crops).numpy()
        stored = store.take(feature_path(f"alexnet:{layer}"), np.arange(len(paths)))
        assert np.abs(got - stored).max() <= 1e-6, layer


def test_a_module_and_a_layer_it_lacks_are_clear_errors():
    net = torch.nn.Sequential(OrderedDict(conv=torch.nn.Conv2d(3, 4, 3), relu=torch.nn.ReLU()))
    with pytest.raises(ValueError, match="needs layer="):
        preimage.representation(net)
    with pytest.raises(ValueError, match="no submodule 'rleu'; did you mean relu"):
        preimage.representation(net, layer="rleu")
    out = preimage.representation(net, layer="relu")(torch.rand(2, 3, 8, 8))
    assert out.shape == (2, 4, 6, 6) and (out >= 0).all()


PLUGIN = """
import torch
from torch import nn
from preimage.pipeline.backbones.registry import (BackboneConfig, Preprocess, TappedSequence, WeightSource,
                                                  register_backbone)


class LabNet(TappedSequence):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 5, stride=2)

    def steps(self):
        return [("conv", self.conv), ("relu", torch.relu)]


def weights():
    torch.manual_seed(7)
    return LabNet().state_dict()


register_backbone(BackboneConfig("labnet", LabNet, ("conv", "relu"), Preprocess(48, (0.5,) * 3, (0.25,) * 3),
                                 (WeightSource("the lab's file", weights),), description="a lab's network"))
"""


def test_a_plugin_backbone_works_in_extract_on_worker_processes(photos, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "lab_net.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "lab_net-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-net\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[preimage.backbones]\nlabnet = lab_net\n")
    folder = write_crops(tmp_path / "images", photos, 8, 120)
    env = {**os.environ, "PYTHONPATH": str(site)}  # the lab's package installed: every worker process sees it
    command = [
        sys.executable,
        "-m",
        "preimage",
        "extract",
        "--images",
        str(folder),
        "--store",
        str(tmp_path / "s.zarr"),
        "--feature",
        "labnet:relu",
        "--workers",
        "2",
        "--shard-rows",
        "4",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(site))
    try:
        from preimage.pipeline.backbones import registry

        registry._plugins.cache_clear()
        network = create_backbone("labnet")
        store = FeatureStore.open(tmp_path / "s.zarr")
        crops = to_float(
            np.stack([center_square(image, 48) for image in read_images(sorted(folder.iterdir()), DRAFT_MIN_SIDE)])
        )
        with torch.no_grad():
            expected = network(crops, ["relu"])["relu"].numpy()
        np.testing.assert_allclose(store.take(feature_path("labnet:relu"), np.arange(8)), expected, atol=1e-6)
        assert dict(store.features("labnet:relu").attrs)["params"]["preprocess"]["std"] == [0.25] * 3
    finally:
        sys.path.remove(str(site))
        registry._plugins.cache_clear()
