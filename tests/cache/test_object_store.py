"""Stores in object storage, against a real S3 endpoint (moto's server on loopback, as zarr's own tests run it):
extraction into a bucket equals a local store, verify and repair work on objects, training and studies read it,
the lock is a conditional write, and a killed extraction resumes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from preimage.cache import backend as backend_module
from preimage.cache.backend import ObjectBackend, StoreLocked, backend_for
from preimage.cache.store import FeatureStore
from preimage.cli import main
from preimage.pipeline.sources import folder_source
from preimage.train.training.trainer import TrainConfig, train

from ..helpers import checksums, free_port, run_extract, s3_endpoint, write_crops

pytest.importorskip("s3fs", reason="stores at s3:// URLs need s3fs (pip install preimage[s3])")
pytest.importorskip("moto.server", reason="the S3 endpoint of these tests is moto's server")

CLI = [sys.executable, "-m", "preimage"]
SPECS = "hog,lbp"


@pytest.fixture(scope="module")
def endpoint():
    with s3_endpoint() as url:
        yield url


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    return write_crops(tmp_path_factory.mktemp("s3") / "images", photos, 24, 100)


@pytest.fixture(scope="module")
def local(folder, dask_client, tmp_path_factory):
    path = tmp_path_factory.mktemp("local") / "s.zarr"
    run_extract(path, folder_source(folder), SPECS, dask_client, image_size=32, shard_rows=8)
    return path


@pytest.fixture
def bucket_store(endpoint, folder, dask_client, request):
    url = f"s3://lab/{request.node.name[:40]}.zarr"
    run_extract(url, folder_source(folder), SPECS, dask_client, image_size=32, shard_rows=8)
    return url


def test_a_store_in_a_bucket_equals_a_local_one_and_trains(bucket_store, local, tmp_path):
    assert checksums(bucket_store) == checksums(local)
    store = FeatureStore.open(bucket_store)
    assert str(store.path) == bucket_store and store.missing_shards() == []
    keys = list(store.backend.objects("features/hog"))
    assert any("/c/" in key for key in keys) and not any(key.endswith(".partial") for key in keys)
    config = dict(target_size=16, epochs=1, batch_size=8, width=16, precision="fp32", eval_rows=8)
    remote = train(TrainConfig(bucket_store, "hog", str(tmp_path / "remote"), **config), show_progress=False)
    here = train(TrainConfig(str(local), "hog", str(tmp_path / "local"), **config), show_progress=False)
    assert remote["normalised_error"] == pytest.approx(here["normalised_error"], rel=1e-5)
    studied = CliRunner().invoke(
        main, ["analyze", "error", "--store", bucket_store, "--decoder", str(tmp_path / "remote"), "--split", "all"]
    )
    assert studied.exit_code == 0 and "normalised error" in studied.output, studied.output
    info = CliRunner().invoke(main, ["info", bucket_store])
    assert info.exit_code == 0 and "features/hog" in info.output


def test_verify_names_a_deleted_and_a_corrupted_object_and_repair_restores_them(bucket_store, local, folder):
    backend = backend_for(bucket_store)
    deleted = next(k for k in backend.objects("features/lbp") if "/c/1/" in k)
    corrupted = next(k for k in backend.objects("images") if "/c/2/" in k)
    backend.delete(deleted)
    data = bytearray(backend.read(corrupted))
    data[len(data) // 3] ^= 0xFF
    backend.write(corrupted, bytes(data))
    found = CliRunner().invoke(main, ["verify", bucket_store])
    assert found.exit_code == 1
    assert f"{bucket_store}/{deleted}" in found.output and "missing" in found.output
    assert f"{bucket_store}/{corrupted}" in found.output and "checksum" in found.output
    args = [
        "extract",
        "--images",
        str(folder),
        "--store",
        bucket_store,
        "--feature",
        SPECS,
        "--size",
        "32",
        "--shard-rows",
        "8",
        "--workers",
        "1",
    ]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "--repair" in refused.output
    repaired = CliRunner().invoke(main, [*args, "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert CliRunner().invoke(main, ["verify", bucket_store]).exit_code == 0
    assert checksums(bucket_store) == checksums(local)


def test_the_lock_is_a_conditional_write_and_an_abandoned_one_is_taken_over(endpoint, monkeypatch):
    url = "s3://lab/locked.zarr"
    first, second = ObjectBackend(url), ObjectBackend(url)
    busy = r"s3://lab/locked.zarr is being written by `preimage extract` \(pid"
    with first.lock(), pytest.raises(StoreLocked, match=busy), second.lock():
        pass
    assert not first.exists(backend_module.LOCK_FILE)  # released
    with second.lock():  # free again
        pass
    dead = subprocess.Popen(["true"])
    dead.wait()
    first.write(backend_module.LOCK_FILE, f"x `preimage extract` (pid {dead.pid} on {socket.gethostname()})".encode())
    with second.lock():  # its writer on this machine is gone
        assert b"x `preimage" not in second.read(backend_module.LOCK_FILE)
    first.write(backend_module.LOCK_FILE, b"y `preimage extract` (pid 1 on another-machine)")
    with pytest.raises(StoreLocked, match="another-machine"), second.lock():
        pass
    monkeypatch.setattr(backend_module, "LEASE_SECONDS", 0.2)  # three leases without renewal: abandoned
    time.sleep(1.0)
    with second.lock():
        assert second.read(backend_module.LOCK_FILE).endswith(f"on {socket.gethostname()})".encode())


def test_a_killed_extraction_into_a_bucket_resumes_to_a_clean_runs_arrays(endpoint, folder, dask_client, tmp_path):
    url = "s3://lab/killed.zarr"
    clean = tmp_path / "clean.zarr"  # the same partitions (one row each) on the local disk
    run_extract(clean, folder_source(folder), SPECS, dask_client, image_size=32, shard_rows=1)
    command = [
        *CLI,
        "extract",
        "--images",
        str(folder),
        "--store",
        url,
        "--feature",
        SPECS,
        "--size",
        "32",
        "--shard-rows",
        "1",
        "--workers",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    backend = ObjectBackend(url)
    deadline = time.time() + 120
    while time.time() < deadline and not any("/c/" in k for k in backend.objects("progress/lbp")):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the command and its dask workers, mid-run
    process.wait()
    done = FeatureStore.open(url).done("lbp").sum()
    assert 0 < done < 24, f"the kill should land mid-run; {done} of 24 partitions were complete"
    assert backend.exists(backend_module.LOCK_FILE)  # the killed run's lock is left behind ...
    resumed = subprocess.run(command, capture_output=True, text=True)  # ... and taken over: its writer is gone
    assert resumed.returncode == 0, resumed.stderr
    assert checksums(url) == checksums(clean)
    assert not backend.exists(backend_module.LOCK_FILE)


def test_storage_options_reach_the_filesystem_and_a_wrong_endpoint_is_one_line(endpoint, bucket_store, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.delenv(backend_module.STORAGE_OPTIONS, raising=False)
    option = ["--storage-option", f"client_kwargs.endpoint_url={endpoint}"]
    info = CliRunner().invoke(main, [*option, "info", bucket_store])
    assert info.exit_code == 0, info.output
    assert json.loads(os.environ.pop(backend_module.STORAGE_OPTIONS)) == {"client_kwargs.endpoint_url": endpoint}
    port = free_port()  # nothing listens there
    wrong = CliRunner().invoke(
        main,
        [
            "--storage-option",
            f"client_kwargs.endpoint_url=http://127.0.0.1:{port}",
            "--storage-option",
            "config_kwargs.retries.max_attempts=1",
            "info",
            bucket_store,
        ],
    )
    os.environ.pop(backend_module.STORAGE_OPTIONS, None)
    assert wrong.exit_code == 1 and wrong.output.count("\n") == 1 and "check the endpoint" in wrong.output, wrong.output


def test_options_given_to_a_backend_travel_with_it_to_workers(endpoint, bucket_store, monkeypatch):
    import pickle

    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # only the options the backend was given know where the bucket is
    monkeypatch.delenv(backend_module.STORAGE_OPTIONS, raising=False)
    backend = ObjectBackend(bucket_store, {"client_kwargs": {"endpoint_url": endpoint}})
    payload = pickle.dumps(backend)
    type(backend.fs).clear_instance_cache()  # a worker has no filesystem made with the endpoint in its environment
    travelled = pickle.loads(payload)  # as a dask task carries it
    assert travelled.exists("") and travelled.read("zarr.json") == backend.read("zarr.json") is not None


def test_a_store_in_a_missing_bucket_is_one_line_naming_the_bucket_and_the_fix(endpoint):
    result = CliRunner().invoke(
        main, ["extract", "--store", "s3://no-such-bucket/x.zarr", "--feature", "hog", "--workers", "1"]
    )
    assert result.exit_code == 1, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: s3://no-such-bucket/x.zarr: the bucket 'no-such-bucket' does not exist"), error
    assert "aws s3 mb s3://no-such-bucket" in error
