"""Augmentation: new images from stored ones, their features exactly as the store's extractor computes them."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from preimage.cache.store import FeatureStore
from preimage.pipeline.contract import FeatureJob, plan_jobs
from preimage.pipeline.sources import folder_source
from preimage.train.training.augment import augment_images, augmentable, recompute
from preimage.train.training.data import ShardStream
from preimage.train.training.trainer import TrainConfig, train

from ...helpers import run_extract, write_crops


@pytest.fixture(scope="module")
def store(tmp_path_factory, dask_client, photos):
    """40 crops of real photos at 32x32 with HOG and LBP, shards of 8 rows."""
    root = tmp_path_factory.mktemp("augment")
    folder = write_crops(root / "images", photos, count=40, side=100, step=(5, 3))
    path = root / "s.zarr"
    run_extract(path, folder_source(folder), "hog,lbp", dask_client, image_size=32, shard_rows=8)
    return path


@pytest.mark.parametrize("feature", ["hog", "lbp"])
def test_recomputed_features_of_stored_images_equal_the_stored_ones(store, feature):
    opened = FeatureStore.open(store)
    job = FeatureJob.from_attrs(dict(opened.features(feature).attrs))
    images = opened.read_rows("images", 0, 8)
    np.testing.assert_array_equal(recompute(job, images), opened.read_rows(f"features/{feature}", 0, 8))


def test_flips_mirror_about_half_and_crops_make_new_images_reproducibly(photos):
    images = np.stack([cv2.resize(p, (64, 64)) for p in photos.values()] * 30)
    flipped = augment_images(images, "flip", np.random.default_rng(0))
    mirrored = np.array([np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images, strict=True)])
    kept = np.array([np.array_equal(f, i) for f, i in zip(flipped, images, strict=True)])
    assert (mirrored | kept).all() and 0.35 < mirrored.mean() < 0.65
    assert augment_images(images, "none", np.random.default_rng(0)) is images
    cropped = augment_images(images, "crop", np.random.default_rng(1))
    assert cropped.shape == images.shape and cropped.dtype == np.uint8
    assert np.array_equal(cropped, augment_images(images, "crop", np.random.default_rng(1)))
    changed = [
        not np.array_equal(c, i) and not np.array_equal(c, i[:, ::-1]) for c, i in zip(cropped, images, strict=True)
    ]
    assert np.mean(changed) > 0.8  # a crop of the whole side is rare
    with pytest.raises(ValueError, match="one of none, flip, crop"):
        augment_images(images, "rotate", np.random.default_rng(0))


def test_a_cnn_layer_cannot_be_recomputed_from_the_stored_image():
    (job,) = plan_jobs("alexnet:conv3", 128)
    with pytest.raises(ValueError, match="224x224 crops of the source photo"):
        augmentable(job, 128)


def test_the_stream_yields_augmented_images_with_their_own_features(store):
    stream = ShardStream(str(store), "hog", "train", target_size=32, batch_size=8, augment="crop")
    opened = FeatureStore.open(store)
    job = FeatureJob.from_attrs(dict(opened.features("hog").attrs))
    for x, y in stream:  # targets at the stored size are the augmented images themselves
        images = (y.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        torch.testing.assert_close(x, torch.from_numpy(recompute(job, images)), rtol=0, atol=0)
    stored = {
        tuple(opened.read_rows("images", a, b)[i].ravel()[:64]) for a, b in opened.partitions() for i in range(b - a)
    }
    assert any(tuple(im.ravel()[:64]) not in stored for im in images)  # not the stored images


def test_an_augmented_run_resumes_exactly(store, tmp_path):
    base = dict(
        target_size=16, epochs=2, batch_size=8, width=16, log_every=1, checkpoint_every=2, eval_rows=8, augment="crop"
    )
    train(TrainConfig(str(store), "hog", str(tmp_path / "whole"), **base), show_progress=False)
    train(TrainConfig(str(store), "hog", str(tmp_path / "split"), **base, max_steps=3), show_progress=False)
    train(TrainConfig(str(store), "hog", str(tmp_path / "split"), **base), resume=True, show_progress=False)
    whole, split = (
        {
            r["step"]: r["loss"]
            for r in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())
            if "loss" in r
        }
        for run in ("whole", "split")
    )
    assert len(whole) == 8 and split == whole  # the same crops in the same order after the restart
