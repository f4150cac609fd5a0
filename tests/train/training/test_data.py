"""Streaming batches from a store: every row of the split once per epoch, reproducible, split by path hash."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter

import cv2
import numpy as np
import pytest
import torch

from preimage.cache.store import FeatureStore
from preimage.pipeline.sources import folder_source
from preimage.train.training.data import ShardStream, downsample, split_of, split_rows

from ...helpers import run_extract


@pytest.fixture(scope="module")
def store(tmp_path_factory, dask_client, photos):
    """46 crops of real photos (one file unreadable) in shards of 4 rows."""
    folder = tmp_path_factory.mktemp("crops")
    sources = list(photos.values())
    for i in range(45):
        photo = sources[i % len(sources)]
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(photo[5 * i : 5 * i + 160, :160], cv2.COLOR_RGB2BGR))
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    path = tmp_path_factory.mktemp("store") / "s.zarr"
    run_extract(path, folder_source(folder), "lbp", dask_client, image_size=64, shard_rows=4)
    return path


def digest(row) -> str:
    return hashlib.sha256(np.ascontiguousarray(row).tobytes()).hexdigest()


def test_split_is_a_deterministic_hash_of_the_path():
    ids = [f"class{i % 7}/img{i}.jpg" for i in range(5000)]
    heldout = [split_of(i) == "heldout" for i in ids]
    assert heldout == [split_of(i) == "heldout" for i in ids]
    assert 0.08 < np.mean(heldout) < 0.12


def test_a_training_fraction_is_a_nested_subset_and_leaves_the_held_out_part_alone():
    ids = [f"class{i % 7}/img{i}.jpg" for i in range(5000)]
    parts = {f: [split_of(i, 0.1, f) for i in ids] for f in (0.25, 0.5, 1.0)}
    train = {f: {i for i, s in zip(ids, p, strict=True) if s == "train"} for f, p in parts.items()}
    held = {f: [s == "heldout" for s in p] for f, p in parts.items()}
    assert held[0.25] == held[0.5] == held[1.0] == [split_of(i) == "heldout" for i in ids]
    assert train[0.25] < train[0.5] < train[1.0] and "unused" not in parts[1.0]
    for f in (0.25, 0.5):
        assert abs(len(train[f]) / len(train[1.0]) - f) < 0.03
        assert all(s in ("unused", "train", "heldout") for s in parts[f])


def test_splits_are_disjoint_and_cover_the_readable_rows(store):
    s = FeatureStore.open(store)
    train, held = split_rows(s, "train", 0.3), split_rows(s, "heldout", 0.3)
    assert not (train & held).any() and (train | held).sum() == 45 and held.sum() > 0


@pytest.mark.parametrize("workers", [0, 2])
def test_each_row_of_the_split_comes_once_per_epoch(store, workers):
    s = FeatureStore.open(store)
    mask = split_rows(s, "train", 0.3)
    expected = Counter(digest(r) for r in s.features("lbp")[:][mask])
    stream = ShardStream(store, "lbp", "train", target_size=32, batch_size=8, held_out=0.3, drop_last=False)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers)
    seen = Counter()
    for x, y in loader:
        assert x.dtype == torch.float32 and y.shape == (len(x), 3, 32, 32)
        seen.update(digest(r.numpy()) for r in x)
    assert seen == expected


def test_a_thinned_stream_yields_exactly_the_rows_of_its_fraction(store):
    s = FeatureStore.open(store)
    mask = split_rows(s, "train", 0.3, train_fraction=0.5)
    assert 0 < mask.sum() < split_rows(s, "train", 0.3).sum() and not (mask & split_rows(s, "heldout", 0.3)).any()
    expected = Counter(digest(r) for r in s.features("lbp")[:][mask])
    stream = ShardStream(store, "lbp", "train", 32, batch_size=8, held_out=0.3, drop_last=False, train_fraction=0.5)
    assert Counter(digest(x.numpy()) for batch, _ in stream for x in batch) == expected


def test_each_feature_row_comes_with_its_own_image_as_target(store):
    s = FeatureStore.open(store)
    features, images = s.features("lbp")[:], s.array("images")[:]
    row_of = {digest(r): i for i, r in enumerate(features)}
    stream = ShardStream(store, "lbp", "train", target_size=32, batch_size=8, held_out=0.3, drop_last=False)
    batches = 0
    for x, y in stream:  # the buffer of 4 shards holds rows of several shards, a remainder carried to the next
        rows = [row_of[digest(r.numpy())] for r in x]
        torch.testing.assert_close(y, downsample(images[rows], 32), rtol=0, atol=0)
        batches += 1
    assert batches >= 4


def test_targets_are_the_stored_images_averaged_down(store):
    s = FeatureStore.open(store)
    images = s.array("images")[:4]
    y = downsample(images, 32)
    manual = images.reshape(4, 32, 2, 32, 2, 3).mean(axis=(2, 4)).transpose(0, 3, 1, 2) / 255
    np.testing.assert_allclose(y.numpy(), manual, atol=1e-6)
    blocks = images.reshape(4, 16, 4, 16, 4, 3).mean(axis=(2, 4)).transpose(0, 3, 1, 2) / 255
    np.testing.assert_allclose(downsample(images, 16).numpy(), blocks, atol=1e-6)
    np.testing.assert_allclose(downsample(images, 64).numpy(), images.transpose(0, 3, 1, 2) / 255, atol=1e-7)
    with pytest.raises(ValueError, match="cannot be averaged down to 48"):
        downsample(images, 48)


def test_order_depends_on_seed_and_epoch_only(store):
    def first_batch(seed, epoch):
        stream = ShardStream(store, "lbp", batch_size=8, seed=seed, held_out=0.3)
        stream.set_epoch(epoch)
        return next(iter(stream))[0]

    torch.testing.assert_close(first_batch(0, 0), first_batch(0, 0))
    assert not torch.equal(first_batch(0, 0), first_batch(0, 1))
    assert not torch.equal(first_batch(0, 0), first_batch(1, 0))


def test_a_missing_feature_is_a_clear_error(store):
    with pytest.raises(KeyError, match="has no hog; it holds lbp"):
        ShardStream(store, "hog")


# The held-out split of the shared photos' first 40 accordion files, pinned: a change of the split (a salted hash,
# another digest) moves these, and every shipped card's held-out number with them.
ACCORDION = [f"caltech101/accordion/image_{i:04d}.jpg" for i in range(1, 41)]
ACCORDION_HELD_OUT = [f"caltech101/accordion/image_{i:04d}.jpg" for i in (6, 7, 20, 25, 35, 37)]


def test_the_split_is_pinned_to_known_ids():
    assert [i for i in ACCORDION if split_of(i) == "heldout"] == ACCORDION_HELD_OUT
    assert [i for i in ACCORDION if split_of(i, 0.1, 0.5) == "unused"][:4] == [
        f"caltech101/accordion/image_{i:04d}.jpg" for i in (1, 2, 3, 5)
    ]


def test_the_split_is_the_same_in_other_processes_whatever_their_hash_seed():
    code = (
        "from preimage.train.training.data import split_of; "
        f"print([i for i in {ACCORDION!r} if split_of(i) == 'heldout'])"
    )
    for seed in ("0", "12345"):  # Python's own hash() differs between these: the split must not
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == repr(ACCORDION_HELD_OUT)
