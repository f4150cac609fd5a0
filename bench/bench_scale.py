"""What grows with the collection before any pixel is computed: planning an extraction, resuming a complete store,
planning a training epoch. Each must cost the same per row at 20,000 rows and at 200,000 (ImageNet is 1.28 M).

    python bench/bench_scale.py [--rows 20000,200000] [--folder /tmp/scale]

For each size, an HDF5 stack of that many 16x16 images is written (random pixels), then, each timed alone and its
peak of Python and numpy allocations measured in a second run (tracemalloc):
1. plan: list the source, plan the HOG job, create the store (ids, labels, every array), list the pending tasks;
2. resume: ``extract`` on the store once every partition is marked complete (what a rerun after the end costs:
   nothing to compute, no cluster started);
3. epoch: the training split by path hash and the steps of one epoch (``ShardStream`` and its ``full_batches``).
The store is marked complete without computing it (status and progress written directly): these steps read only
that. Per-row figures and the ratio large / small close the table; flat means near 1.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np

from preimage.cache.store import READ, FeatureStore, progress_path
from preimage.pipeline.contract import plan_jobs
from preimage.pipeline.extract import extract, open_store, pending_tasks
from preimage.pipeline.sources import hdf5_source
from preimage.train.training.data import ShardStream


def measured(function, again=None):
    """(result, seconds, peak bytes allocated) of ``function()``: timed alone, its memory measured in a second
    call (``again()``, or ``function()`` once more) under tracemalloc, which slows Python several times over."""
    start = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    (again or function)()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, peak


def stack(path: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (rows, 16, 16, 3), np.uint8, chunks=(4096, 16, 16, 3))
        for start in range(0, rows, 65536):
            stop = min(rows, start + 65536)
            images[start:stop] = rng.integers(0, 256, (stop - start, 16, 16, 3), np.uint8)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="20000,200000")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/preimage-scale"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    results = {}
    for rows in (int(v) for v in args.rows.split(",")):
        source_file = stack(args.folder / f"stack-{rows}.h5", rows)
        store_path = args.folder / f"store-{rows}.zarr"
        shutil.rmtree(store_path, ignore_errors=True)

        def plan(source_file=source_file, store_path=store_path):
            source = hdf5_source(source_file, "images")
            jobs = plan_jobs("hog", 16)
            with FeatureStore.lock(store_path):
                store = open_store(str(store_path), source, image_size=16, shard_rows=64, jobs=jobs, dtype="float32")
                return pending_tasks(store, source, jobs, "float32")

        twin = args.folder / f"store-{rows}-memory.zarr"  # planning creates its store: a second one for memory
        shutil.rmtree(twin, ignore_errors=True)
        tasks, plan_s, plan_b = measured(plan, lambda source_file=source_file, twin=twin: plan(source_file, twin))
        shutil.rmtree(twin, ignore_errors=True)
        store = FeatureStore.open(store_path, "r+")
        store.array("status")[:] = np.full(rows, READ, np.uint8)
        for what in ("images", "hog"):
            store.array(progress_path(what))[:] = 1

        def resume(source_file=source_file, store_path=store_path):
            never = contextlib.nullcontext  # a cluster is never asked for: there is nothing to do
            return extract(
                store_path,
                hdf5_source(source_file, "images"),
                specs="hog",
                image_size=16,
                shard_rows=64,
                client_factory=never,
                show_progress=False,
            )

        summary, resume_s, resume_b = measured(resume)
        assert summary.partitions_run == 0, "the store should be complete"

        def epoch(store_path=store_path):
            stream = ShardStream(str(store_path), "hog", split="train", target_size=16, batch_size=64)
            stream.set_epoch(0)
            return stream.full_batches(0)

        steps, epoch_s, epoch_b = measured(epoch)
        results[rows] = {"plan": (plan_s, plan_b), "resume": (resume_s, resume_b), "epoch": (epoch_s, epoch_b)}
        print(f"{rows} rows: {len(tasks)} tasks planned, {steps} steps an epoch")

    sizes = sorted(results)
    print(f"\n{'step':8} {'rows':>8} {'seconds':>9} {'peak MB':>9} {'us/row':>8} {'bytes/row':>10}")
    for step in ("plan", "resume", "epoch"):
        for rows in sizes:
            seconds, peak = results[rows][step]
            print(
                f"{step:8} {rows:8} {seconds:9.2f} {peak / 2**20:9.1f} {seconds / rows * 1e6:8.1f} {peak / rows:10.1f}"
            )
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"\nper-row cost at {large} over at {small} (1 = flat):")
        for step in ("plan", "resume", "epoch"):
            (ts, bs), (tl, bl) = results[small][step], results[large][step]
            print(f"  {step:8} time {(tl / large) / (ts / small):.2f}, memory {(bl / large) / (bs / small):.2f}")


if __name__ == "__main__":
    main()
