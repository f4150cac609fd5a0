"""Batch cluster jobs on a real single-node SLURM (references/local-slurm.sh): extraction through dask-jobqueue
equals a local run bit for bit, survives a cancelled worker job, and says why when no worker comes or a worker
cannot see the store; training from `preimage sbatch` stops on SIGUSR1 with a checkpoint, requeues itself and
ends with the losses of an uninterrupted run.

Where SLURM cannot start here (no root, no packages), these tests skip with the reason; with
PREIMAGE_REQUIRE_SLURM=1 (CI sets it) that is a failure instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from preimage.cache.store import feature_path

from ..commands.test_extract import photo_folder  # noqa: F401  (a fixture)
from ..helpers import checksums, s3_endpoint

ROOT = Path(__file__).parents[2]
CLI = [sys.executable, "-m", "preimage"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict[str, str]:
    """A running local SLURM for this module; the environment its clients need."""
    folder = tmp_path_factory.mktemp("slurm")
    script = ROOT / "references" / "local-slurm.sh"
    why = None
    if os.geteuid() != 0:
        why = "the local SLURM needs root"
    elif not shutil.which("apt-get") and not shutil.which("slurmctld"):
        why = "neither slurm-wlm nor apt-get is here"
    else:
        started = subprocess.run(["bash", str(script), "start", str(folder)], capture_output=True, text=True)
        if started.returncode != 0:
            why = f"the local SLURM did not start: {started.stderr.strip()[-500:]}"
    if why:
        if os.environ.get("PREIMAGE_REQUIRE_SLURM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    yield {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
    subprocess.run(["bash", str(script), "stop", str(folder)], capture_output=True)


def slurm_run(env, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, env=env, **kwargs)


def queued(env, name: str) -> list[str]:
    """Ids of this user's jobs named ``name`` still in the queue."""
    listed = slurm_run(env, "squeue", "-h", "-o", "%i", "-n", name)
    return listed.stdout.split()


SPECS = "hog,lbp,alexnet:conv1+conv2"


def extract_args(images: Path, store: Path, *extra: str) -> list[str]:
    return [
        *CLI,
        "extract",
        "--images",
        str(images),
        "--store",
        str(store),
        "--feature",
        SPECS,
        "--shard-rows",
        "2",
        *extra,
    ]


@pytest.fixture(scope="module")
def local_store(photo_folder, tmp_path_factory) -> Path:  # noqa: F811
    store = tmp_path_factory.mktemp("local") / "local.zarr"
    done = subprocess.run(extract_args(photo_folder, store, "--workers", "1"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return store


def test_extraction_through_slurm_equals_a_local_run_bit_for_bit(slurm, photo_folder, local_store, tmp_path):  # noqa: F811
    store = tmp_path / "slurm.zarr"
    done = slurm_run(
        slurm, *extract_args(photo_folder, store, "--cluster", "slurm", "--jobs", "2", "--interface", "lo")
    )
    assert done.returncode == 0, done.stderr
    assert "slurm: 2 jobs of 1 cores and 4GB submitted" in done.stdout and "dashboard http://" in done.stdout
    assert "24 read, 0 unreadable" in done.stdout
    assert checksums(store) == checksums(local_store)
    assert not queued(slurm, "preimage-extract")  # the worker jobs end with the run


def test_batch_jobs_extract_into_a_bucket_as_a_local_run_does(
    slurm,
    photo_folder,  # noqa: F811  (the fixture imported above)
    local_store,
    tmp_path,
    monkeypatch,
):
    """The jobs reach the bucket with the settings of the submitting environment (endpoint, credentials)."""
    pytest.importorskip("s3fs", reason="stores at s3:// URLs need s3fs (pip install preimage[s3])")
    pytest.importorskip("moto.server", reason="the S3 endpoint of this test is moto's server")
    from preimage.cache.store import FeatureStore

    monkeypatch.chdir(tmp_path)  # the jobs' logs of a store at a URL go to the current folder
    with s3_endpoint():
        url, jobs = "s3://lab/slurm.zarr", ("--cluster", "slurm", "--jobs", "1", "--interface", "lo")
        done = slurm_run({**slurm, **os.environ}, *extract_args(photo_folder, url, *jobs))
        assert done.returncode == 0, done.stderr
        assert "24 read, 0 unreadable" in done.stdout and (tmp_path / "slurm.zarr.jobs").is_dir()
        bucket, local, rows = FeatureStore.open(url), FeatureStore.open(local_store), np.arange(24)
        for name in ["images", *(feature_path(f) for f in local.feature_names())]:
            assert np.array_equal(bucket.take(name, rows), local.take(name, rows)), name
    assert not queued(slurm, "preimage-extract")


def test_a_cancelled_worker_job_loses_nothing(slurm, photo_folder, local_store, tmp_path):  # noqa: F811
    store = tmp_path / "cancelled.zarr"
    args = extract_args(photo_folder, store, "--cluster", "slurm", "--jobs", "2", "--interface", "lo")
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=slurm)
    markers = store / "progress" / "alexnet" / "conv1" / "c"
    deadline = time.time() + 120
    while time.time() < deadline and not (markers.is_dir() and any(p.name.isdigit() for p in markers.iterdir())):
        time.sleep(0.01)
    jobs = queued(slurm, "preimage-extract")
    assert jobs, "no worker job to cancel"
    slurm_run(slurm, "scancel", jobs[0])  # one worker job dies mid-run
    process.communicate(timeout=300)
    if process.returncode != 0:  # the run may end with an error: then the rerun completes the store
        rerun = slurm_run(slurm, *args)
        assert rerun.returncode == 0, rerun.stderr
    assert checksums(store) == checksums(local_store)


def test_no_worker_within_the_timeout_is_a_clear_error(slurm, photo_folder, tmp_path):  # noqa: F811
    args = extract_args(
        photo_folder,
        tmp_path / "late.zarr",
        "--cluster",
        "slurm",
        "--jobs",
        "1",
        "--interface",
        "lo",
        "--job-extra",
        "--begin=now+1hour",
        "--worker-timeout",
        "5",
    )
    done = slurm_run(slurm, *args)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no worker started within 5 s of submitting 1 slurm jobs" in done.stderr
    assert not queued(slurm, "preimage-extract")  # its job is cancelled on the way out


def test_a_worker_that_cannot_see_the_store_stops_the_run(slurm, monkeypatch, tmp_path):
    from preimage.pipeline.batch_cluster import BatchJobs, ClusterError, batch_cluster

    monkeypatch.setenv("SLURM_CONF", slurm["SLURM_CONF"])
    spec = BatchJobs(
        "slurm", jobs=1, interface="lo", worker_timeout=120, dashboard_address=":0", log_directory=str(tmp_path)
    )
    cannot_see = r"cannot see /nowhere/store\.zarr: the store and the images must be"
    with pytest.raises(ClusterError, match=cannot_see), batch_cluster(spec, ("/nowhere/store.zarr",)):
        pass


def train_script(env, store: Path, out: Path, port: int, feature: str = "hog", epochs: int = 30) -> Path:
    args = [
        "train",
        "--store",
        str(store),
        "--feature",
        feature,
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--batch-size",
        "8",
        "--width",
        "16",
        "--target-size",
        "16",
        "--precision",
        "fp32",
    ]
    script = slurm_run(env, *CLI, "sbatch", "--time", "00:15:00", "--port", str(port), *args, cwd=out.parent)
    assert script.returncode == 0, script.stderr
    path = out.parent / f"{out.name}.sh"
    path.write_text(script.stdout)
    return path


def wait_for(env, job: str, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and job in slurm_run(env, "squeue", "-h", "-o", "%i").stdout.split():
        time.sleep(0.5)
    assert job not in slurm_run(env, "squeue", "-h", "-o", "%i").stdout.split(), f"job {job} did not finish"


def losses(run: Path) -> dict[int, float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if "loss" in r}


def test_training_under_sbatch_is_signalled_requeued_and_ends_as_an_uninterrupted_run(slurm, local_store, tmp_path):
    reference, signalled = tmp_path / "reference", tmp_path / "signalled"
    job = slurm_run(slurm, "sbatch", "--parsable", str(train_script(slurm, local_store, reference, 29701))).stdout
    wait_for(slurm, job.strip())
    job = slurm_run(slurm, "sbatch", "--parsable", str(train_script(slurm, local_store, signalled, 29702))).stdout
    job = job.strip()
    deadline = time.time() + 120
    while time.time() < deadline and not (
        (signalled / "metrics.jsonl").exists() and '"loss"' in (signalled / "metrics.jsonl").read_text()
    ):
        time.sleep(0.05)
    assert slurm_run(slurm, "scancel", "--signal=USR1", "--batch", job).returncode == 0
    wait_for(slurm, job)
    log = next(tmp_path.glob(f"preimage-train-{job}.out")).read_text()
    assert "stopped by SIGTERM: checkpoint at step" in log and "preimage sbatch: requeued" in log
    starts = [line for line in log.splitlines() if line.startswith("training hog")]
    assert len(starts) == 2 and "from step 0" in starts[0] and "from step 0" not in starts[1]
    ours, theirs = losses(signalled), losses(reference)
    assert max(ours) == max(theirs) and ours == {step: theirs[step] for step in ours}


def test_a_fused_decoder_trains_under_sbatch_as_any_other(slurm, local_store, tmp_path):
    run = tmp_path / "fused"
    script = train_script(slurm, local_store, run, 29703, feature="alexnet:conv1+conv2", epochs=2)
    job = slurm_run(slurm, "sbatch", "--parsable", str(script)).stdout.strip()
    wait_for(slurm, job)
    log = next(tmp_path.glob(f"preimage-train-{job}.out")).read_text()
    assert "training alexnet:conv1+conv2" in log and (run / "checkpoint.safetensors").is_file(), log
    saved = json.loads((run / "run.json").read_text())
    assert saved["decoder"]["kind"] == "fused" and len(saved["decoder"]["parts"]) == 2


def test_the_sampling_study_runs_its_histograms_on_batch_jobs_alike(slurm, local_store, tmp_path):
    from preimage.train.training.trainer import TrainConfig, train

    run = tmp_path / "run"
    train(
        TrainConfig(
            str(local_store), "hog", str(run), target_size=16, epochs=1, batch_size=8, width=16, precision="fp32"
        ),
        show_progress=False,
    )
    study = [*CLI, "analyze", "sample", "--store", str(local_store), "--decoder", str(run), "--vectors", "20"]
    here = slurm_run(slurm, *study, "--out", str(tmp_path / "here"))
    jobs = slurm_run(
        slurm, *study, "--out", str(tmp_path / "jobs"), "--cluster", "slurm", "--jobs", "1", "--interface", "lo"
    )
    assert here.returncode == 0 and jobs.returncode == 0, here.stderr + jobs.stderr
    assert "dask: 1 slurm jobs" in jobs.stdout
    assert (tmp_path / "here" / "sample.json").read_text() == (tmp_path / "jobs" / "sample.json").read_text()
    assert list((tmp_path / "jobs" / "jobs").glob("*.out")), "the workers' logs belong beside the study"
    assert not list(Path.cwd().glob("slurm-*.out"))


def test_a_build_as_a_chain_of_batch_jobs_equals_a_local_build(slurm, tmp_path):
    from preimage.pipeline.images import sample_photos
    from preimage.train.models import checkpoint

    from ..build.test_build import TINY
    from ..helpers import write_crops

    photos = write_crops(tmp_path / "photos", sample_photos(), 96, 72, step=(2, 1))
    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps(TINY))
    args = ["build", "hog", "--images", str(photos), "--size", "64", "--recipe", str(recipe)]
    one_thread = {**slurm, "OMP_NUM_THREADS": "1"}  # as each job of one core computes
    local = slurm_run(one_thread, *CLI, *args, "--out", str(tmp_path / "local"), cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-2000:]
    chained = slurm_run(
        slurm, *CLI, *args, "--out", str(tmp_path / "chain"), "--cluster", "slurm", "--interface", "lo", cwd=tmp_path
    )
    assert chained.returncode == 0, chained.stderr[-2000:]
    assert "[1/7] extract hog on slurm batch workers" in chained.stdout
    jobs = chained.stdout.split("each after the one before (")[1].split(")")[0].split(", ")
    assert len(jobs) == 5  # pixel, export, DeePSiM, export, then the check and publishing
    waiting = slurm_run(slurm, "squeue", "-h", "-o", "%i %r").stdout
    assert f"{jobs[-1]} Dependency" in waiting  # the last waits for the one before it
    for job in jobs:
        wait_for(slurm, job, 600)
    scripts = sorted((tmp_path / "chain.build" / "slurm").glob("*.sh"))
    assert all("#SBATCH --requeue" in s.read_text() and "scontrol requeue" in s.read_text() for s in scripts)

    def cards(folder):
        return {p.name: checkpoint.read_header(p)["card"]["heldout"] for p in sorted(folder.glob("*.safetensors"))}

    ours, theirs = cards(tmp_path / "chain"), cards(tmp_path / "local")
    assert len(ours) == 2 and {k: v["normalised_error"] for k, v in ours.items()} == {
        k: v["normalised_error"] for k, v in theirs.items()
    }
    assert ours == theirs
