"""Fixtures of the inversion tests: HOG stores and a small HOGgles dictionary learned from one."""

from __future__ import annotations

import pytest

from preimage.pipeline.sources import folder_source
from preimage.train.inversion.hoggles import HogglesConfig, train_hoggles

from ...helpers import run_extract, write_crops

SMALL = HogglesConfig(atoms=48, steps=40, batch=64, lasso_steps=60, seed=3)


@pytest.fixture(scope="module")
def stores(tmp_path_factory, dask_client, photos):
    """HOG stores of 80 crops of scikit-image's photos at 64 px, and at 48 px (HOG computed otherwise)."""
    root = tmp_path_factory.mktemp("hoggles")
    folder = write_crops(root / "images", photos, 80, 160)
    paths = {}
    for size in (64, 48):
        paths[size] = root / f"s{size}.zarr"
        run_extract(paths[size], folder_source(folder), "hog", dask_client, image_size=size, shard_rows=16)
    return paths, folder


@pytest.fixture(scope="module")
def learned(stores, tmp_path_factory):
    paths, _ = stores
    out = tmp_path_factory.mktemp("hoggles-run")
    train_hoggles(paths[64], out, SMALL)
    return out
