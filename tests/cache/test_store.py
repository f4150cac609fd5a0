"""The store format: readable by plain zarr and dask, sharded as documented, exportable, locked while written."""

from __future__ import annotations

import json
import time

import cv2
import h5py
import numpy as np
import pytest

from preimage.cache.export import export_h5
from preimage.cache.store import CHUNK_ROWS, LOCK_FILE, FeatureStore, StoreError, StoreLocked
from preimage.pipeline.sources import folder_source, sample_photos_source

from ..helpers import run_extract


@pytest.fixture(scope="module")
def store_path(tmp_path_factory, dask_client, photos):
    """A store of 12 crops of real photos in shards of 8 rows (the last one partial)."""
    folder = tmp_path_factory.mktemp("twelve")
    for i in range(12):
        photo = list(photos.values())[i % len(photos)]
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(photo[8 * i : 8 * i + 150, :180], cv2.COLOR_RGB2BGR))
    path = tmp_path_factory.mktemp("store") / "photos.zarr"
    run_extract(path, folder_source(folder), "hog,sift", dask_client, shard_rows=8)
    return path


def test_plain_zarr_and_dask_read_the_store(store_path):
    import dask.array as da
    import zarr  # no preimage reader involved

    group = zarr.open_group(str(store_path), mode="r")
    rows = group["ids"].shape[0]
    assert group["images"].shape == (rows, 128, 128, 3) and group["images"].dtype == np.uint8
    assert group["features/hog"].shape == (rows, 16, 16, 31)
    assert group.attrs["preimage"]["recipe"]["image_size"] == 128
    hog = da.from_zarr(str(store_path), component="features/hog")
    assert hog.shape == (rows, 16, 16, 31) and float(hog.sum().compute()) > 0
    sift = da.from_zarr(str(store_path), component="features/sift", chunks=(8, 32, 32, 133))
    assert rows == 12 and sift.numblocks[0] == 2


def test_arrays_are_sharded_by_partition_with_a_few_rows_per_chunk(store_path):
    meta = json.loads((store_path / "features" / "hog" / "zarr.json").read_text())
    (sharding,) = [c for c in meta["codecs"] if c["name"] == "sharding_indexed"]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [8, 16, 16, 31]  # the shard
    assert sharding["configuration"]["chunk_shape"] == [CHUNK_ROWS, 16, 16, 31]  # chunks inside it
    assert any(c["name"] == "zstd" for c in sharding["configuration"]["codecs"])
    shards = sorted(p.name for p in (store_path / "features" / "hog" / "c").iterdir())
    assert shards == ["0", "1"]  # one file per partition


def test_export_to_hdf5_holds_the_same_arrays(store_path, tmp_path):
    store = FeatureStore.open(store_path)
    written = export_h5(store, tmp_path / "photos.h5")
    assert "features/hog" in written and "images" in written
    with h5py.File(tmp_path / "photos.h5", "r") as f:
        np.testing.assert_array_equal(f["features/hog"][()], store.features("hog")[:])
        np.testing.assert_array_equal(f["images"][()], store.array("images")[:])
        assert [v.decode() for v in f["ids"][()]] == [str(v) for v in store.array("ids")[:].tolist()]
        assert json.loads(f["features/hog"].attrs["json"])["params"] == {"cell_size": 8, "num_orientations": 9}


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    with (
        FeatureStore.lock(tmp_path / "s.zarr"),
        pytest.raises(StoreLocked, match=r"being written by `preimage extract` \(pid"),
        FeatureStore.lock(tmp_path / "s.zarr"),
    ):
        pass
    assert not (tmp_path / "s.zarr" / LOCK_FILE).exists()
    with FeatureStore.lock(tmp_path / "s.zarr"):  # free again
        pass


def test_a_folder_that_is_not_a_store_is_never_written_into(tmp_path, dask_client):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="not a preimage store"):
        run_extract(tmp_path / "mine", sample_photos_source(), "hog", dask_client)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_wait_queues_behind_the_holder(tmp_path):
    import threading

    order = []
    held = threading.Event()

    def holder():
        with FeatureStore.lock(tmp_path / "s.zarr"):
            held.set()
            time.sleep(0.3)
            order.append("first done")

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    with FeatureStore.lock(tmp_path / "s.zarr", wait=True):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


def test_partitions_and_scattered_rows_read_as_through_zarr(store_path):
    store = FeatureStore.open(store_path)
    for path in ("images", "features/hog", "features/sift", "status"):  # status is not sharded: zarr reads it
        whole = store.array(path)[:]
        for start, stop in store.partitions():
            np.testing.assert_array_equal(store.read_rows(path, start, stop), whole[start:stop])
        rows = np.array([11, 0, 5, 5, 9])
        np.testing.assert_array_equal(store.take(path, rows), whole[rows])
