"""`preimage extract` / `info` / `export` as a user runs them: processes, a local dask cluster, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from preimage.cache.store import FeatureStore

from ..bad_images import EXPECTED
from ..helpers import checksums

CLI = [sys.executable, "-m", "preimage"]
SPECS = "hog,lbp,sift,alexnet:conv1-conv5"


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, photos) -> Path:
    """24 real photos (crops of scikit-image's) in two class folders."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    sources = list(photos.values())
    for i in range(24):
        photo = sources[i % len(sources)]
        top, left = rng.integers(0, np.array(photo.shape[:2]) // 3)
        crop = photo[top : top + 200, left : left + 260]
        folder = root / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return root


def extract_command(images: Path, store: Path, *extra: str) -> list[str]:
    return [*CLI, "extract", "--images", str(images), "--store", str(store), "--feature", SPECS, *extra]


def test_killed_run_resumes_to_the_same_arrays_as_an_uninterrupted_one(photo_folder, tmp_path):
    args = ("--shard-rows", "1", "--workers", "1")
    whole = subprocess.run(
        extract_command(photo_folder, tmp_path / "whole.zarr", *args), capture_output=True, text=True
    )
    assert whole.returncode == 0, whole.stderr
    assert "24 read, 0 unreadable" in whole.stdout

    killed = tmp_path / "killed.zarr"
    process = subprocess.Popen(
        extract_command(photo_folder, killed, *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    markers = killed / "progress" / "alexnet" / "conv5" / "c"
    deadline = time.time() + 120
    # a marker chunk is named by its partition number once renamed into place (zarr writes a temporary first)
    while time.time() < deadline and not (markers.is_dir() and any(p.name.isdigit() for p in markers.iterdir())):
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)  # the command and its dask workers, mid-run
    process.wait()
    done = FeatureStore.open(killed).done("alexnet:conv5").sum()
    assert 0 < done < 24, f"the kill should land mid-run; {done} of 24 partitions were complete"

    resumed = subprocess.run(extract_command(photo_folder, killed, *args), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{24 - done} rows in {24 - done} partitions" in resumed.stdout
    assert checksums(killed) == checksums(tmp_path / "whole.zarr")

    again = subprocess.run(extract_command(photo_folder, killed, *args), capture_output=True, text=True)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert "dask:" not in again.stdout  # no cluster was started

    info = subprocess.run([*CLI, "info", str(killed)], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert "rows: 24: 24 read, 0 unreadable" in info.stdout
    assert "features/alexnet/conv3" in info.stdout and "24/24" in info.stdout

    exported = subprocess.run([*CLI, "export", str(killed), "--h5", str(tmp_path / "k.h5")], capture_output=True)
    assert exported.returncode == 0 and (tmp_path / "k.h5").stat().st_size > 0


def test_a_second_extract_on_a_busy_store_stops_with_a_clear_message(photo_folder, tmp_path):
    with FeatureStore.lock(tmp_path / "busy.zarr"):
        second = subprocess.run(extract_command(photo_folder, tmp_path / "busy.zarr"), capture_output=True, text=True)
    assert second.returncode != 0
    assert "is being written by `preimage extract` (pid" in second.stderr and "--wait" in second.stderr


def test_strict_makes_unreadable_files_an_error_after_recording_them(bad_folder, tmp_path):
    command = [*CLI, "extract", "--images", str(bad_folder), "--store", str(tmp_path / "b.zarr")]
    result = subprocess.run(
        [*command, "--feature", "hog", "--strict", "--workers", "1"], capture_output=True, text=True
    )
    assert result.returncode == 1
    unreadable = sum(expected != "read" for expected in EXPECTED.values())  # the hostile sizes among them
    assert f"--strict: {unreadable} file(s) could not be read" in result.stderr
    assert "unreadable: bad/truncated.jpg: corrupt or truncated image data" in result.stdout
    assert FeatureStore.open(tmp_path / "b.zarr").done("hog").all()  # the readable ones are all in


def test_scheduler_runs_the_graph_on_an_existing_cluster(photo_folder, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address="127.0.0.1:0"
    ) as c:
        command = [*extract_command(photo_folder, tmp_path / "s.zarr"), "--features", "hog,lbp"]  # old spelling
        result = subprocess.run([*command, "--scheduler", c.scheduler_address], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "dask: 1 workers, 1 threads" in result.stdout and "24 read, 0 unreadable" in result.stdout
    assert FeatureStore.open(tmp_path / "s.zarr").done("lbp").all()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_extract_with_a_message_the_lock_released_and_the_rest_resumable(photo_folder, tmp_path, stop):
    args = ("--shard-rows", "1", "--workers", "1")
    store = tmp_path / "stopped.zarr"
    process = subprocess.Popen(
        extract_command(photo_folder, store, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    markers = store / "progress" / "alexnet" / "conv5" / "c"
    deadline = time.time() + 120
    while time.time() < deadline and not (markers.is_dir() and any(p.name.isdigit() for p in markers.iterdir())):
        time.sleep(0.005)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + stop, stderr
    assert f"stopped by {signal.Signals(stop).name}: " in stderr and "run the same command again" in stderr
    assert "Traceback" not in stderr
    assert not (store / ".extract.lock").exists()  # released and removed
    done = FeatureStore.open(store).done("alexnet:conv5").sum()
    assert 0 < done < 24
    resumed = subprocess.run(extract_command(photo_folder, store, *args), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert FeatureStore.open(store).done("alexnet:conv5").all() and "24 read, 0 unreadable" in resumed.stdout
