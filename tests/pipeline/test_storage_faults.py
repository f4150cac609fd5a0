"""A store that cannot be written (a full disk, a read-only folder): one line naming the store, what happened and
what to do; no dask task dump; and nothing lost: the same command finishes once the fault is gone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ..helpers import write_crops


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (root only, as CI runs), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("mounting a small tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def extract(folder, store) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "preimage",
        "extract",
        "--images",
        str(folder),
        "--store",
        str(store),
        "--feature",
        "hog,lbp",
        "--size",
        "64",
        "--shard-rows",
        "8",
        "--workers",
        "1",
    ]
    return subprocess.run(command, capture_output=True, text=True)


def test_a_full_disk_is_one_line_and_the_same_command_finishes_after(small_disk, photos, tmp_path):
    folder = write_crops(tmp_path / "images", photos, count=64, side=150, step=(2, 2))
    store = small_disk / "s.zarr"
    full = extract(folder, store)
    assert full.returncode == 1
    errors = [line for line in full.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(store) in errors[0] and "no space left" in errors[0]
    assert "run the same command again" in errors[0]
    assert "Compute Failed" not in full.stderr + full.stdout and "Traceback" not in full.stderr
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    again = extract(folder, store)
    assert again.returncode == 0, again.stderr
    verify = subprocess.run([sys.executable, "-m", "preimage", "verify", str(store)], capture_output=True, text=True)
    assert verify.returncode == 0 and "no damage" in verify.stdout


def test_a_read_only_store_is_one_line(small_disk, photos, tmp_path):
    folder = write_crops(tmp_path / "images", photos, 16, 120)
    store = small_disk / "s.zarr"
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert extract(folder, store).returncode == 0
    (folder / "new.png").write_bytes((folder / "00.png").read_bytes())  # a new photo: the store must grow
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        result = extract(folder, store)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and str(store) in error[0] and "read-only" in error[0], result.stderr
