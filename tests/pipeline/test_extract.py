"""The extraction pipeline on a real dask scheduler (in-process): bad input, resumption, adding features."""

from __future__ import annotations

import contextlib
import os
import time

import cv2
import numpy as np
import pytest

from preimage.cache.store import READ, UNREADABLE, FeatureStore, StoreError
from preimage.pipeline.cluster import local_cluster
from preimage.pipeline.extract import DecodingLog
from preimage.pipeline.features import hog, lbp
from preimage.pipeline.images import rgb_to_gray, to_float
from preimage.pipeline.sources import folder_source, hdf5_source, list_source, sample_photos_source
from preimage.runtime.memory import MALLOC_SETTINGS

from ..bad_images import EXPECTED
from ..helpers import checksums, run_extract


@pytest.fixture(scope="module")
def bad_store(tmp_path_factory, bad_folder, dask_client):
    path = tmp_path_factory.mktemp("stores") / "bad.zarr"
    summary = run_extract(path, folder_source(bad_folder), "hog,lbp", dask_client, image_size=64)
    return path, summary


def test_every_file_is_read_or_recorded_with_its_reason(bad_store):
    path, summary = bad_store
    store = FeatureStore.open(path)
    ids = [str(v) for v in store.array("ids")[:].tolist()]
    assert len(ids) == len(EXPECTED) + 1  # the non-UTF-8 name too; the directory loop is walked once
    assert "ok/caf\\xe9.jpg" in ids
    status = store.status()
    reasons = dict((ident, reason) for _, ident, reason in store.failures())
    for name, expected in EXPECTED.items():
        row = ids.index(name)
        if expected == "read":
            assert status[row] == READ, f"{name}: {reasons.get(name)}"
        else:
            assert status[row] == UNREADABLE and expected in reasons[name], name
    assert summary.read == sum(v == "read" for v in EXPECTED.values()) + 1
    assert summary.unreadable == len(reasons) == sum(v != "read" for v in EXPECTED.values())
    assert store.array("labels").attrs["class_names"] == ["bad", "ok"]


def test_stored_features_equal_the_extractors_on_the_stored_images(bad_store):
    store = FeatureStore.open(bad_store[0])
    read = store.status() == READ
    images = store.array("images")[:]
    gray = rgb_to_gray(to_float(images[read]))
    np.testing.assert_array_equal(store.features("hog")[:][read], hog(gray).numpy())
    np.testing.assert_array_equal(store.features("lbp")[:][read], lbp(gray).numpy())
    assert not store.features("hog")[:][~read].any() and not images[~read].any()  # unreadable rows stay zero


def test_a_complete_store_does_no_work(bad_store, bad_folder, dask_client):
    path, _ = bad_store
    before = checksums(path)
    summary = run_extract(path, folder_source(bad_folder), "hog,lbp", dask_client, image_size=64)
    assert summary.partitions_run == 0
    assert checksums(path) == before


def test_adding_a_feature_computes_only_that_feature(tmp_path, dask_client):
    source = sample_photos_source()
    first = run_extract(tmp_path / "s.zarr", source, "hog", dask_client)
    before = checksums(tmp_path / "s.zarr")
    second = run_extract(tmp_path / "s.zarr", source, "hog,lbp", dask_client)
    assert first.partitions_run == second.partitions_run == len(FeatureStore.open(tmp_path / "s.zarr").partitions())
    assert "lbp" in second.step_seconds and "hog" not in second.step_seconds
    after = checksums(tmp_path / "s.zarr")
    assert all(after[k] == v for k, v in before.items() if not k.startswith("progress/"))
    one_go = run_extract(tmp_path / "t.zarr", source, "hog,lbp", dask_client)
    assert one_go.partitions_run and checksums(tmp_path / "t.zarr") == {**after}


def test_a_store_made_differently_is_refused_with_the_difference(tmp_path, dask_client):
    source = sample_photos_source()
    run_extract(tmp_path / "s.zarr", source, "lbp", dask_client)
    with pytest.raises(StoreError, match="image_size: store has 128, asked 64"):
        run_extract(tmp_path / "s.zarr", source, "lbp", dask_client, image_size=64)
    with pytest.raises(StoreError, match="dtype: store has 'float32', asked 'float16'"):
        run_extract(tmp_path / "s.zarr", source, "lbp", dask_client, dtype="float16")
    store = FeatureStore.open(tmp_path / "s.zarr", "r+")
    attrs = dict(store.features("lbp").attrs)
    attrs["params"] = {"cell_size": 8}
    with pytest.raises(StoreError, match=r"params\.cell_size: store has 16, asked 8"):
        store.ensure_feature("lbp", tuple(attrs.pop("row_shape")), attrs.pop("dtype"), attrs)


def test_float16_storage_is_close_to_float32(tmp_path, dask_client):
    source = sample_photos_source()
    run_extract(tmp_path / "a.zarr", source, "hog", dask_client)
    run_extract(tmp_path / "b.zarr", source, "hog", dask_client, dtype="float16")
    full = FeatureStore.open(tmp_path / "a.zarr").features("hog")[:]
    half = FeatureStore.open(tmp_path / "b.zarr").features("hog")[:]
    assert half.dtype == np.float16
    assert np.abs(half.astype(np.float32) - full).max() < 1e-3 * max(1.0, full.max())


def test_list_and_hdf5_sources(tmp_path, dask_client, photos):
    import h5py

    from preimage.pipeline.images import center_square

    names = sorted(photos)[:3]
    stack = np.stack([center_square(photos[n], 96) for n in names])
    with h5py.File(tmp_path / "images.h5", "w") as f:
        f["pictures"] = stack
        f["labels"] = np.arange(3)
    source = hdf5_source(tmp_path / "images.h5", None)
    assert source.ids == ["pictures[0]", "pictures[1]", "pictures[2]"] and source.labels == [0, 1, 2]
    summary = run_extract(tmp_path / "h.zarr", source, "hog", dask_client, image_size=96)
    assert summary.read == 3
    np.testing.assert_array_equal(FeatureStore.open(tmp_path / "h.zarr").array("images")[:], stack)

    for i in range(len(names)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(stack[i], cv2.COLOR_RGB2BGR))
    (tmp_path / "list.txt").write_text("# three photos\n0.png\n\n1.png\n2.png\nmissing.png\n")
    summary = run_extract(tmp_path / "l.zarr", list_source(tmp_path / "list.txt"), "hog", dask_client, image_size=96)
    assert (summary.read, summary.unreadable) == (3, 1)
    np.testing.assert_array_equal(FeatureStore.open(tmp_path / "l.zarr").array("images")[:3], stack)


def test_a_store_inside_the_image_folder_is_not_listed(tmp_path, photos):
    cv2.imwrite(str(tmp_path / "a.png"), next(iter(photos.values())))
    (tmp_path / "s.zarr" / "features").mkdir(parents=True)
    (tmp_path / "s.zarr" / "zarr.json").write_text("{}")
    assert folder_source(tmp_path, exclude=tmp_path / "s.zarr").ids == ["a.png"]
    assert len(folder_source(tmp_path).ids) == 2


def _worker_settings() -> dict:
    import os

    import dask

    return {
        "malloc": {key: os.environ.get(key) for key in MALLOC_SETTINGS},
        "profiler": dask.config.get("distributed.worker.profile.enabled"),
    }


def test_local_workers_keep_freed_memory_listen_on_loopback_and_leave_this_process_environment_alone():
    import os

    import psutil

    def listening() -> set:
        return {c.laddr for c in psutil.Process().net_connections(kind="inet") if c.status == "LISTEN"}

    before, others = dict(os.environ), listening()  # other tests' in-process clusters may be listening already
    with local_cluster(1) as client:
        (settings,) = client.run(_worker_settings).values()
        opened = listening() - others
        dashboard = client.dashboard_link
    assert settings == {"malloc": MALLOC_SETTINGS, "profiler": False}
    assert dict(os.environ) == before  # dask's nannies set OMP_NUM_THREADS=1 and the malloc settings here
    assert dashboard.startswith("http://127.0.0.1:")
    assert opened and all(address.ip == "127.0.0.1" for address in opened), opened  # nothing exposed


def test_the_summary_rate_counts_the_time_the_tasks_ran_not_the_cluster_start(tmp_path, dask_client):
    from preimage.pipeline.extract import extract

    @contextlib.contextmanager
    def slow_cluster():
        time.sleep(1.0)  # a cluster that takes a second to come up
        yield dask_client

    summary = extract(
        tmp_path / "s.zarr",
        sample_photos_source(),
        specs="hog",
        image_size=64,
        shard_rows=4,
        client_factory=slow_cluster,
        show_progress=False,
    )
    assert summary.seconds > summary.compute_seconds + 1.0
    assert summary.images_per_second == pytest.approx(summary.images_run / summary.compute_seconds)


@pytest.mark.slow
def test_a_file_is_refused_only_when_a_worker_died_decoding_it_twice(tmp_path):
    """One death may come from outside (a cancelled batch job): the retry decodes the file again; a second death
    at the same file refuses it. Each attempt writes the log and dies without closing it, as a killed worker does."""
    first = DecodingLog(tmp_path, 0, "run-a")
    for row in (0, 1):
        first.begin(row)  # dies decoding row 1
    assert DecodingLog(tmp_path, 0, "run-a").crashed() == {}
    second = DecodingLog(tmp_path, 0, "run-a")
    for row in (0, 1, 2):
        second.begin(row)  # row 1 decodes this time; dies decoding row 2
    assert DecodingLog(tmp_path, 0, "run-a").crashed() == {}
    third = DecodingLog(tmp_path, 0, "run-a")
    for row in (0, 1, 2):
        third.begin(row)  # dies at row 2 again
    assert DecodingLog(tmp_path, 0, "run-a").crashed() == {2: DecodingLog.REASON}
    assert DecodingLog(tmp_path, 0, "run-b").crashed() == {}  # another run's attempts say nothing against its files


def test_a_worker_killed_inside_a_decoder_loses_only_that_file(tmp_path, photos):
    """The bound off, a header-only 15000x15000 PNG grows its worker past its memory limit and the nanny kills it;
    the task retried after its second death refuses that file, with the reason, and keeps every other one."""
    from distributed import Client, LocalCluster

    from preimage.pipeline.extract import extract

    from ..bad_images import header_only_png

    folder = tmp_path / "images"
    folder.mkdir()
    for i, photo in enumerate(list(photos.values())[:5]):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    (folder / "3-bomb.png").write_bytes(header_only_png(15000, 15000))

    @contextlib.contextmanager
    def small_workers():
        saved = dict(os.environ)  # dask's nannies leave their workers' settings in this process's environment
        try:
            with (
                LocalCluster(
                    n_workers=1, threads_per_worker=1, memory_limit="1GiB", dashboard_address="127.0.0.1:0"
                ) as cluster,
                Client(cluster) as client,
            ):
                yield client
        finally:
            os.environ.clear()
            os.environ.update(saved)

    source = folder_source(folder)
    summary = extract(
        tmp_path / "s.zarr",
        source,
        specs="hog",
        image_size=64,
        shard_rows=8,
        client_factory=small_workers,
        show_progress=False,
        max_pixels=10**10,
    )
    store = FeatureStore.open(tmp_path / "s.zarr")
    bomb = source.ids.index("3-bomb.png")
    assert summary.read == 5 and summary.unreadable == 1
    assert store.status()[bomb] == UNREADABLE and (np.delete(store.status(), bomb) == READ).all()
    assert "worker decoding this file died" in dict((i, r) for _, i, r in store.failures())["3-bomb.png"]
    assert not list((tmp_path / "s.zarr").glob(".decoding-*"))  # the log goes with the complete partition
